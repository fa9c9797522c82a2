package schemas

import (
	"encoding/binary"
	"errors"
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

// MaxStringLen is the general codec's bound on an Avro string or bytes
// length (hamba/avro's default MaxByteSliceSize); a Reader leaves longer
// ones to the codec, whose error they are.
const MaxStringLen = 1 << 20

// Why a Reader stopped.
var (
	// ErrShort: the input ends inside a value.
	ErrShort = errors.New("avro: input ends inside a value")
	// ErrUnsupported: something a Reader leaves to the general codec,
	// which reads it or words its error: varints longer than it reads,
	// negative or over-long lengths, union branches other than 0 and 1.
	ErrUnsupported = errors.New("avro: left to the general codec")
)

// Reader reads Avro binary values from a string, for the hand-written
// decoders of the hot paths; strings it returns are substrings of its
// input, so they cost no allocation. Its first failure sticks: later reads
// return zero values, and Err reports it, so a message is checked once at
// the end. A failed read is for the caller to hand to the general codec
// (whose result is then the answer), so a Reader refuses anything whose
// reading by the codec it does not match exactly.
type Reader struct {
	s   string
	i   int
	err error
}

// NewReader reads s from its start.
func NewReader(s string) *Reader { return &Reader{s: s} }

// Err is the first failure, nil if there was none.
func (r *Reader) Err() error { return r.err }

// Remaining is the count of bytes not read yet.
func (r *Reader) Remaining() int { return len(r.s) - r.i }

// Fail records err as the Reader's failure unless it has one already: for
// callers' own checks (a value the layout does not allow) to stop reading
// the same way.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Long reads an Avro long: a zigzag varint of at most 10 bytes.
func (r *Reader) Long() int64 {
	v := r.varint(10)
	return int64(v>>1) ^ -int64(v&1)
}

// Int reads an Avro int: a zigzag varint of at most 5 bytes, in 32 bits.
func (r *Reader) Int() int32 {
	v := uint32(r.varint(5))
	return int32(v>>1) ^ -int32(v&1)
}

// varint reads an unsigned varint of at most maxBytes bytes with the
// codec's arithmetic: bits beyond the 64th are dropped. A longer one is
// left to the codec (which takes it for the end of the message).
func (r *Reader) varint(maxBytes int) uint64 {
	if r.err != nil {
		return 0
	}
	var v uint64
	for n := range maxBytes {
		if r.i >= len(r.s) {
			r.Fail(ErrShort)
			return 0
		}
		c := r.s[r.i]
		r.i++
		v |= uint64(c&0x7f) << (7 * n)
		if c&0x80 == 0 {
			return v
		}
	}
	r.Fail(ErrUnsupported)
	return 0
}

// Double reads an Avro double: 8 bytes, little-endian.
func (r *Reader) Double() float64 {
	if r.err != nil {
		return 0
	}
	if len(r.s)-r.i < 8 {
		r.Fail(ErrShort)
		return 0
	}
	var b [8]byte
	copy(b[:], r.s[r.i:])
	r.i += 8
	return math.Float64frombits(binary.LittleEndian.Uint64(b[:]))
}

// Str reads an Avro string, a substring of the input. (Not String, which
// would make a Reader a fmt.Stringer that consumes its input when printed.)
func (r *Reader) Str() string {
	n := r.Long()
	switch {
	case r.err != nil:
		return ""
	case n < 0 || n > MaxStringLen:
		r.Fail(ErrUnsupported)
		return ""
	case int64(len(r.s)-r.i) < n:
		r.Fail(ErrShort)
		return ""
	}
	s := r.s[r.i : r.i+int(n)]
	r.i += int(n)
	return s
}

// Present reads the branch index of a ["null", T] union: true for T.
func (r *Reader) Present() bool {
	switch r.Long() {
	case 0:
		return false
	case 1:
		return r.err == nil
	}
	r.Fail(ErrUnsupported)
	return false
}
