package simulate

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/jsonwire"
)

// verdict is what the simulator needs of one item's verdict in ingest's
// answer.
type verdict struct {
	status, reason string
}

// parseVerdicts appends the verdicts of a batch answer to out. Ingest's
// 200 answer has one fixed shape (accepted, rejected, then items whose
// index and status come first); it is read by a scanner that knows it,
// since decoding 500 verdicts with encoding/json cost the simulator more
// than writing the request. Any other answer (a 503 with its error fields
// first, or anything unexpected) is read by encoding/json.
func parseVerdicts(body []byte, out []verdict) []verdict {
	if vs, ok := scanVerdicts(body, out); ok {
		return vs
	}
	var resp ingest.BatchResponse
	if json.Unmarshal(body, &resp) != nil {
		return out[:0]
	}
	out = out[:0]
	for _, v := range resp.Items {
		out = append(out, verdict{status: v.Status, reason: v.Reason})
	}
	return out
}

// answerScan reads a JSON text it expects to be in ingest's shape; any
// surprise makes ok false.
type answerScan struct {
	b  []byte
	i  int
	ok bool
}

func (p *answerScan) lit(s string) {
	if p.ok && bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		p.i += len(s)
		return
	}
	p.ok = false
}

func (p *answerScan) is(c byte) bool {
	if p.ok && p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *answerScan) int() {
	start := p.i
	for p.i < len(p.b) && (p.b[p.i] >= '0' && p.b[p.i] <= '9' || p.b[p.i] == '-' && p.i == start) {
		p.i++
	}
	if p.i == start {
		p.ok = false
	}
}

// str reads a string's contents after its opening quote; plain strings
// (no escapes) are returned, others only skipped (plain false).
func (p *answerScan) str() (s []byte, plain bool) {
	start, plain := p.i, true
	for p.ok && p.i < len(p.b) {
		switch p.b[p.i] {
		case '"':
			p.i++
			return p.b[start : p.i-1], plain
		case '\\':
			plain = false
			p.i += 2
		default:
			p.i++
		}
	}
	p.ok = false
	return nil, false
}

// statuses interns the statuses ingest sends, so that a verdict costs no
// allocation.
func status(b []byte) (string, bool) {
	for _, s := range [...]string{ingest.StatusAccepted, ingest.StatusRejected, ingest.StatusNotSaved, ingest.StatusUnconfirmed} {
		if string(b) == s {
			return s, true
		}
	}
	return "", false
}

func scanVerdicts(body []byte, out []verdict) ([]verdict, bool) {
	out = out[:0]
	p := answerScan{b: body, ok: true}
	p.lit(`{"accepted":`)
	p.int()
	p.lit(`,"rejected":`)
	p.int()
	p.lit(`,"items":[`)
	if p.is(']') {
		return out, p.ok
	}
	for p.ok {
		p.lit(`{"index":`)
		p.int()
		p.lit(`,"status":"`)
		b, plain := p.str()
		st, known := status(b)
		if !plain || !known {
			return out, false
		}
		v := verdict{status: st}
		for p.is(',') {
			p.lit(`"`)
			key, _ := p.str()
			p.lit(`:"`)
			val, plain := p.str()
			if string(key) == "reason" {
				if !plain {
					return out, false
				}
				v.reason = string(val)
			}
		}
		if !p.is('}') {
			return out, false
		}
		out = append(out, v)
		if p.is(']') {
			return out, p.ok
		}
		if !p.is(',') {
			return out, false
		}
	}
	return out, false
}

// appendEntry appends e as one manifest line, the bytes json.Encoder
// writes for it.
func appendEntry(dst []byte, e *Entry) []byte {
	dst = jsonwire.AppendString(append(dst, `{"id":`...), e.EventID)
	dst = jsonwire.AppendString(append(dst, `,"user":`...), e.UserID)
	if e.Metric != "" {
		dst = jsonwire.AppendString(append(dst, `,"metric":`...), e.Metric)
	}
	if e.Day != "" {
		dst = jsonwire.AppendString(append(dst, `,"day":`...), e.Day)
	}
	dst = jsonwire.AppendString(append(dst, `,"fault":`...), e.Fault)
	dst = jsonwire.AppendString(append(dst, `,"expect":`...), e.Expect)
	if e.Reason != "" {
		dst = jsonwire.AppendString(append(dst, `,"reason":`...), e.Reason)
	}
	if e.Revision != 0 {
		dst = strconv.AppendInt(append(dst, `,"revision":`...), e.Revision, 10)
	}
	if e.Value != 0 {
		dst = strconv.AppendFloat(append(dst, `,"value":`...), e.Value, 'f', -1, 64)
	}
	dst = strconv.AppendBool(append(dst, `,"acked":`...), e.Acked)
	if e.AckedAt != 0 {
		dst = strconv.AppendInt(append(dst, `,"acked_at":`...), e.AckedAt, 10)
	}
	dst = strconv.AppendInt(append(dst, `,"attempts":`...), int64(e.Attempts), 10)
	if e.Status != "" {
		dst = jsonwire.AppendString(append(dst, `,"status":`...), e.Status)
	}
	return append(dst, "}\n"...)
}
