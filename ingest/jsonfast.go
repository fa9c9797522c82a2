package ingest

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The JSON readings body in one pass.
//
// encoding/json reads a batch three times: once to validate the whole body,
// once to split the envelope into raw items, and once more per item, by
// reflection. That was most of ingest's CPU per JSON reading. The scanner
// below reads the envelope and every item in a single pass, but only where
// it can tell, without doubt, that encoding/json would have produced the
// same values: any body or item it is not sure about is handed back to the
// encoding/json path, which stays the reference. So the answers (including
// every rejection's reason, field and message) are the ones encoding/json
// gives; the fast path only decides sooner in the common case.
//
// Whole body back to encoding/json: a syntax error anywhere, a top level
// that is not an object, an envelope key that is escaped, not ASCII,
// repeated, or a case variant of a known key (encoding/json matches keys
// case-insensitively), a gateway_id or tenant_id that is not a plain string
// or null, readings or events that are not an array or null, nesting
// deeper than maxFastDepth.
//
// One item back to encoding/json (readingFromJSON on its exact bytes, as
// before): an item that is not an object, or has a key like the above, a
// value of another JSON type than its field's, a string with escapes or
// invalid UTF-8 (encoding/json would unescape or replace it), or a number
// that does not parse into its field.

// maxFastDepth bounds the nesting the fast scanner follows; deeper bodies
// go to encoding/json, which has its own (larger) limit and error.
const maxFastDepth = 64

// Fields of a JSON reading, as bits of fastItem.has; the string fields
// come first and index fastItem.str.
const (
	jfEventID = iota
	jfUserID
	jfDeviceID
	jfMetric
	jfUnit
	jfMeasuredAt
	jfReceivedAt
	jfPeriodEnd
	jfStage
	jfValue
	jfDiastolic
	jfSequence
	jfRevision
	jfWithdrawn
)

// jfStrings is the number of string fields.
const jfStrings = jfValue

// jsonReadingField maps a JSON key to its field, for exact matches.
func jsonReadingField(key string) (int, bool) {
	switch key {
	case "event_id":
		return jfEventID, true
	case "user_id":
		return jfUserID, true
	case "device_id":
		return jfDeviceID, true
	case "metric":
		return jfMetric, true
	case "unit":
		return jfUnit, true
	case "measured_at":
		return jfMeasuredAt, true
	case "received_at":
		return jfReceivedAt, true
	case "period_end":
		return jfPeriodEnd, true
	case "stage":
		return jfStage, true
	case "value":
		return jfValue, true
	case "diastolic":
		return jfDiastolic, true
	case "sequence":
		return jfSequence, true
	case "revision":
		return jfRevision, true
	case "withdrawn":
		return jfWithdrawn, true
	}
	return 0, false
}

var (
	readingKeys = jsonKeysOf(jsonReading{})
	// envelopeKeys is in jsonEnvelope's order, which scanReadingsJSON's
	// indexes rely on (a test holds the two together).
	envelopeKeys = []string{"gateway_id", "tenant_id", "readings", "events"}
)

// foldsToAny reports whether key equals one of keys ignoring ASCII case,
// which is how encoding/json matches a key that is not an exact match.
// Only ASCII keys reach it.
func foldsToAny(key string, keys []string) bool {
	for _, k := range keys {
		if strings.EqualFold(key, k) {
			return true
		}
	}
	return false
}

// fastItem is one item of a batch as the scanner left it: either its
// fields (fast) or only its bytes, for encoding/json.
type fastItem struct {
	raw       []byte
	fast      bool
	null      uint16 // fields present as JSON null
	has       uint16 // fields present with a value
	str       [jfStrings]string
	num       [2]float64 // value, diastolic
	sequence  int64
	revision  int64
	withdrawn bool
	ms        [3]int64 // storage for the parsed times
}

// input is the item as readingFromJSON would have returned it. Pointers
// point into the item, which lives as long as the batch.
func (it *fastItem) input() (Input, *Rejection) {
	var j jsonReading
	strs := [jfStrings]**string{&j.EventID, &j.UserID, &j.DeviceID, &j.Metric, &j.Unit, &j.MeasuredAt, &j.ReceivedAt, &j.PeriodEnd, &j.Stage}
	for f, dst := range strs {
		if it.has&(1<<f) != 0 {
			*dst = &it.str[f]
		}
	}
	if it.has&(1<<jfValue) != 0 {
		j.Value = &it.num[0]
	}
	if it.has&(1<<jfDiastolic) != 0 {
		j.Diastolic = &it.num[1]
	}
	if it.has&(1<<jfSequence) != 0 {
		j.Sequence = &it.sequence
	}
	if it.has&(1<<jfRevision) != 0 {
		j.Revision = &it.revision
	}
	if it.has&(1<<jfWithdrawn) != 0 {
		j.Withdrawn = &it.withdrawn
	}
	return j.input(&it.ms)
}

