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
		b = AppendLong(b, v)
	}
	b = AppendString(b, "héllo")
	b = AppendDouble(b, -2.5)
	b = AppendOptLong(b, nil)
	b = AppendOptLong(b, &seq)
	b = AppendLong(b, math.MinInt32) // read back as an int

	r := NewReader(string(b))
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
		read func(*Reader)
		want error
	}{
		{"long cut short", []byte{0x80}, func(r *Reader) { r.Long() }, ErrShort},
		{"long over 10 bytes", append(bytes.Repeat([]byte{0x80}, 10), 0), func(r *Reader) { r.Long() }, ErrUnsupported},
		{"int over 5 bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0}, func(r *Reader) { r.Int() }, ErrUnsupported},
		{"double cut short", []byte{1, 2, 3}, func(r *Reader) { r.Double() }, ErrShort},
		{"string longer than the input", AppendLong(nil, 5), func(r *Reader) { r.Str() }, ErrShort},
		{"negative string length", AppendLong(nil, -1), func(r *Reader) { r.Str() }, ErrUnsupported},
		{"string over MaxStringLen", AppendLong(nil, MaxStringLen+1), func(r *Reader) { r.Str() }, ErrUnsupported},
		{"union branch 2", AppendLong(nil, 2), func(r *Reader) { r.Present() }, ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(string(tc.in))
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
