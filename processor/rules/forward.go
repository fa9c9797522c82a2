package rules

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

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

// ParseSource reads a HeaderSource value.
func ParseSource(v []byte) (partition int32, offset int64, err error) {
	p, o, ok := strings.Cut(string(v), "/")
	if !ok {
		return 0, 0, fmt.Errorf("%s header %q is not partition/offset", HeaderSource, v)
	}
	pn, err1 := strconv.ParseInt(p, 10, 32)
	on, err2 := strconv.ParseInt(o, 10, 64)
	if err := errors.Join(err1, err2); err != nil || pn < 0 || on < 0 {
		return 0, 0, fmt.Errorf("%s header %q is not partition/offset", HeaderSource, v)
	}
	return int32(pn), on, nil
}

// DecodeAccepted decodes the plain value of an accepted-readings record
// into dst: an accepted_reading message (accepted is its codec), or, if
// the record has a HeaderSource value src, the logged reading it forwards
// (reading is the readings' codec), made into the accepted reading that
// Accepted makes of it. Its strings share plain's bytes.
func DecodeAccepted(accepted, reading *schemas.Codec, plain, src []byte, dst *schemas.AcceptedReading) error {
	if src == nil {
		*dst = schemas.AcceptedReading{}
		return accepted.Decode(plain, dst)
	}
	part, off, err := ParseSource(src)
	if err != nil {
		return err
	}
	var rd schemas.Reading
	if err := schemas.DecodeReading(reading, plain, &rd); err != nil {
		return fmt.Errorf("forwarded reading: %w", err)
	}
	if _, ok := metric.Lookup(rd.Metric); !ok {
		return fmt.Errorf("forwarded reading: metric %q is not in the catalogue", rd.Metric)
	}
	Accepted(dst, &rd, part, off)
	return nil
}
