package schemas

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/hamba/avro/v2"
)

// crc64Avro is the fingerprint algorithm as the Avro specification writes
// it, implemented here independently of the library under test.
func crc64Avro(b []byte) uint64 {
	const empty = 0xc15d213aa4d7a795
	var table [256]uint64
	for i := range table {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (empty & -(fp & 1))
		}
		table[i] = fp
	}
	fp := uint64(empty)
	for _, c := range b {
		fp = (fp >> 8) ^ table[byte(fp)^c]
	}
	return fp
}

func TestSingleObjectEncoding(t *testing.T) {
	c := MustCodec(NameReading)
	end, dia, stage, seq := int64(1462172790000), 80.5, "deep", int64(42)
	in := Reading{TenantID: "t", EventID: "e", UserID: "u", DeviceID: "d", GatewayID: "g", Metric: "heart_rate", Value: 61.5, Unit: "/min", MeasuredAt: 1462172760000, ReceivedAt: 1462172761000, IngestedAt: 1462172762000,
		PeriodEnd: &end, SecondValue: &dia, Stage: &stage, Sequence: &seq, SourceFormat: "avro"}
	msg, err := c.Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	if msg[0] != 0xC3 || msg[1] != 0x01 {
		t.Fatalf("marker % x", msg[:2])
	}
	want := crc64Avro([]byte(c.Current().Schema.String()))
	if got := binary.LittleEndian.Uint64(msg[2:10]); got != want {
		t.Fatalf("fingerprint %016x, want CRC-64-AVRO %016x", got, want)
	}
	var out Reading
	if err := c.Decode(msg, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %+v != %+v", out, in)
	}
}

func TestDecodeErrors(t *testing.T) {
	c := MustCodec(NameReading)
	msg, err := c.Encode(&Reading{})
	if err != nil {
		t.Fatal(err)
	}
	unknown := append([]byte(nil), msg...)
	unknown[5] ^= 0xff
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrNotSingleObject},
		{"plain avro", msg[10:], ErrNotSingleObject},
		{"unknown fingerprint", unknown, ErrUnknownSchema},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Decode(tc.msg, &Reading{}); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Another schema's message is refused, not misread.
	other := MustCodec(NameAcceptedReading)
	if err := other.Decode(msg, &AcceptedReading{}); !errors.Is(err, ErrUnknownSchema) {
		t.Fatalf("accepted codec read a reading: %v", err)
	}
}

// TestBackwardCompatible fails if the current reader of any schema cannot
// read data written with any released version, as a schema registry's
// BACKWARD check would.
func TestBackwardCompatible(t *testing.T) {
	for _, name := range Names {
		vs, err := Versions(name)
		if err != nil {
			t.Fatal(err)
		}
		current := vs[len(vs)-1]
		for _, v := range vs {
			if err := avro.NewSchemaCompatibility().Compatible(current.Schema, v.Schema); err != nil {
				t.Errorf("%s v%d cannot be read by v%d: %v", name, v.Number, current.Number, err)
			}
		}
	}
}

// TestReadingV1BytesReadAsV2 decodes a message written with reading v1 (kept
// byte for byte in testdata, as the log holds it) with today's codec: the v2
// fields take their defaults.
func TestReadingV1BytesReadAsV2(t *testing.T) {
	golden, err := os.ReadFile("testdata/reading.v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	// The golden bytes are what reading.v1.avsc produces; if someone edits a
	// released schema, this fails.
	vs, err := Versions(NameReading)
	if err != nil {
		t.Fatal(err)
	}
	// Fields v1 lacks are not written: the schema says what goes out.
	msg := messageIn(t, vs[0], &Reading{TenantID: "t", EventID: "e-1", UserID: "u-1", DeviceID: "d-1", GatewayID: "g-1",
		Metric: "heart_rate", Value: 72, Unit: "/min", MeasuredAt: 1462172760000, ReceivedAt: 1462172761000, IngestedAt: 1462172762000})
	if !bytes.Equal(msg, golden) {
		t.Fatal("reading.v1.avsc no longer produces the released v1 bytes: released schemas must not change")
	}
	c := MustCodec(NameReading)
	if c.Current().Number < 2 {
		t.Fatalf("current reading schema is v%d", c.Current().Number)
	}
	var r Reading
	if err := c.Decode(golden, &r); err != nil {
		t.Fatal(err)
	}
	if r.EventID != "e-1" || r.Value != 72 || r.MeasuredAt != 1462172760000 || r.IngestedAt != 1462172762000 {
		t.Fatalf("v1 fields: %+v", r)
	}
	if r.PeriodEnd != nil || r.SecondValue != nil || r.Stage != nil || r.Sequence != nil || r.SourceFormat != "json" {
		t.Fatalf("v2 defaults not applied: %+v", r)
	}
}
