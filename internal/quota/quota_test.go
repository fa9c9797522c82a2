package quota

import (
	"testing"
	"time"
)

func TestRatePerKey(t *testing.T) {
	q := New(Limits{Rate: 10, Burst: 20})
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	q.now = func() time.Time { return now }
	// A flood of key a spends a's bucket, and only a's.
	for i := range 20 {
		rel, ref := q.Admit("a", 1)
		if ref != nil {
			t.Fatalf("request %d of a's burst refused: %+v", i, ref)
		}
		rel()
	}
	_, ref := q.Admit("a", 1)
	if ref == nil || ref.Reason != "rate" || ref.RetryAfter != 100*time.Millisecond {
		t.Fatalf("a past its burst: %+v; want refused for rate, retry after 100ms", ref)
	}
	if rel, ref := q.Admit("b", 20); ref != nil {
		t.Fatalf("b refused while a floods: %+v", ref)
	} else {
		rel()
	}
	// After the advised wait, a passes again.
	now = now.Add(ref.RetryAfter)
	if rel, ref := q.Admit("a", 1); ref != nil {
		t.Fatalf("a refused after its retry-after: %+v", ref)
	} else {
		rel()
	}
	// A cost above the burst is charged a full bucket: it passes when the
	// bucket is full (never refused for ever) and waits for a refill
	// otherwise.
	_, ref = q.Admit("a", 50)
	if ref == nil || ref.RetryAfter != 2*time.Second {
		t.Fatalf("a's 50 right after spending: %+v; want retry after 2s (a full bucket of 20 at 10/s)", ref)
	}
	if rel, ref := q.Admit("c", 50); ref != nil {
		t.Fatalf("a fresh key's cost of 50 over burst 20: %+v", ref)
	} else {
		rel()
	}
	if _, ref := q.Admit("c", 1); ref == nil {
		t.Fatal("c spent a full bucket, yet the next request passed at once")
	}
}

func TestConcurrencyPerKey(t *testing.T) {
	q := New(Limits{Concurrent: 2})
	r1, _ := q.Admit("a", 1)
	r2, _ := q.Admit("a", 1)
	if _, ref := q.Admit("a", 1); ref == nil || ref.Reason != "concurrency" || RetryAfterSeconds(ref.RetryAfter) != 1 {
		t.Fatalf("third of a in flight: %+v; want refused for concurrency", ref)
	}
	if rel, ref := q.Admit("b", 1); ref != nil {
		t.Fatalf("b refused while a holds its two: %+v", ref)
	} else {
		rel()
	}
	r1()
	r1() // releasing twice frees one slot only
	r3, ref := q.Admit("a", 1)
	if ref != nil {
		t.Fatalf("a refused after a release: %+v", ref)
	}
	if _, ref := q.Admit("a", 1); ref == nil {
		t.Fatal("a has two in flight again, yet a third passed: a double release freed two slots")
	}
	r2()
	r3()
}

func TestKeysBounded(t *testing.T) {
	q := New(Limits{Rate: 1, Concurrent: 1})
	now := time.Now()
	q.now = func() time.Time { return now }
	held, _ := q.Admit("held", 1)
	for i := range maxKeys + 10 {
		rel, _ := q.Admit(string(rune(i))+"k", 1)
		if rel != nil {
			rel()
		}
	}
	if len(q.keys) > maxKeys {
		t.Fatalf("%d keys remembered; bound %d", len(q.keys), maxKeys)
	}
	if _, ok := q.keys["held"]; !ok {
		t.Fatal("a key with a request in flight was forgotten")
	}
	held()
}
