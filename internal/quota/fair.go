package quota

import (
	"context"
	"sync"
)

// Fair shares a few slots of work (CPU, where there are as many slots as
// cores) between keys in turn: when slots are scarce, a freed slot goes to
// the next key in round-robin order that has a request waiting, so a key
// with many requests waiting gets no more turns than a key with one. A key
// that floods therefore slows itself down, not the others.
type Fair struct {
	mu    sync.Mutex
	free  int
	queue map[string][]chan struct{} // waiting requests per key, oldest first
	ring  []string                   // keys with waiting requests, in turn order
	next  int                        // index into ring of the next turn
}

// NewFair returns a Fair with slots slots (at least 1).
func NewFair(slots int) *Fair {
	return &Fair{free: max(slots, 1), queue: map[string][]chan struct{}{}}
}

// Acquire waits for a slot for key, in turn with the other keys, until ctx
// ends; the caller must call release when its work is done.
func (f *Fair) Acquire(ctx context.Context, key string) (release func(), err error) {
	f.mu.Lock()
	if f.free > 0 && len(f.ring) == 0 {
		f.free--
		f.mu.Unlock()
		return f.releaser(), nil
	}
	granted := make(chan struct{})
	if len(f.queue[key]) == 0 {
		f.ring = append(f.ring, key)
	}
	f.queue[key] = append(f.queue[key], granted)
	f.mu.Unlock()

	select {
	case <-granted:
		return f.releaser(), nil
	case <-ctx.Done():
		f.mu.Lock()
		defer f.mu.Unlock()
		select {
		case <-granted: // granted meanwhile: hand the slot on
			f.handOn()
		default:
			f.withdraw(key, granted)
		}
		return nil, ctx.Err()
	}
}

func (f *Fair) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.handOn()
			f.mu.Unlock()
		})
	}
}

// handOn gives a freed slot to the next key's oldest waiter, or frees it;
// f.mu is held.
func (f *Fair) handOn() {
	if len(f.ring) == 0 {
		f.free++
		return
	}
	f.next %= len(f.ring)
	key := f.ring[f.next]
	q := f.queue[key]
	close(q[0])
	if len(q) == 1 {
		delete(f.queue, key)
		f.ring = append(f.ring[:f.next], f.ring[f.next+1:]...)
		// f.next now points at the key after the one served.
	} else {
		f.queue[key] = q[1:]
		f.next++
	}
}

// withdraw removes a waiter that gave up; f.mu is held.
func (f *Fair) withdraw(key string, w chan struct{}) {
	q := f.queue[key]
	for i, c := range q {
		if c == w {
			q = append(q[:i], q[i+1:]...)
			break
		}
	}
	if len(q) > 0 {
		f.queue[key] = q
		return
	}
	delete(f.queue, key)
	for i, k := range f.ring {
		if k == key {
			f.ring = append(f.ring[:i], f.ring[i+1:]...)
			if i < f.next {
				f.next--
			}
			break
		}
	}
}
