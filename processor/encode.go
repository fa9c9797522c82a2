package processor

import "github.com/vitalshq/vitals/schemas"

// acceptedEncoder encodes accepted readings, one for nearly every input
// record, with the hand-written encoder of package schemas: accepted_reading
// v2 written straight into the batch's output buffer, where the
// reflection-driven codec costs several allocations and most of the
// encoding time per record. A later current version goes through the codec
// (schemas.AppendAcceptedReading), so a schema change can never be written
// in the old layout.
type acceptedEncoder struct {
	codec *schemas.Codec
}

func newAcceptedEncoder(c *schemas.Codec) acceptedEncoder { return acceptedEncoder{codec: c} }

// bound returns the most bytes append adds for a when it writes v2 by hand
// (the codec, writing some later version, may add more).
func (e *acceptedEncoder) bound(a *schemas.AcceptedReading) int {
	return schemas.AcceptedReadingBound(a)
}

// append appends a as a single-object message to dst.
func (e *acceptedEncoder) append(dst []byte, a *schemas.AcceptedReading) ([]byte, error) {
	return schemas.AppendAcceptedReading(e.codec, dst, a)
}
