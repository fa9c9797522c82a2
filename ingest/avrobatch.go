package ingest

import (
	"errors"
	"fmt"

	"github.com/hamba/avro/v2"

	"github.com/vitalshq/vitals/schemas"
)

var (
	batchCodec     = schemas.MustCodec(schemas.NameReadingBatch)
	gatewayReading = func() avro.Schema {
		rec := batchCodec.Current().Schema.(*avro.RecordSchema)
		for _, f := range rec.Fields() {
			if f.Name() == "readings" {
				return f.Type().(*avro.ArraySchema).Items()
			}
		}
		panic("reading_batch schema has no readings array")
	}()
)

// errAvroShort is decodeReadingBatch's error for a body that ends inside
// the batch, which the general codec takes for a whole one in some cases
// (see schemas.ReadReadingBatch).
var errAvroShort = errors.New("the body ends before the batch does (truncated)")

// decodeReadingBatch reads an Avro ReadingBatch single-object message: the
// hand-written decoder where it answers, else the general codec. A body
// that ends inside the batch, or has bytes after its end, is refused even
// where the codec would take it: the codec reads a body cut at a field
// boundary as a whole one (the missing fields left empty) and ignores
// extra bytes, and either could lose readings without a word.
func decodeReadingBatch(body []byte) (schemas.ReadingBatch, error) {
	fast, err := schemas.ReadReadingBatch(batchCodec, body)
	if err == nil {
		return fast, nil
	}
	var b schemas.ReadingBatch // apart from fast, which then stays off the heap
	if cerr := batchCodec.Decode(body, &b); cerr != nil {
		return b, cerr
	}
	switch {
	case errors.Is(err, schemas.ErrShort):
		return b, errAvroShort
	case errors.Is(err, schemas.ErrUnsupported):
		return b, nil
	}
	return b, err
}

// decodeAvroReadings reads an Avro ReadingBatch sent as one single-object
// message. The dead-letter copy of a refused item is that item re-encoded
// alone with the GatewayReading schema: its exact bytes within the batch.
func (s *Server) decodeAvroReadings(body []byte) (decodedBatch, *apiError) {
	b, err := decodeReadingBatch(body)
	if err != nil {
		return decodedBatch{}, badRequest("malformed_body", "body is not an Avro single-object ReadingBatch: %v", err)
	}
	return decodedBatch{gateway: b.GatewayID, tenant: b.TenantID, n: len(b.Readings), format: "avro",
		judge: func(i int, cc *checkContext) judged {
			g := &b.Readings[i]
			in := Input{EventID: &g.EventID, UserID: &g.UserID, DeviceID: &g.DeviceID, Metric: &g.Metric, Unit: &g.Unit,
				Value: g.Value, Diastolic: g.Diastolic, MeasuredAt: &g.MeasuredAt, ReceivedAt: g.ReceivedAt,
				PeriodEnd: g.PeriodEnd, Stage: g.Stage, Sequence: g.Sequence, Revision: g.Revision, Withdrawn: g.Withdrawn}
			it := s.judgeReading(nil, &in, nil, cc)
			if it.rej != nil { // only a refused item needs its bytes, for the dead letter
				raw, err := avro.Marshal(gatewayReading, g)
				if err != nil {
					raw = []byte(fmt.Sprintf("unencodable item: %v", err))
				}
				it.raw = raw
			}
			return it
		}}, nil
}
