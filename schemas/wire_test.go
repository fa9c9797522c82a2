package schemas

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestReaderReadsWhatAppendWrites(t *testing.T) {
	seq := int64(-7)
	var b []byte
	longs := []int64{0, 1, -1, 63, -64, math.MaxInt64, math.MinInt64}
	for _, v := range longs {
		b = appendLong(b, v)
	}
	b = appendString(b, "héllo")
	b = appendDouble(b, -2.5)
	b = appendOptLong(b, nil)
	b = appendOptLong(b, &seq)
	b = appendLong(b, math.MinInt32) // read back as an int

	r := newReader(string(b))
	for _, want := range longs {
		if got := r.Long(); got != want {
			t.Errorf("Long = %d, want %d", got, want)
		}
	}
	if got := r.Str(); got != "héllo" {
		t.Errorf("String = %q", got)
	}
	if got := r.Double(); got != -2.5 {
		t.Errorf("Double = %v", got)
	}
	if r.Present() {
		t.Error("a null union read as present")
	}
	if !r.Present() || r.Long() != seq {
		t.Error("the long union did not read back")
	}
	if got := r.Int(); got != math.MinInt32 {
		t.Errorf("Int = %d", got)
	}
	if r.Err() != nil || r.Remaining() != 0 {
		t.Fatalf("err %v, %d bytes left", r.Err(), r.Remaining())
	}
}

func TestReaderFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		read func(*reader)
		want error
	}{
		{"long cut short", []byte{0x80}, func(r *reader) { r.Long() }, ErrShort},
		{"long over 10 bytes", append(bytes.Repeat([]byte{0x80}, 10), 0), func(r *reader) { r.Long() }, ErrUnsupported},
		{"int over 5 bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0}, func(r *reader) { r.Int() }, ErrUnsupported},
		{"double cut short", []byte{1, 2, 3}, func(r *reader) { r.Double() }, ErrShort},
		{"string longer than the input", appendLong(nil, 5), func(r *reader) { r.Str() }, ErrShort},
		{"negative string length", appendLong(nil, -1), func(r *reader) { r.Str() }, ErrUnsupported},
		{"string over maxStringLen", appendLong(nil, maxStringLen+1), func(r *reader) { r.Str() }, ErrUnsupported},
		{"union branch 2", appendLong(nil, 2), func(r *reader) { r.Present() }, ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReader(string(tc.in))
			tc.read(r)
			if !errors.Is(r.Err(), tc.want) {
				t.Fatalf("Err = %v, want %v", r.Err(), tc.want)
			}
			// The first failure sticks; later reads give zero values.
			if r.Long() != 0 || r.Str() != "" || !errors.Is(r.Err(), tc.want) {
				t.Fatalf("a read after the failure gave a value or changed the error to %v", r.Err())
			}
		})
	}
}

func f64(v float64) *float64 { return &v }
func i64(v int64) *int64     { return &v }
func str(v string) *string   { return &v }
