package schemas

import (
	"encoding/binary"
	"math"
)

// The Append functions write Avro's binary encoding of one value, for the
// hand-written encoders of the hot paths (ingest's logged reading, the
// processor's accepted reading, the load generator's batches), which their
// tests hold byte for byte to the codec's output.

// SingleObjectHeader is the single-object encoding's marker (C3 01) and
// the schema's CRC-64-AVRO fingerprint, little-endian.
func SingleObjectHeader(fingerprint uint64) [10]byte {
	var h [10]byte
	h[0], h[1] = 0xC3, 0x01
	binary.LittleEndian.PutUint64(h[2:], fingerprint)
	return h
}

// AppendLong appends an Avro int or long: a zigzag varint.
func AppendLong(dst []byte, v int64) []byte {
	return binary.AppendUvarint(dst, uint64(v<<1)^uint64(v>>63))
}

// AppendString appends an Avro string: its length, then its bytes.
func AppendString(dst []byte, s string) []byte {
	return append(AppendLong(dst, int64(len(s))), s...)
}

// AppendDouble appends an Avro double: 8 bytes, little-endian.
func AppendDouble(dst []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
}

// AppendOptLong appends a ["null", "long"] union.
func AppendOptLong(dst []byte, v *int64) []byte {
	if v == nil {
		return append(dst, 0)
	}
	return AppendLong(append(dst, 2), *v)
}

// AppendOptDouble appends a ["null", "double"] union.
func AppendOptDouble(dst []byte, v *float64) []byte {
	if v == nil {
		return append(dst, 0)
	}
	return AppendDouble(append(dst, 2), *v)
}

// AppendOptString appends a ["null", "string"] union.
func AppendOptString(dst []byte, s *string) []byte {
	if s == nil {
		return append(dst, 0)
	}
	return AppendString(append(dst, 2), *s)
}
