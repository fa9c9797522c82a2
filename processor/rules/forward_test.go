package rules

import (
	"testing"

	"github.com/vitalshq/vitals/schemas"
)

func TestSourceRoundTrip(t *testing.T) {
	for _, c := range []struct {
		p int32
		o int64
	}{{0, 0}, {5, 123456789012}, {2147483647, 9223372036854775807}} {
		v := AppendSource([]byte("x"), c.p, c.o)[1:]
		p, o, err := ParseSource(v)
		if err != nil || p != c.p || o != c.o {
			t.Fatalf("%d/%d: %q parsed as %d/%d, %v", c.p, c.o, v, p, o, err)
		}
	}
	for _, bad := range []string{"", "3", "3/", "/4", "-1/4", "3/-4", "3/4/5", "a/4", "2147483648/1", "1/ 2"} {
		if _, _, err := ParseSource([]byte(bad)); err == nil {
			t.Errorf("ParseSource(%q) = nil error", bad)
		}
	}
}

// TestDecodeAcceptedForwarded checks that a forwarded reading reads as the
// accepted reading the processor would have encoded for it (canonical
// units, LOINC, source position), and that an accepted_reading message
// reads as itself.
func TestDecodeAcceptedForwarded(t *testing.T) {
	accepted, reading := schemas.MustCodec(schemas.NameAcceptedReading), schemas.MustCodec(schemas.NameReading)
	second := 80.0
	seq := int64(9)
	for _, rd := range []schemas.Reading{
		{TenantID: "t", EventID: "e1", UserID: "u", DeviceID: "d", GatewayID: "g", Metric: "heart_rate", Value: 61, Unit: "/min",
			MeasuredAt: 1700000000000, ReceivedAt: 1700000000001, IngestedAt: 1700000000002, Sequence: &seq, SourceFormat: "json"},
		{TenantID: "t", EventID: "e2", UserID: "u", Metric: "body_weight", Value: 150, Unit: "[lb_av]", MeasuredAt: 1, Revision: 2, Withdrawn: true},
		{TenantID: "t", EventID: "e3", UserID: "u", Metric: "blood_pressure", Value: 120, SecondValue: &second, Unit: "mm[Hg]", MeasuredAt: 2},
	} {
		msg, err := schemas.AppendReading(reading, nil, &rd)
		if err != nil {
			t.Fatal(err)
		}
		var got, want schemas.FlatAcceptedReading
		if err := DecodeAccepted(accepted, reading, msg, AppendSource(nil, 3, 77), &got); err != nil {
			t.Fatal(err)
		}
		var wantMsg schemas.AcceptedReading
		Accepted(&wantMsg, &rd, 3, 77)
		schemas.FlattenAccepted(&wantMsg, &want)
		if got != want {
			t.Fatalf("forwarded %s read as\n%+v\nwant\n%+v", rd.EventID, got, want)
		}
		if rd.Metric == "body_weight" && (got.Unit != "kg" || got.Value < 68 || got.Value > 68.1) {
			t.Fatalf("forwarded weight not in canonical units: %v %s", got.Value, got.Unit)
		}
		enc, err := accepted.Encode(&wantMsg)
		if err != nil {
			t.Fatal(err)
		}
		var again schemas.FlatAcceptedReading
		if err := DecodeAccepted(accepted, reading, enc, nil, &again); err != nil || again != want {
			t.Fatalf("accepted message read as %+v, %v", again, err)
		}
		if err := DecodeAccepted(accepted, reading, msg, []byte("3"), &got); err == nil {
			t.Fatal("a bad source header was accepted")
		}
		if err := DecodeAccepted(accepted, reading, enc, AppendSource(nil, 3, 77), &got); err == nil {
			t.Fatal("an accepted_reading message read as a forwarded reading")
		}
	}
	unknown := schemas.Reading{TenantID: "t", EventID: "e4", UserID: "u", Metric: "mood", Unit: "1"}
	msg, err := schemas.AppendReading(reading, nil, &unknown)
	if err != nil {
		t.Fatal(err)
	}
	var got schemas.FlatAcceptedReading
	if err := DecodeAccepted(accepted, reading, msg, AppendSource(nil, 0, 0), &got); err == nil {
		t.Fatal("a forwarded reading of a metric outside the catalogue was read")
	}
}
