// Package jsonwire is the JSON of the wire: a reading item as gateways
// post it, and appenders of JSON values to byte slices exactly as
// encoding/json writes them, for the hand-written encoders of hot paths
// (ingest's answers, the simulator's bodies and manifest) that skip
// reflection.
package jsonwire

import "encoding/json"

// AppendString appends s as encoding/json quotes it. Strings of printable
// ASCII that need no escape (ids, statuses, most messages) are copied; the
// rest go through encoding/json itself, so its escaping (HTML characters,
// invalid UTF-8, U+2028 and U+2029) is kept exactly.
func AppendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// Reading is a reading item of a JSON readings request with the fields
// every reading has (docs/api.md lists the optional ones), as the demo,
// the simulator and the tests write it.
type Reading struct {
	EventID    string  `json:"event_id"`
	UserID     string  `json:"user_id"`
	DeviceID   string  `json:"device_id"`
	Metric     string  `json:"metric"`
	Value      float64 `json:"value"`
	Unit       string  `json:"unit"`
	MeasuredAt string  `json:"measured_at"` // RFC 3339
}
