// Package consistency is the read-your-writes token: the Kafka positions a
// write reached. Ingest hands one out with every accepted batch; the query
// service takes it back and waits until the pipeline has stored past those
// positions before it answers.
//
// To clients a token is opaque: base64url (no padding) of a small JSON
// document {"v":1,"p":{"<topic>":{"<partition>":<offset>}}}, where offset
// is the highest offset of the write's records in that partition. JSON
// keeps the token debuggable and lets later versions add fields.
package consistency

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// MaxLen bounds an encoded token a client may send; a real one holds a few
// topics and partitions.
const MaxLen = 4096

// Token maps topic -> partition -> the highest offset written there.
type Token map[string]map[int32]int64

// Add records that offset was written to topic's partition.
func (t Token) Add(topic string, partition int32, offset int64) {
	ps := t[topic]
	if ps == nil {
		ps = make(map[int32]int64)
		t[topic] = ps
	}
	if cur, ok := ps[partition]; !ok || offset > cur {
		ps[partition] = offset
	}
}

type wire struct {
	V int                         `json:"v"`
	P map[string]map[string]int64 `json:"p"`
}

// Encode returns the opaque form; it is deterministic (JSON objects are
// written with sorted keys), and empty for an empty token.
func (t Token) Encode() string {
	if len(t) == 0 {
		return ""
	}
	w := wire{V: 1, P: make(map[string]map[string]int64, len(t))}
	for topic, ps := range t {
		m := make(map[string]int64, len(ps))
		for p, o := range ps {
			m[strconv.FormatInt(int64(p), 10)] = o
		}
		w.P[topic] = m
	}
	b, err := json.Marshal(w)
	if err != nil { // maps of strings and ints always marshal
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode parses a token made by Encode.
func Decode(s string) (Token, error) {
	if s == "" || len(s) > MaxLen {
		return nil, fmt.Errorf("token must be 1 to %d characters", MaxLen)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("token is not base64url: %w", err)
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("token is malformed: %w", err)
	}
	if w.V != 1 || len(w.P) == 0 {
		return nil, errors.New("token is of an unknown version or empty")
	}
	t := make(Token, len(w.P))
	for topic, ps := range w.P {
		for ps, o := range ps {
			p, err := strconv.ParseInt(ps, 10, 32)
			if err != nil || p < 0 || o < 0 {
				return nil, fmt.Errorf("token names partition %q offset %d", ps, o)
			}
			t.Add(topic, int32(p), o)
		}
	}
	return t, nil
}
