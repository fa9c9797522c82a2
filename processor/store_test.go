package processor

import (
	"reflect"
	"testing"
)

func TestStatementEnd(t *testing.T) {
	sized := func(sizes ...int) [][]byte {
		out := make([][]byte, len(sizes))
		for i, n := range sizes {
			out[i] = make([]byte, n)
		}
		return out
	}
	tests := []struct {
		name   string
		states [][]byte
		limit  int
		want   []int // the ends of the statements, from the first row on
	}{
		{"one row", sized(3), 10, []int{1}},
		{"all fit", sized(3, 3, 3), 10, []int{3}},
		{"exactly the limit", sized(5, 5, 5, 5), 10, []int{2, 4}},
		{"one over", sized(5, 6, 4), 10, []int{1, 3}},
		{"a row larger than the limit goes alone", sized(2, 20, 2, 2), 10, []int{1, 2, 4}},
		{"empty states", sized(0, 0, 0), 1, []int{3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ends []int
			for from := 0; from < len(tc.states); {
				to := statementEnd(tc.states, from, tc.limit)
				if to <= from {
					t.Fatalf("no progress from %d", from)
				}
				ends = append(ends, to)
				from = to
			}
			if !reflect.DeepEqual(ends, tc.want) {
				t.Fatalf("statements end at %v, want %v", ends, tc.want)
			}
		})
	}
}
