package query

import (
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/consistency"
	"github.com/vitalshq/vitals/internal/ident"
	"github.com/vitalshq/vitals/internal/metric"
)

// Dimensions are the user attributes cohorts are formed by: the columns of
// warehouse.UserDimension, and the names of the cohort filter parameters.
// Only these names are ever spliced into SQL.
var Dimensions = []string{"age_band", "sex", "region", "device_model"}

// dimensionValue validates a cohort value for its dimension. The values
// are bound as parameters; the check only turns typos into a 400 instead
// of an empty answer.
var dimensionValue = map[string]*regexp.Regexp{
	"age_band":     regexp.MustCompile(`^(unknown|0-17|18-29|[3-7]0-[3-7]9|80\+)$`),
	"sex":          regexp.MustCompile(`^(female|male|other|unknown)$`),
	"region":       regexp.MustCompile(`^(unknown|[A-Z]{2}(-[A-Z0-9]{1,3})?)$`),
	"device_model": regexp.MustCompile(`^[A-Za-z0-9._:@+ -]{1,128}$`),
}

// filter restricts a cohort: users whose dimension has value.
type filter struct{ dim, value string }

// Scope is the set of users an answer covers: one user, the users that
// match every given cohort filter, or (all empty) the whole tenant.
type Scope struct {
	User        string `json:"user,omitempty"`
	AgeBand     string `json:"age_band,omitempty"`
	Sex         string `json:"sex,omitempty"`
	Region      string `json:"region,omitempty"`
	DeviceModel string `json:"device_model,omitempty"`
}

// request is a validated query: what every endpoint shares.
type request struct {
	tenant   string
	metric   metric.Metric
	from, to time.Time
	user     string
	filters  []filter // in Dimensions order
	// token and wait are the read-your-writes request, if any.
	token consistency.Token
	wait  time.Duration
	// asOf is the moment the answer is as of: the as_of parameter
	// (travel), else the time of the request.
	asOf   time.Time
	travel bool
}

// asOfMs is the as_of moment the request travels to in epoch ms, 0 when
// it asks for the present.
func (q request) asOfMs() int64 {
	if !q.travel {
		return 0
	}
	return q.asOf.UnixMilli()
}

// parseAsOf reads as_of=<RFC 3339 time or date>: answer as the system knew
// it then. Without it the answer is as of now.
func parseAsOf(v url.Values, now time.Time) (time.Time, bool, error) {
	if !v.Has("as_of") {
		return now.UTC(), false, nil
	}
	t, err := parseTime("as_of", v.Get("as_of"))
	if err != nil {
		return t, false, badParam("as_of", "as_of must be RFC 3339 (2016-04-12T00:00:00Z) or a date (2016-04-12, midnight UTC): the moment to answer as of")
	}
	return t, true, nil
}

func (q request) scope() Scope {
	sc := Scope{User: q.user}
	for _, f := range q.filters {
		switch f.dim {
		case "age_band":
			sc.AgeBand = f.value
		case "sex":
			sc.Sex = f.value
		case "region":
			sc.Region = f.value
		case "device_model":
			sc.DeviceModel = f.value
		}
	}
	return sc
}

// rangeMode says how from and to are read.
type rangeMode int

const (
	rangeDefault30d rangeMode = iota // both optional; default: the 30 days before now
	rangeRequired                    // both required (the original per-user endpoint)
)

// DefaultRange is the period an answer covers when from and to are absent.
const DefaultRange = 30 * 24 * time.Hour

// maxRange bounds a request's period; years of history are fine, a typo of
// year 20160 is not.
const maxRange = 20 * 366 * 24 * time.Hour

// parseTime reads RFC 3339 or a date (YYYY-MM-DD, midnight UTC).
func parseTime(name, v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, badParam(name, "%s must be RFC 3339 (2016-04-12T00:00:00Z) or a date (2016-04-12)", name)
}

// parseRange reads from and to: a half-open range [from, to).
func parseRange(v url.Values, mode rangeMode, now time.Time) (from, to time.Time, err error) {
	fs, ts := v.Get("from"), v.Get("to")
	if mode == rangeRequired {
		for _, p := range []struct{ name, v string }{{"from", fs}, {"to", ts}} {
			if p.v == "" {
				return from, to, badParam(p.name, "%s is required (RFC 3339, e.g. 2016-04-12T00:00:00Z)", p.name)
			}
		}
	}
	to = now.UTC()
	if ts != "" {
		if to, err = parseTime("to", ts); err != nil {
			return from, to, err
		}
	}
	from = to.Add(-DefaultRange)
	if fs != "" {
		if from, err = parseTime("from", fs); err != nil {
			return from, to, err
		}
	}
	if !from.Before(to) {
		return from, to, badParam("to", "to must be after from")
	}
	if to.Sub(from) > maxRange {
		return from, to, badParam("from", "the range may span at most 20 years")
	}
	return from, to, nil
}

// parseMetric reads the required metric parameter.
func parseMetric(v url.Values) (metric.Metric, error) {
	m, ok := metric.Lookup(v.Get("metric"))
	if !ok {
		return m, badParam("metric", "metric must be one of %s", strings.Join(metric.Names(), ", "))
	}
	return m, nil
}

