package loadgen

import (
	"sync"
	"time"
)

// Periodically calls f every d (for progress lines of long runs) until
// the returned function is called; that function waits for a call in
// progress and may be called more than once.
func Periodically(d time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}
