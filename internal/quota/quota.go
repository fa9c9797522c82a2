// Package quota shares a service's capacity fairly between callers: each
// key (a tenant, a token) gets a token-bucket rate and a bound on its
// requests in flight, so that one caller that floods or stalls uses up its
// own share and nobody else's. Ingest keys by tenant, the query service by
// analyst token.
//
// A refusal says when to come back (Retry-After): the time the bucket
// needs to hold the request's cost again, or a second when the caller is at
// its concurrency bound.
package quota

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits are one key's share. Zero fields do not limit.
type Limits struct {
	// Rate is the sustained cost per second a key may spend (requests, or
	// items where the caller passes a cost per request).
	Rate float64
	// Burst is the cost a key may spend at once after being idle. A
	// request that costs more is charged Burst (a full bucket), so that it
	// can pass at all. Default: Rate (one second's worth).
	Burst int
	// Concurrent bounds a key's requests in flight.
	Concurrent int
}

// maxKeys bounds the keys remembered; idle keys beyond it are forgotten
// (they then start again with a full bucket, which only errs on the side
// of the caller).
const maxKeys = 100_000

// Quota holds the state of every key.
type Quota struct {
	lim Limits
	now func() time.Time

	mu   sync.Mutex
	keys map[string]*state
}

type state struct {
	bucket   *rate.Limiter
	inflight int
}

// New returns a Quota giving each key lim.
func New(lim Limits) *Quota {
	if lim.Burst <= 0 && lim.Rate > 0 {
		lim.Burst = int(math.Ceil(lim.Rate))
	}
	return &Quota{lim: lim, now: time.Now, keys: map[string]*state{}}
}

// Refusal says why a request was not admitted and when to retry.
type Refusal struct {
	// Reason is "rate" (the key spent its rate) or "concurrency" (the key
	// has Limits.Concurrent requests in flight).
	Reason string
	// RetryAfter is how long to wait before the same request can pass.
	RetryAfter time.Duration
}

// Admit admits one request of key costing cost (at least 1). On success it
// returns a release func that the caller must call when the request ends;
// otherwise the refusal.
func (q *Quota) Admit(key string, cost int) (release func(), refused *Refusal) {
	cost = max(cost, 1)
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	st := q.state(key, now)
	if q.lim.Concurrent > 0 && st.inflight >= q.lim.Concurrent {
		return nil, &Refusal{Reason: "concurrency", RetryAfter: time.Second}
	}
	if st.bucket != nil {
		r := st.bucket.ReserveN(now, min(cost, st.bucket.Burst()))
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return nil, &Refusal{Reason: "rate", RetryAfter: d}
		}
	}
	st.inflight++
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			st.inflight--
			q.mu.Unlock()
		})
	}, nil
}

// state returns key's state, making it; q.mu is held.
func (q *Quota) state(key string, now time.Time) *state {
	if st, ok := q.keys[key]; ok {
		return st
	}
	if len(q.keys) >= maxKeys {
		q.forgetIdle(now)
	}
	st := &state{}
	if q.lim.Rate > 0 {
		st.bucket = rate.NewLimiter(rate.Limit(q.lim.Rate), q.lim.Burst)
	}
	q.keys[key] = st
	return st
}

// forgetIdle drops the keys with nothing in flight whose bucket has
// refilled, and if that is not enough, every key with nothing in flight.
func (q *Quota) forgetIdle(now time.Time) {
	for k, st := range q.keys {
		if st.inflight == 0 && (st.bucket == nil || st.bucket.TokensAt(now) >= float64(st.bucket.Burst())) {
			delete(q.keys, k)
		}
	}
	if len(q.keys) < maxKeys {
		return
	}
	for k, st := range q.keys {
		if st.inflight == 0 {
			delete(q.keys, k)
		}
	}
}

// RetryAfterSeconds renders d for a Retry-After header: whole seconds,
// rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