// parseUser validates a user id.
func parseUser(name, u string) error {
	if err := ident.Check(name, u); err != nil {
		return badParam(name, "%v", err)
	}
	return nil
}

// parseFilters reads the cohort filters; with allowUser, a user instead.
func parseFilters(v url.Values) ([]filter, error) {
	var out []filter
	for _, d := range Dimensions {
		if !v.Has(d) {
			continue
		}
		val := v.Get(d)
		if !dimensionValue[d].MatchString(val) {
			return nil, badParam(d, "%s %q is not a valid value (e.g. age_band=30-39, sex=female, region=DE, device_model=fitbit-charge-hr)", d, val)
		}
		out = append(out, filter{d, val})
	}
	return out, nil
}

// parseDimension reads a by= parameter.
func parseDimension(v url.Values) (string, error) {
	by := v.Get("by")
	if !slices.Contains(Dimensions, by) {
		return "", badParam("by", "by must be one of %s", strings.Join(Dimensions, ", "))
	}
	return by, nil
}

// parseRequest reads the scope parameters every endpoint shares: metric,
// then those of parseScope.
func (s *Service) parseRequest(r *http.Request, mode rangeMode, now time.Time) (request, error) {
	metric, err := parseMetric(r.URL.Query())
	if err != nil {
		return request{tenant: tenantOf(r)}, err
	}
	q, err := s.parseScope(r, mode, now)
	q.metric = metric
	return q, err
}

// parseScope reads the parameters of every endpoint but metric: range,
// user or cohort filters (not both), consistency, wait and as_of.
func (s *Service) parseScope(r *http.Request, mode rangeMode, now time.Time) (request, error) {
	v := r.URL.Query()
	q := request{tenant: tenantOf(r)}
	var err error
	if q.from, q.to, err = parseRange(v, mode, now); err != nil {
		return q, err
	}
	if v.Has("user") {
		q.user = v.Get("user")
		if err := parseUser("user", q.user); err != nil {
			return q, err
		}
	}
	if q.filters, err = parseFilters(v); err != nil {
		return q, err
	}
	if q.user != "" && len(q.filters) > 0 {
		return q, badParam("user", "give either user or cohort filters (%s), not both", strings.Join(Dimensions, ", "))
	}
	if q.token, q.wait, err = s.parseConsistency(v); err != nil {
		return q, err
	}
	if q.asOf, q.travel, err = parseAsOf(v, now); err != nil {
		return q, err
	}
	return q, nil
}

// parseConsistency reads consistency=<token> and wait=<duration>.
func (s *Service) parseConsistency(v url.Values) (consistency.Token, time.Duration, error) {
	if !v.Has("consistency") {
		if v.Has("wait") {
			return nil, 0, badParam("wait", "wait needs a consistency token")
		}
		return nil, 0, nil
	}
	tok, err := consistency.Decode(v.Get("consistency"))
	if err != nil {
		return nil, 0, badParam("consistency", "consistency must be the consistency_token of an ingest response: %v", err)
	}
	wait := s.cfg.DefaultWait
	if w := v.Get("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 || d > s.cfg.MaxWait {
			return nil, 0, badParam("wait", "wait must be a duration between 0s and %s, e.g. 5s", s.cfg.MaxWait)
		}
		wait = d
	}
	return tok, wait, nil
}

// ParsePercentiles reads a comma-separated list of percentiles in [0, 100].
func ParsePercentiles(s string, max int) ([]float64, error) {
	if s == "" {
		return []float64{50, 90, 99}, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > max {
		return nil, badParam("p", "at most %d percentiles per request, got %d", max, len(parts))
	}
	out := make([]float64, 0, len(parts))
	for _, part := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
			return nil, badParam("p", "%q is not a number between 0 and 100", part)
		}
		out = append(out, v)
	}
	return out, nil
}

// MaxBins bounds a histogram's bins, fixed or automatic.
const MaxBins = 1000

// parseBins reads bins=<n>|auto; 0 means automatic.
func parseBins(v url.Values) (int, error) {
	b := v.Get("bins")
	switch b {
	case "":
		return 20, nil
	case "auto":
		return 0, nil
	}
	n, err := strconv.Atoi(b)
	if err != nil || n < 1 || n > MaxBins {
		return 0, badParam("bins", "bins must be auto or a whole number from 1 to %d", MaxBins)
	}
	return n, nil
}

// parsePeriod reads period=week|month|quarter|year and returns from for
// the given to; ok is false when period is absent.
func parsePeriod(v url.Values, to time.Time) (from time.Time, ok bool, err error) {
	switch v.Get("period") {
	case "":
		return time.Time{}, false, nil
	case "week":
		return to.AddDate(0, 0, -7), true, nil
	case "month":
		return to.AddDate(0, -1, 0), true, nil
	case "quarter":
		return to.AddDate(0, -3, 0), true, nil
	case "year":
		return to.AddDate(-1, 0, 0), true, nil
	}
	return time.Time{}, false, badParam("period", "period must be week, month, quarter or year")
}
