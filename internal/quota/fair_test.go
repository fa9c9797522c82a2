package quota

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestFairTakesTurns: with one slot, a key with many requests waiting
// and a key with one are served in turn, not in arrival order.
func TestFairTakesTurns(t *testing.T) {
	f := NewFair(1)
	ctx := context.Background()
	hold, err := f.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	wait := func(key string) {
		before := queuedFor(f, key)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := f.Acquire(ctx, key)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, key)
			mu.Unlock()
			rel()
		}()
		// Queue in this order: wait until this one is in the queue.
		for queuedFor(f, key) == before {
			time.Sleep(time.Millisecond)
		}
	}
	for range 4 {
		wait("a")
	}
	wait("b")
	hold()
	wg.Wait()
	// a's first waiter was next in turn; then b, though it came last.
	if got := order; len(got) != 5 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("served %v; want a, then b, then the rest of a", got)
	}
	if f.free != 1 || len(f.ring) != 0 || len(f.queue) != 0 {
		t.Fatalf("after all: free %d ring %v queue %v", f.free, f.ring, f.queue)
	}
}

// queuedFor counts key's waiting requests.
func queuedFor(f *Fair, key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue[key])
}

// TestFairGiveUp: a waiter whose context ends leaves the queue, and the
// slot goes to the next.
func TestFairGiveUp(t *testing.T) {
	f := NewFair(1)
	hold, _ := f.Acquire(context.Background(), "a")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Acquire(ctx, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting past the deadline: %v", err)
	}
	if len(f.ring) != 0 || len(f.queue) != 0 {
		t.Fatalf("a waiter that gave up is still queued: ring %v", f.ring)
	}
	hold()
	rel, err := f.Acquire(context.Background(), "c")
	if err != nil {
		t.Fatal(err)
	}
	rel()
	rel() // a second release gives nothing back twice
	if f.free != 1 {
		t.Fatalf("free slots %d after everything was released; want 1", f.free)
	}
}

// TestFairUnderLoad: many keys and goroutines, under -race; every slot
// comes back.
func TestFairUnderLoad(t *testing.T) {
	f := NewFair(2)
	var wg sync.WaitGroup
	var inside, most int
	var mu sync.Mutex
	for g := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(g%3)*time.Millisecond+time.Millisecond)
				rel, err := f.Acquire(ctx, string(rune('a'+g%5)))
				cancel()
				if err != nil {
					continue
				}
				mu.Lock()
				inside++
				most = max(most, inside)
				mu.Unlock()
				time.Sleep(10 * time.Microsecond)
				mu.Lock()
				inside--
				mu.Unlock()
				rel()
			}
		}()
	}
	wg.Wait()
	if most > 2 {
		t.Fatalf("%d holders at once with 2 slots", most)
	}
	if f.free != 2 || len(f.ring) != 0 || len(f.queue) != 0 {
		t.Fatalf("after all: free %d ring %v queue %d keys", f.free, f.ring, len(f.queue))
	}
}
