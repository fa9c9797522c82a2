package ingest

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// appendBatchResponse appends r as JSON, byte for byte what
// json.NewEncoder(w).Encode(r) writes (newline included), without the
// reflection: a 500-item answer is one verdict object per reading, and
// encoding/json was a tenth of ingest's CPU on the Avro path.
func appendBatchResponse(dst []byte, r *BatchResponse) []byte {
	dst = append(dst, `{"accepted":`...)
	dst = strconv.AppendInt(dst, int64(r.Accepted), 10)
	dst = append(dst, `,"rejected":`...)
	dst = strconv.AppendInt(dst, int64(r.Rejected), 10)
	dst = append(dst, `,"items":`...)
	if r.Items == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range r.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendVerdict(dst, &r.Items[i])
		}
		dst = append(dst, ']')
	}
	if r.ConsistencyToken != "" {
		dst = append(dst, `,"consistency_token":`...)
		dst = appendJSONString(dst, r.ConsistencyToken)
	}
	return append(dst, "}\n"...)
}

func appendVerdict(dst []byte, v *ItemVerdict) []byte {
	dst = append(dst, `{"index":`...)
	dst = strconv.AppendInt(dst, int64(v.Index), 10)
	dst = append(dst, `,"status":`...)
	dst = appendJSONString(dst, v.Status)
	for _, f := range [...]struct{ key, v string }{
		{`,"event_id":`, v.EventID}, {`,"reason":`, v.Reason}, {`,"field":`, v.Field}, {`,"message":`, v.Message},
	} {
		if f.v != "" {
			dst = appendJSONString(append(dst, f.key...), f.v)
		}
	}
	return append(dst, '}')
}

// appendJSONString appends s as encoding/json quotes it. Strings of
// printable ASCII that need no escape (ids, statuses, most messages) are
// copied; the rest go through encoding/json itself, so its escaping (HTML
// characters, invalid UTF-8, U+2028 and U+2029) is kept exactly.
func appendJSONString(dst []byte, s string) []byte {
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

// writeBatchResponse writes a 200 answer; see appendBatchResponse.
func writeBatchResponse(w http.ResponseWriter, r *BatchResponse) {
	// ~60 bytes per accepted item's verdict.
	buf := appendBatchResponse(make([]byte, 0, 64+len(r.Items)*72), r)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf)
}
