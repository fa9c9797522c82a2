package warehouse

import (
	"errors"
	"fmt"
	"maps"
	"testing"
)

// fakeRows serves rows of values to Scan, as a driver's rows do, and
// records whether they were closed.
type fakeRows struct {
	rows    [][]any
	next    int
	scanErr error
	closed  bool
}

func (r *fakeRows) Next() bool { r.next++; return r.next <= len(r.rows) }
func (r *fakeRows) Err() error { return nil }

func (r *fakeRows) Scan(dest ...any) error {
	if r.scanErr != nil {
		return r.scanErr
	}
	for i, d := range dest {
		switch d := d.(type) {
		case *string:
			*d = r.rows[r.next-1][i].(string)
		case *int64:
			*d = r.rows[r.next-1][i].(int64)
		default:
			return fmt.Errorf("cannot scan into %T", d)
		}
	}
	return nil
}

// pgxStyleRows closes without an error, as pgx's rows do.
type pgxStyleRows struct{ fakeRows }

func (r *pgxStyleRows) Close() { r.closed = true }

// chStyleRows closes with an error, as clickhouse-go's rows do.
type chStyleRows struct{ fakeRows }

func (r *chStyleRows) Close() error { r.closed = true; return nil }

func TestScanMap(t *testing.T) {
	rows := &pgxStyleRows{fakeRows{rows: [][]any{{"a", int64(1)}, {"b", int64(2)}, {"a", int64(3)}}}}
	got, err := ScanMap[string, int64](rows, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"a": 3, "b": 2}; !maps.Equal(got, want) {
		t.Errorf("ScanMap = %v, want %v (a later row wins)", got, want)
	}
	if !rows.closed {
		t.Error("rows not closed")
	}
}

func TestScanSet(t *testing.T) {
	rows := &chStyleRows{fakeRows{rows: [][]any{{"x"}, {"y"}, {"x"}}}}
	got, err := ScanSet[string](rows, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"x": true, "y": true}; !maps.Equal(got, want) {
		t.Errorf("ScanSet = %v, want %v", got, want)
	}
	if !rows.closed {
		t.Error("rows not closed")
	}
}

func TestScanNested(t *testing.T) {
	rows := &chStyleRows{fakeRows{rows: [][]any{{"a", "x", int64(1)}, {"a", "y", int64(2)}, {"b", "x", int64(3)}}}}
	got, err := ScanNested[string, string, int64](rows, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]int64{"a": {"x": 1, "y": 2}, "b": {"x": 3}}
	if len(got) != len(want) || !maps.Equal(got["a"], want["a"]) || !maps.Equal(got["b"], want["b"]) {
		t.Errorf("ScanNested = %v, want %v", got, want)
	}
	if !rows.closed {
		t.Error("rows not closed")
	}
}

func TestScanErrors(t *testing.T) {
	queryErr := errors.New("query failed")
	if _, err := ScanSet[string](nil, queryErr); !errors.Is(err, queryErr) {
		t.Errorf("query error: got %v, want %v", err, queryErr)
	}
	scanErr := errors.New("scan failed")
	rows := &chStyleRows{fakeRows{rows: [][]any{{"x", int64(1)}}, scanErr: scanErr}}
	if _, err := ScanMap[string, int64](rows, nil); !errors.Is(err, scanErr) {
		t.Errorf("scan error: got %v, want %v", err, scanErr)
	}
	if !rows.closed {
		t.Error("rows not closed after a scan error")
	}
}

// TestEachRowStopsAtFnError: the first error fn returns ends the walk,
// comes back as it is, and the rows are closed all the same.
func TestEachRowStopsAtFnError(t *testing.T) {
	fnErr := errors.New("row refused")
	rows := &pgxStyleRows{fakeRows{rows: [][]any{{"a"}, {"b"}, {"c"}}}}
	var seen []string
	err := EachRow(rows, nil, func(r Rows) error {
		var s string
		if err := r.Scan(&s); err != nil {
			return err
		}
		seen = append(seen, s)
		if s == "b" {
			return fnErr
		}
		return nil
	})
	if !errors.Is(err, fnErr) || len(seen) != 2 {
		t.Errorf("EachRow = %v after %v, want %v after [a b]", err, seen, fnErr)
	}
	if !rows.closed {
		t.Error("rows not closed after fn's error")
	}
}
