package projector

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/processor/rules"
	"github.com/vitalshq/vitals/schemas"
)

// acceptedCodec reads the accepted-readings topic's records, opened, in
// either of their forms (see rules.HeaderSource and rules.DecodeAccepted).
type acceptedCodec struct {
	accepted, reading *schemas.Codec
}

func newAcceptedCodec() acceptedCodec {
	return acceptedCodec{accepted: schemas.MustCodec(schemas.NameAcceptedReading), reading: schemas.MustCodec(schemas.NameReading)}
}

// decode reads rec's accepted reading into f; its strings share rec's
// value.
func (c acceptedCodec) decode(rec *kgo.Record, f *schemas.FlatAcceptedReading) error {
	return rules.DecodeAccepted(c.accepted, c.reading, rec.Value, headerValue(rec.Headers, rules.HeaderSource), f)
}

// headerValue is the value of the header named key, nil if there is none.
func headerValue(hs []kgo.RecordHeader, key string) []byte {
	for i := range hs {
		if hs[i].Key == key {
			if hs[i].Value == nil {
				return []byte{}
			}
			return hs[i].Value
		}
	}
	return nil
}
