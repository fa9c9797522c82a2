package ingest

import (
	"bytes"
	"encoding/json"
	"testing"
)

// encodingJSON is what writeJSON wrote for a 200 answer before.
func encodingJSON(t testing.TB, r *BatchResponse) []byte {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestAppendBatchResponseMatchesEncodingJSON(t *testing.T) {
	tests := []struct {
		name string
		r    BatchResponse
	}{
		{"nil items", BatchResponse{}},
		{"empty items", BatchResponse{Items: []ItemVerdict{}}},
		{"accepted", BatchResponse{Accepted: 2, Items: []ItemVerdict{{Index: 0, Status: StatusAccepted, EventID: "e-1"}, {Index: 1, Status: StatusAccepted, EventID: "e:2@x"}}, ConsistencyToken: "t0:1:5,1:7"}},
		{"rejected", BatchResponse{Rejected: 1, Items: []ItemVerdict{{Index: 0, Status: StatusRejected, Reason: ReasonUnknownUnit, Field: "unit",
			Message: `unit "bpm" is not accepted for heart_rate; use one of ["/min"]`}}}},
		{"escapes", BatchResponse{Items: []ItemVerdict{{Index: 3, Status: StatusRejected, Reason: "r", Message: "<a & b>\n\t\x00\x7f é \u2028\u2029 \xff\\"}}}},
		{"not stored", BatchResponse{Items: []ItemVerdict{{Index: 0, Status: StatusNotSaved, EventID: "x"}, {Index: 1, Status: StatusUnconfirmed}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendBatchResponse(nil, &tt.r)
			if want := encodingJSON(t, &tt.r); !bytes.Equal(got, want) {
				t.Fatalf("\n got %s\nwant %s", got, want)
			}
		})
	}
}

func FuzzAppendBatchResponse(f *testing.F) {
	f.Add(3, 1, 7, "accepted", "ev-1", "", "", "", "tok")
	f.Add(0, 0, 0, "rejected", "", "unknown_unit", "unit", "<é>\"\\\n\xff\u2028", "")
	f.Fuzz(func(t *testing.T, acc, rej, idx int, status, event, reason, field, msg, token string) {
		r := BatchResponse{Accepted: acc, Rejected: rej, ConsistencyToken: token,
			Items: []ItemVerdict{{Index: idx, Status: status, EventID: event, Reason: reason, Field: field, Message: msg}, {Index: idx + 1, Status: msg}}}
		if got, want := appendBatchResponse(nil, &r), encodingJSON(t, &r); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}