// fastJSONBatch is a readings body the scanner read whole.
type fastJSONBatch struct {
	gateway string
	tenant  *string
	items   []fastItem
}

// jsonScan is the scanner's position in a body. s holds the same bytes as
// b: field values are substrings of it, one copy for the whole body
// instead of one allocation per field.
type jsonScan struct {
	b     []byte
	s     string
	i     int
	depth int
}

// scanReadingsJSON reads a readings body; ok is false when the body must
// go to encoding/json instead.
func scanReadingsJSON(body []byte) (fastJSONBatch, bool) {
	p := jsonScan{b: body, s: string(body)}
	var out fastJSONBatch
	p.ws()
	if !p.consume('{') {
		return out, false
	}
	var seen [4]bool
	p.ws()
	if p.consume('}') {
		return out, p.end()
	}
	for {
		p.ws()
		key, ok := p.plainKey()
		if !ok {
			return out, false
		}
		p.ws()
		if !p.consume(':') {
			return out, false
		}
		p.ws()
		k := -1
		for n, name := range envelopeKeys {
			if key == name {
				k = n
			}
		}
		switch {
		case k >= 0 && seen[k]:
			return out, false
		case k >= 0:
			seen[k] = true
		case foldsToAny(key, envelopeKeys):
			return out, false
		}
		switch k {
		case 0, 1: // gateway_id, tenant_id
			if p.literal("null") {
				break // gateway_id stays "", tenant_id nil: as encoding/json
			}
			v, ok := p.plainString()
			if !ok {
				return out, false
			}
			if k == 0 {
				out.gateway = v
			} else {
				out.tenant = &v
			}
		case 2: // readings
			if p.literal("null") {
				break
			}
			if !p.items(&out) {
				return out, false
			}
		case 3: // events: decoded and ignored by this endpoint, but must be an array or null
			if p.peek() != '[' && p.peek() != 'n' {
				return out, false
			}
			if !p.skipValue() {
				return out, false
			}
		default:
			if !p.skipValue() {
				return out, false
			}
		}
		p.ws()
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return out, p.end()
		}
		return out, false
	}
}

// end reports whether only whitespace is left.
func (p *jsonScan) end() bool {
	p.ws()
	return p.i == len(p.b)
}

// items reads the readings array into out.items.
func (p *jsonScan) items(out *fastJSONBatch) bool {
	if !p.consume('[') {
		return false
	}
	if out.items == nil {
		// A compact reading is ~180 bytes; growing is fine when wrong.
		out.items = make([]fastItem, 0, min(len(p.b)/150+1, 8192))
	}
	p.ws()
	if p.consume(']') {
		return true
	}
	for {
		p.ws()
		start := p.i
		out.items = append(out.items, fastItem{})
		it := &out.items[len(out.items)-1]
		if !p.reading(it) {
			// Not one the fast path can read: find its end, and let
			// encoding/json judge it.
			*it = fastItem{}
			p.i = start
			if !p.skipValue() {
				return false
			}
		}
		it.raw = p.b[start:p.i]
		p.ws()
		if p.consume(',') {
			continue
		}
		return p.consume(']')
	}
}

// reading reads one item object into it, or reports false (leaving the
// position anywhere) if encoding/json must judge it.
func (p *jsonScan) reading(it *fastItem) bool {
	if !p.consume('{') {
		return false
	}
	p.ws()
	if p.consume('}') {
		it.fast = true
		return true
	}
	for {
		p.ws()
		key, ok := p.plainKey()
		if !ok {
			return false
		}
		p.ws()
		if !p.consume(':') {
			return false
		}
		p.ws()
		f, known := jsonReadingField(key)
		if !known {
			if foldsToAny(key, readingKeys) {
				return false
			}
			if !p.skipValue() {
				return false
			}
		} else {
			bit := uint16(1) << f
			if (it.has|it.null)&bit != 0 {
				return false // a repeated key: the last would win; rare enough to leave to encoding/json
			}
			switch {
			case p.literal("null"):
				it.null |= bit
			case f < jfStrings:
				v, ok := p.plainString()
				if !ok {
					return false
				}
				it.str[f] = v
				it.has |= bit
			case f == jfWithdrawn:
				switch {
				case p.literal("true"):
					it.withdrawn = true
				case p.literal("false"):
					it.withdrawn = false
				default:
					return false // another type: encoding/json names the field
				}
				it.has |= bit
			default:
				a, ok := p.number()
				if !ok {
					return false
				}
				var err error
				switch f {
				case jfValue:
					it.num[0], err = strconv.ParseFloat(p.s[a:p.i], 64)
				case jfDiastolic:
					it.num[1], err = strconv.ParseFloat(p.s[a:p.i], 64)
				case jfSequence:
					it.sequence, err = strconv.ParseInt(p.s[a:p.i], 10, 64)
				case jfRevision:
					it.revision, err = strconv.ParseInt(p.s[a:p.i], 10, 64)
				}
				if err != nil {
					return false // out of range or not an integer: encoding/json names the field
				}
				it.has |= bit
			}
		}
		p.ws()
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			it.fast = true
			return true
		}
		return false
	}
}

