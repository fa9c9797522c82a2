package rules

import (
	"math"
	"reflect"
	"testing"

	"github.com/vitalshq/vitals/schemas"
)

func TestAccepted(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	i := func(v int64) *int64 { return &v }
	s := func(v string) *string { return &v }
	tests := []struct {
		name          string
		r             *schemas.Reading
		value         float64
		second        *float64
		unit, loinc   string
		withOptionals bool
	}{
		{"canonical unit kept", at("a", "d", 0, 0), 60, nil, "/min", "8867-4", false},
		{"glucose mmol/L to mg/dL", with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "blood_glucose", "mmol/L", 5.5 }),
			5.5 * 18.016, nil, "mg/dL", "2339-0", false},
		{"temperature degF to Cel", with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "body_temperature", "[degF]", 212 }),
			100, nil, "Cel", "8310-5", false},
		{"spo2 fraction to percent", with(at("a", "d", 0, 0), func(r *schemas.Reading) { r.Metric, r.Unit, r.Value = "spo2", "1", 0.97 }),
			97, nil, "%", "59408-5", false},
		{"blood pressure in kPa, both values converted", with(at("a", "d", 0, 0), func(r *schemas.Reading) {
			r.Metric, r.Unit, r.Value, r.SecondValue = "blood_pressure", "kPa", 16, f(10.5)
		}), 16 * 7.50062, f(10.5 * 7.50062), "mm[Hg]", "85354-9", false},
		{"period, stage and sequence carried over", with(at("a", "d", 0, 0), func(r *schemas.Reading) {
			r.Metric, r.Unit, r.Value, r.PeriodEnd, r.Stage, r.Sequence = "sleep_stage", "min", 30, i(r.MeasuredAt+30*60000), s("deep"), i(42)
		}), 30, nil, "min", "93832-4", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			r.GatewayID, r.ReceivedAt = "gw", r.MeasuredAt+500
			var got schemas.AcceptedReading
			Accepted(&got, r, 3, 1234)
			if math.Abs(got.Value-tc.value) > 1e-3 || got.Unit != tc.unit || got.LOINC != tc.loinc {
				t.Fatalf("value %g %s (LOINC %s), want %g %s (%s)", got.Value, got.Unit, got.LOINC, tc.value, tc.unit, tc.loinc)
			}
			if (got.SecondValue == nil) != (tc.second == nil) || got.SecondValue != nil && math.Abs(*got.SecondValue-*tc.second) > 1e-3 {
				t.Fatalf("second value %v, want %v", got.SecondValue, tc.second)
			}
			want := schemas.AcceptedReading{TenantID: r.TenantID, EventID: r.EventID, UserID: r.UserID, DeviceID: r.DeviceID,
				GatewayID: "gw", Metric: r.Metric, LOINC: tc.loinc, Value: got.Value, Unit: tc.unit,
				MeasuredAt: r.MeasuredAt, ReceivedAt: r.ReceivedAt, IngestedAt: r.IngestedAt, SourcePartition: 3, SourceOffset: 1234,
				PeriodEnd: r.PeriodEnd, SecondValue: got.SecondValue, Stage: r.Stage, Sequence: r.Sequence}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("accepted reading\n got %+v\nwant %+v", got, want)
			}
			if tc.withOptionals && (got.PeriodEnd == nil || got.Stage == nil || got.Sequence == nil) {
				t.Fatalf("optional fields lost: %+v", got)
			}
		})
	}
}

func TestRejectedOutputs(t *testing.T) {
	r := at("a", "d1", 3, 0)
	original := []byte("raw bytes")
	erase := &schemas.ProfileEvent{TenantID: "t", EventID: "e1", UserID: "u", GatewayID: "gw", Kind: "erasure_requested", OccurredAt: 5, ReceivedAt: 6}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"a rejected reading says why and where it came from",
			Rejected(&Outcome{Decision: Reject, Reading: r, Reason: ReasonTooLate, Message: "too late"}, 2, 99, original),
			&schemas.RejectedReading{TenantID: "t", EventID: "a", UserID: "u", DeviceID: "d1", Metric: "heart_rate", MeasuredAt: r.MeasuredAt,
				Reason: ReasonTooLate, Message: "too late", SourcePartition: 2, SourceOffset: 99, Original: original}},
		{"an unreadable record is known only by its key",
			Malformed("device", []byte("u7"), 1, 5, original),
			&schemas.RejectedReading{UserID: "u7", Reason: ReasonMalformedEvent, Message: "the log record is not a readable device message",
				SourcePartition: 1, SourceOffset: 5, Original: original}},
		{"an erasure request becomes an erasure",
			Erasure(erase),
			&schemas.Erasure{TenantID: "t", EventID: "e1", UserID: "u", GatewayID: "gw", RequestedAt: 5, ReceivedAt: 6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Fatalf("\n got %+v\nwant %+v", tc.got, tc.want)
			}
		})
	}
}
