package schemas

import (
	"encoding/binary"
	"errors"
	"math"
)

// Avro's binary encoding, one value at a time, for the hand-written codecs
// beside the schemas (see handwritten.go): the append functions write a
// value, a reader reads them back.

// singleObjectHeader is the single-object encoding's marker (C3 01) and
// the schema's CRC-64-AVRO fingerprint, little-endian.
func singleObjectHeader(fingerprint uint64) [headerLen]byte {
	var h [headerLen]byte
	copy(h[:2], magic[:])
	binary.LittleEndian.PutUint64(h[2:], fingerprint)
	return h
}

// appendLong appends an Avro int or long: a zigzag varint.
func appendLong(dst []byte, v int64) []byte {
	return binary.AppendUvarint(dst, uint64(v<<1)^uint64(v>>63))
}

// appendString appends an Avro string: its length, then its bytes.
func appendString(dst []byte, s string) []byte {
	return append(appendLong(dst, int64(len(s))), s...)
}

// appendDouble appends an Avro double: 8 bytes, little-endian.
func appendDouble(dst []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
}

// appendBool appends an Avro boolean: one byte, 0 or 1.
func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// appendOptBool appends a ["null", "boolean"] union.
func appendOptBool(dst []byte, v *bool) []byte {
	if v == nil {
		return append(dst, 0)
	}
	return appendBool(append(dst, 2), *v)
}

// appendOptLong appends a ["null", "long"] union.
func appendOptLong(dst []byte, v *int64) []byte {
	if v == nil {
		return append(dst, 0)
	}
	return appendLong(append(dst, 2), *v)
}

// appendOptDouble appends a ["null", "double"] union.
func appendOptDouble(dst []byte, v *float64) []byte {
	if v == nil {
		return append(dst, 0)
	}
	return appendDouble(append(dst, 2), *v)
}

// appendOptEnum appends a ["null", enum] union: symbol is the enum
// symbol's index, negative for null.
func appendOptEnum(dst []byte, symbol int64) []byte {
	if symbol < 0 {
		return append(dst, 0)
	}
	return appendLong(append(dst, 2), symbol)
}

// appendOptString appends a ["null", "string"] union.
func appendOptString(dst []byte, s *string) []byte {
	if s == nil {
		return append(dst, 0)
	}
	return appendString(append(dst, 2), *s)
}

// maxStringLen is the general codec's bound on an Avro string or bytes
// length (hamba/avro's default MaxByteSliceSize); a reader leaves longer
// ones to the codec, whose error they are.
const maxStringLen = 1 << 20

// Why a reader stopped, and so why a hand-written decoder did not answer
// (see ReadReadingBatch).
var (
	// ErrShort: the input ends inside a value.
	ErrShort = errors.New("avro: input ends inside a value")
	// ErrUnsupported: something a reader leaves to the general codec,
	// which reads it or words its error: varints longer than it reads,
	// negative or over-long lengths, union branches other than 0 and 1.
	ErrUnsupported = errors.New("avro: left to the general codec")
)

// reader reads Avro binary values from a string, for the hand-written
// decoders; strings it returns are substrings of its
// input, so they cost no allocation. Its first failure sticks: later reads
// return zero values, and Err reports it, so a message is checked once at
// the end. A failed read is for the caller to hand to the general codec
// (whose result is then the answer), so a reader refuses anything whose
// reading by the codec it does not match exactly.
type reader struct {
	s   string
	i   int
	err error
}

// newReader reads s from its start.
func newReader(s string) *reader { return &reader{s: s} }

// Err is the first failure, nil if there was none.
func (r *reader) Err() error { return r.err }

// Remaining is the count of bytes not read yet.
func (r *reader) Remaining() int { return len(r.s) - r.i }

// Fail records err as the reader's failure unless it has one already: for
// callers' own checks (a value the layout does not allow) to stop reading
// the same way.
func (r *reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Long reads an Avro long: a zigzag varint of at most 10 bytes.
func (r *reader) Long() int64 {
	v := r.varint(10)
	return int64(v>>1) ^ -int64(v&1)
}

// Int reads an Avro int: a zigzag varint of at most 5 bytes, in 32 bits.
func (r *reader) Int() int32 {
	v := uint32(r.varint(5))
	return int32(v>>1) ^ -int32(v&1)
}

// varint reads an unsigned varint of at most maxBytes bytes with the
// codec's arithmetic: bits beyond the 64th are dropped. A longer one is
// left to the codec (which takes it for the end of the message).
func (r *reader) varint(maxBytes int) uint64 {
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
func (r *reader) Double() float64 {
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
// would make a reader a fmt.Stringer that consumes its input when printed.)
func (r *reader) Str() string {
	n := r.Long()
	switch {
	case r.err != nil:
		return ""
	case n < 0 || n > maxStringLen:
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

// Bool reads an Avro boolean: one byte, 0 or 1. The codec takes any
// non-zero byte for true; other bytes are left to it.
func (r *reader) Bool() bool {
	if r.err != nil {
		return false
	}
	if r.i >= len(r.s) {
		r.Fail(ErrShort)
		return false
	}
	c := r.s[r.i]
	r.i++
	if c > 1 {
		r.Fail(ErrUnsupported)
	}
	return c == 1
}

// Present reads the branch index of a ["null", T] union: true for T.
func (r *reader) Present() bool {
	switch r.Long() {
	case 0:
		return false
	case 1:
		return r.err == nil
	}
	r.Fail(ErrUnsupported)
	return false
}

// OptLong reads a ["null", "long"] union into v and reports whether it
// held a long; v is left alone for null.
func (r *reader) OptLong(v *int64) bool { return r.Present() && set(v, r.Long()) }

// OptDouble reads a ["null", "double"] union as OptLong does.
func (r *reader) OptDouble(v *float64) bool { return r.Present() && set(v, r.Double()) }

// OptStr reads a ["null", "string"] union as OptLong does.
func (r *reader) OptStr(v *string) bool { return r.Present() && set(v, r.Str()) }

// OptBool reads a ["null", "boolean"] union as OptLong does.
func (r *reader) OptBool(v *bool) bool { return r.Present() && set(v, r.Bool()) }

// set stores v in p and returns true: the end of an Opt method's &&, whose
// value is read only after its union said it is there.
func set[T any](p *T, v T) bool {
	*p = v
	return true
}