func (p *jsonScan) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *jsonScan) consume(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *jsonScan) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// literal consumes word (true, false, null) if it is next.
func (p *jsonScan) literal(word string) bool {
	if strings.HasPrefix(p.s[p.i:], word) {
		p.i += len(word)
		return true
	}
	return false
}

// str scans a string at the position and returns its contents' range;
// plain is true when it has no escapes and is valid UTF-8, so that its
// bytes are its value. ok is false on a syntax error.
func (p *jsonScan) str() (a, z int, plain, ok bool) {
	if !p.consume('"') {
		return 0, 0, false, false
	}
	a = p.i
	ascii, escaped := true, false
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' {
			p.i++ // the common byte first
			continue
		}
		switch {
		case c == '"':
			z = p.i
			p.i++
			plain = !escaped && (ascii || utf8.ValidString(p.s[a:z]))
			return a, z, plain, true
		case c < 0x20:
			return 0, 0, false, false
		case c == '\\':
			escaped = true
			if p.i+1 >= len(p.b) {
				return 0, 0, false, false
			}
			switch p.b[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if p.i+6 > len(p.b) {
					return 0, 0, false, false
				}
				for _, h := range p.b[p.i+2 : p.i+6] {
					if !isHex(h) {
						return 0, 0, false, false
					}
				}
				p.i += 6
			default:
				return 0, 0, false, false
			}
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			p.i++
		}
	}
	return 0, 0, false, false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// plainString reads a string whose value is its bytes.
func (p *jsonScan) plainString() (string, bool) {
	a, z, plain, ok := p.str()
	if !ok || !plain {
		return "", false
	}
	return p.s[a:z], true
}

// plainKey reads an object key that is plain ASCII, the only keys the
// fast path matches itself.
func (p *jsonScan) plainKey() (string, bool) {
	a, z, plain, ok := p.str()
	if !ok || !plain {
		return "", false
	}
	for i := a; i < z; i++ {
		if p.b[i] >= utf8.RuneSelf {
			return "", false
		}
	}
	return p.s[a:z], true
}

// number scans a number with JSON's grammar and returns where it starts.
func (p *jsonScan) number() (int, bool) {
	a := p.i
	p.consume('-')
	switch {
	case p.consume('0'):
	case p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.digits()
	default:
		return a, false
	}
	if p.consume('.') {
		if p.digits() == 0 {
			return a, false
		}
	}
	if p.consume('e') || p.consume('E') {
		if !p.consume('+') {
			p.consume('-')
		}
		if p.digits() == 0 {
			return a, false
		}
	}
	return a, true
}

func (p *jsonScan) digits() int {
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// skipValue scans over any JSON value, checking its syntax.
func (p *jsonScan) skipValue() bool {
	switch p.peek() {
	case '"':
		_, _, _, ok := p.str()
		return ok
	case '{', '[':
		close := byte('}')
		if p.b[p.i] == '[' {
			close = ']'
		}
		obj := close == '}'
		p.i++
		if p.depth++; p.depth > maxFastDepth {
			return false
		}
		defer func() { p.depth-- }()
		p.ws()
		if p.consume(close) {
			return true
		}
		for {
			p.ws()
			if obj {
				if _, _, _, ok := p.str(); !ok {
					return false
				}
				p.ws()
				if !p.consume(':') {
					return false
				}
				p.ws()
			}
			if !p.skipValue() {
				return false
			}
			p.ws()
			if p.consume(',') {
				continue
			}
			return p.consume(close)
		}
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	default:
		_, ok := p.number()
		return ok
	}
}
