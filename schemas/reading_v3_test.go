package schemas

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// AppendReading writes reading v3 byte for byte as the codec does.
func TestAppendReadingMatchesCodec(t *testing.T) {
	codec := MustCodec(NameReading)
	full := Reading{TenantID: "t", EventID: "e-1", UserID: "u:1@x", DeviceID: "d.1", GatewayID: "g_1", Metric: "sleep_stage",
		Value: 12.5, Unit: "min", MeasuredAt: 1_700_000_000_000, ReceivedAt: -1, IngestedAt: math.MaxInt64,
		PeriodEnd: i64(math.MinInt64), SecondValue: f64(-0.0), Stage: str("rem"), Sequence: i64(0), SourceFormat: "avro",
		Revision: 7, Withdrawn: true}
	tests := []struct {
		name string
		rd   Reading
	}{
		{"empty", Reading{}},
		{"every field", full},
		{"long strings", Reading{TenantID: strings.Repeat("t", 200), EventID: strings.Repeat("é", 100), Value: math.Inf(-1), SourceFormat: "json"}},
		{"NaN", Reading{Value: math.NaN(), SecondValue: f64(math.NaN())}},
	}
	for _, stage := range readingV3Stages {
		rd := full
		rd.Stage = str(stage)
		tests = append(tests, struct {
			name string
			rd   Reading
		}{"stage " + stage, rd})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := codec.Encode(&tt.rd)
			if err != nil {
				t.Fatal(err)
			}
			got, err := AppendReading(codec, []byte("prefix"), &tt.rd)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
				t.Fatalf("AppendReading:\n got %x\nwant %x", got[6:], want)
			}
		})
	}
	bad := full
	bad.Stage = str("dozing")
	if _, err := codec.Encode(&bad); err == nil {
		t.Fatal("the codec encodes an unknown stage; AppendReading refuses it")
	}
	if _, err := AppendReading(codec, nil, &bad); err == nil {
		t.Fatal("AppendReading encoded an unknown stage")
	}
}

// FuzzAppendReading checks the hand-written encoder against the codec.
func FuzzAppendReading(f *testing.F) {
	f.Add("t", "e", "u", "d", "g", "heart_rate", 72.0, "/min", int64(1), int64(2), int64(3), true, int64(4), true, 5.0, uint8(2), true, int64(-7), "json")
	codec := MustCodec(NameReading)
	f.Fuzz(func(t *testing.T, tenant, event, user, device, gateway, metricName string, value float64, unit string, measured, received, ingested int64,
		hasEnd bool, end int64, hasSecond bool, second float64, stage uint8, hasSeq bool, seq int64, format string) {
		rd := Reading{TenantID: tenant, EventID: event, UserID: user, DeviceID: device, GatewayID: gateway, Metric: metricName, Value: value,
			Unit: unit, MeasuredAt: measured, ReceivedAt: received, IngestedAt: ingested, SourceFormat: format}
		if hasEnd {
			rd.PeriodEnd = &end
		}
		if hasSecond {
			rd.SecondValue = &second
		}
		if int(stage) < len(readingV3Stages) {
			rd.Stage = str(readingV3Stages[stage])
		}
		if hasSeq {
			rd.Sequence = &seq
		}
		want, err := codec.Encode(&rd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendReading(codec, nil, &rd)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("AppendReading: %v\n got %x\nwant %x", err, got, want)
		}
	})
}
