package projector

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/processor/rules"
	"github.com/vitalshq/vitals/schemas"
)

// acceptedCodec reads the accepted-readings topic's records, opened, in
// either of their forms (see rules.HeaderSource), both read by hand
// without allocating: an accepted_reading message, or a logged reading
// the processor forwarded, which becomes the accepted reading
// rules.AcceptFlat makes of it, as the processor would have encoded it.
type acceptedCodec struct {
	accepted, reading *schemas.Codec
}

func newAcceptedCodec() acceptedCodec {
	return acceptedCodec{accepted: schemas.MustCodec(schemas.NameAcceptedReading), reading: schemas.MustCodec(schemas.NameReading)}
}

// decode reads rec's accepted reading into f; its strings share rec's
// value.
func (c acceptedCodec) decode(rec *kgo.Record, f *schemas.FlatAcceptedReading) error {
	src := headerValue(rec.Headers, rules.HeaderSource)
	if src == nil {
		return schemas.DecodeFlatAcceptedReading(c.accepted, rec.Value, f)
	}
	part, off, err := rules.ParseSource(src)
	if err != nil {
		return err
	}
	if err := schemas.DecodeFlatReading(c.reading, rec.Value, f); err != nil {
		return fmt.Errorf("forwarded reading: %w", err)
	}
	return rules.AcceptFlat(f, part, off)
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
