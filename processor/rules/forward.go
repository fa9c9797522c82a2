package rules

import (
	"bytes"
	"fmt"
	"math"
	"strconv"

	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/schemas"
)

// An accepted-readings record holds its accepted reading in one of two
// forms (docs/events.md). The processor encodes an accepted_reading
// message for a reading it accepts later than it read it (a held reading
// released) or read in clear. A reading it accepts as it reads it, sealed
// by ingest with its user's data key, it forwards instead: the record's
// value is ingest's sealed reading, byte for byte, and the header
// HeaderSource says where the reading lies in the readings topic. The
// accepted reading is then Accepted of the logged reading, which readers
// work out with DecodeAccepted; the processor neither encodes nor seals
// it again, one AES-GCM seal per reading less, each with a different
// user's key and so a cache miss.

// HeaderSource is the header of a forwarded reading: the partition and
// offset of the reading in the readings topic, in decimal, "p/o".
const HeaderSource = "vitals-src"

// AppendSource appends the HeaderSource value of a reading at
// partition/offset to dst.
func AppendSource(dst []byte, partition int32, offset int64) []byte {
	dst = strconv.AppendInt(dst, int64(partition), 10)
	return strconv.AppendInt(append(dst, '/'), offset, 10)
}

// ParseSource reads a HeaderSource value. It runs for nearly every
// accepted reading a projector reads, so it parses the digits itself
// rather than convert the bytes to strings for strconv.
func ParseSource(v []byte) (partition int32, offset int64, err error) {
	p, o, ok := bytes.Cut(v, []byte{'/'})
	pn, okP := decimal(p, math.MaxInt32)
	on, okO := decimal(o, math.MaxInt64)
	if !ok || !okP || !okO {
		return 0, 0, fmt.Errorf("%s header %q is not partition/offset", HeaderSource, v)
	}
	return int32(pn), on, nil
}

// decimal reads b as a non-negative decimal number no greater than max.
func decimal(b []byte, max int64) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return int64(n), n <= uint64(max)
}

// DecodeAccepted decodes the plain value of an accepted-readings record
// into f: an accepted_reading message (accepted is its codec), or, if the
// record has a HeaderSource value src, the logged reading it forwards
// (reading is the readings' codec), made into the accepted reading by
// AcceptFlat. Both forms are read by hand without allocating; f's strings
// share plain's bytes.
func DecodeAccepted(accepted, reading *schemas.Codec, plain, src []byte, f *schemas.FlatAcceptedReading) error {
	if src == nil {
		return schemas.DecodeFlatAcceptedReading(accepted, plain, f)
	}
	part, off, err := ParseSource(src)
	if err != nil {
		return err
	}
	if err := schemas.DecodeFlatReading(reading, plain, f); err != nil {
		return fmt.Errorf("forwarded reading: %w", err)
	}
	return AcceptFlat(f, part, off)
}

// AcceptFlat makes f, a reading as it was sent (schemas.DecodeFlatReading),
// the accepted reading Accepted makes of it: values in the metric's
// canonical unit, its LOINC code, the reading's place in the log. It is
// Accepted for readers of forwarded readings, which decode without
// allocating (DecodeAccepted); a test holds the two to the same rows. A
// metric outside the catalogue is an error: the processor accepts none.
func AcceptFlat(f *schemas.FlatAcceptedReading, partition int32, offset int64) error {
	m, ok := metric.Lookup(f.Metric)
	if !ok {
		return fmt.Errorf("forwarded reading: metric %q is not in the catalogue", f.Metric)
	}
	f.Value, _ = m.Canonical(f.Value, f.Unit) // ingest admitted only known units
	if f.HasSecondValue {
		f.SecondValue, _ = m.Canonical(f.SecondValue, f.Unit)
	}
	f.LOINC, f.Unit = m.LOINC, m.Unit
	f.SourcePartition, f.SourceOffset = partition, offset
	return nil
}
