package query

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/consistency"
)

// fakePositions is a pipeline that advances by one offset per poll: the
// processor's next offset of raw partition 0, the accepted topic's end and,
// two polls behind, the projector's commit.
type fakePositions struct {
	mu    sync.Mutex
	step  int64
	reads atomic.Int64 // reads of the processor's offsets (PostgreSQL)
	fail  bool
}

func (f *fakePositions) processorNext(context.Context) (map[string]map[int32]int64, error) {
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, errors.New("processor offsets: connection refused")
	}
	f.step++
	return map[string]map[int32]int64{"raw": {0: f.step}}, nil
}

func (f *fakePositions) acceptedEnds(context.Context) (map[int32]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[int32]int64{0: f.step * 10}, nil
}

func (f *fakePositions) projectorCommitted(context.Context) (map[int32]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[int32]int64{0: max(0, (f.step-2)*10)}, nil
}

// TestWaitsShareOneWatcher: a hundred requests waiting at once cost one
// read of the positions per poll interval, not one each; every wait ends
// when the pipeline has stored its write (the processor past the token,
// then the projector at the accepted topic's end of that moment), and not
// before.
func TestWaitsShareOneWatcher(t *testing.T) {
	src := &fakePositions{}
	s := newService(DefaultConfig(), zerolog.Nop())
	s.positions = newWatcher(src, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.positions.run(ctx)

	const waiters = 100
	var wg sync.WaitGroup
	stale := atomic.Int64{}
	started := time.Now()
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Tokens name offsets 0..9 of raw partition 0: each is stored
			// once the processor's next offset passes it and the projector
			// then catches up two polls later.
			tok := consistency.Token{"raw": {0: int64(i % 10)}}
			if s.caughtUp(ctx, tok, 5*time.Second) {
				stale.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(started)
	if stale.Load() != 0 {
		t.Fatalf("%d of %d waits ended stale", stale.Load(), waiters)
	}
	polls := src.reads.Load()
	// The longest wait needs about 13 polls; allow for a slow machine, but
	// not one read per waiter.
	if maxPolls := int64(took/(10*time.Millisecond)) + 3; polls > maxPolls || polls >= waiters {
		t.Fatalf("%d reads of the processor's offsets for %d waits over %s; want one per poll interval (at most %d)", polls, waiters, took, maxPolls)
	}
	t.Logf("%d waits answered with %d polls in %s", waiters, polls, took.Round(time.Millisecond))

	// Nobody waiting: no polls.
	before := src.reads.Load()
	time.Sleep(50 * time.Millisecond)
	if n := src.reads.Load() - before; n > 1 {
		t.Fatalf("%d polls while nobody waited", n)
	}

	// A token the pipeline never reaches ends stale at its bound.
	if !s.caughtUp(ctx, consistency.Token{"raw": {0: 1 << 40}}, 100*time.Millisecond) {
		t.Fatal("a write the processor never passed was reported stored")
	}
	// A store that fails makes the answer stale, not hung.
	src.mu.Lock()
	src.fail = true
	src.mu.Unlock()
	if !s.caughtUp(ctx, consistency.Token{"raw": {0: 0}}, 100*time.Millisecond) {
		t.Fatal("positions unreadable, yet the write was reported stored")
	}
}

// TestProjectorMustReachTheEndsOfThatMoment: the processor past the token
// is not enough; the projector must have committed the accepted topic's
// end offsets as they were when the processor was first seen past it.
func TestProjectorMustReachTheEndsOfThatMoment(t *testing.T) {
	tok := consistency.Token{"raw": {0: 4}}
	var ends map[int32]int64
	done := func(p *positions) bool {
		if ends == nil {
			if !processorPast(p.processorNext, tok) {
				return false
			}
			ends = p.acceptedEnds
		}
		return projectorAt(p.projectorAt, ends)
	}
	steps := []struct {
		next, end, committed int64
		want                 bool
	}{
		{4, 40, 40, false}, // processor not past offset 4
		{5, 50, 40, false}, // past: ends are now 50, projector at 40
		{6, 60, 50, true},  // projector at the ends of that moment (50), though the topic grew
		{7, 70, 100, true},
	}
	for i, st := range steps {
		p := &positions{processorNext: map[string]map[int32]int64{"raw": {0: st.next}},
			acceptedEnds: map[int32]int64{0: st.end, 1: 0}, projectorAt: map[int32]int64{0: st.committed}}
		if got := done(p); got != st.want {
			t.Fatalf("step %d: stored %v, want %v", i, got, st.want)
		}
	}
}
