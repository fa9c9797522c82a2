package loadgen

import (
	"bytes"
	"fmt"
	"time"

	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/schemas"
)

// Request body formats of POST /v1/readings.
const (
	FormatJSON = "json"
	FormatAvro = "avro"
)

// ContentType is the Content-Type of a body format.
func ContentType(format string) string {
	if format == FormatAvro {
		return "application/vnd.vitals.reading-batch+avro"
	}
	return "application/json"
}

// ReadingsOptions shape the bodies ReadingBodies builds.
type ReadingsOptions struct {
	Bodies int    // distinct bodies
	Batch  int    // readings per body
	Users  int    // distinct user ids the readings are spread over
	Format string // FormatJSON or FormatAvro
	// RunID goes into every event id, so two runs never share one.
	RunID     string
	GatewayID string
	// Now places the readings: each sample row keeps its time of day and
	// moves to the day before Now's (UTC), so every measured_at lies in the
	// past, within two days.
	Now time.Time
}

// ReadingBodies builds o.Bodies request bodies of o.Batch heart-rate
// readings each from the Fitbit sample rows, cycling through the rows. The
// k-th reading overall goes to user k mod o.Users, so consecutive readings
// hash to different partitions; every event id is
// "bench-<run>-<round>-<k>", with the round (RoundWidth hex digits,
// initially zero) at the offsets listed in Body.Patch.
func ReadingBodies(rows []sample.HeartRate, o ReadingsOptions) ([]Body, error) {
	if len(rows) == 0 || o.Bodies < 1 || o.Batch < 1 || o.Users < 1 {
		return nil, fmt.Errorf("loadgen: need rows, bodies, batch and users (got %d, %d, %d, %d)", len(rows), o.Bodies, o.Batch, o.Users)
	}
	if o.GatewayID == "" {
		o.GatewayID = "bench-gateway"
	}
	day := o.Now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	idPrefix := "bench-" + o.RunID + "-"
	zeroRound := bytes.Repeat([]byte("0"), RoundWidth)
	enc := NewBodyEncoder()

	out := make([]Body, 0, o.Bodies)
	ids := make([]string, o.Batch)
	for b := range o.Bodies {
		rs := make([]schemas.GatewayReading, o.Batch)
		values := make([]float64, o.Batch)
		for j := range o.Batch {
			k := b*o.Batch + j
			r := rows[k%len(rows)]
			u := k % o.Users
			at := day.Add(r.Time.Sub(r.Time.Truncate(24 * time.Hour)))
			ids[j] = fmt.Sprintf("%s%s-%08d", idPrefix, zeroRound, k)
			user := fmt.Sprintf("bench-user-%06d", u)
			values[j] = r.Value
			rs[j] = schemas.GatewayReading{EventID: ids[j], UserID: user, DeviceID: user + "-tracker", Metric: "heart_rate", Value: &values[j],
				Unit: "/min", MeasuredAt: at.UnixMilli()}
		}
		data, err := enc.Append(nil, o.Format, o.GatewayID, rs)
		if err != nil {
			return nil, err
		}
		body := Body{Data: data, Items: o.Batch, Patch: make([]int, 0, o.Batch)}
		from := 0
		for _, id := range ids {
			i := bytes.Index(data[from:], []byte(id))
			if i < 0 {
				return nil, fmt.Errorf("loadgen: event id %s not found in its encoded body", id)
			}
			body.Patch = append(body.Patch, from+i+len(idPrefix))
			from += i + len(id)
		}
		out = append(out, body)
	}
	return out, nil
}
