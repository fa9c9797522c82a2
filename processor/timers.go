package processor

import (
	"context"
	"sort"
)

// Held readings are settled by their partition's clock, not only by their
// user's next event: a user who sends a reading from an unpaired device and
// then nothing more would otherwise leave it undecided for ever.
//
// A partition number's clock is the newest record timestamp (ingest's
// receive time) applied in it, so it comes from the log and advances at the
// same records on every replay; it is stored with the partition's offsets.
// Each user holding readings has a deadline (rules.HeldDeadline); before a
// record moves the clock past deadlines, the readings due are settled, in
// deadline order, at that point of the merge. The deadlines are stored with
// the users' snapshots, so a new owner of the partition finds them again.

// timers are the owned partition numbers' clocks and deadlines. Only the
// Run goroutine and the rebalance callbacks touch them.
type timers struct {
	clock map[int32]int64             // epoch ms
	due   map[int32]map[UserKey]int64 // deadline per user holding readings
}

func newTimers() timers {
	return timers{clock: map[int32]int64{}, due: map[int32]map[UserKey]int64{}}
}

// set notes c's deadline, or that it holds nothing any more.
func (t *timers) set(c *cachedAggregate, deadline int64, holds bool) {
	m := t.due[c.partition]
	if !holds {
		if len(m) > 0 {
			delete(m, c.key)
		}
		return
	}
	if m == nil {
		m = map[UserKey]int64{}
		t.due[c.partition] = m
	}
	m[c.key] = deadline
}

// dueBy returns the users of part whose deadline lies before at, in
// deadline order (then by key, so the order is the same on every replay).
func (t *timers) dueBy(part int32, at int64) []UserKey {
	var keys []UserKey
	for k, d := range t.due[part] {
		if d < at {
			keys = append(keys, k)
		}
	}
	m := t.due[part]
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] < m[keys[j]]
		}
		if keys[i].Tenant != keys[j].Tenant {
			return keys[i].Tenant < keys[j].Tenant
		}
		return keys[i].User < keys[j].User
	})
	return keys
}

// forget drops the partition numbers gone.
func (t *timers) forget(gone map[int32]bool) {
	for id := range gone {
		delete(t.clock, id)
		delete(t.due, id)
	}
}

// restore takes the stored clocks and deadlines of newly assigned
// partition numbers.
func (p *Processor) restoreTimers(ctx context.Context, clocks map[int32]int64) error {
	ids := make([]int32, 0, len(clocks))
	for id := range clocks {
		ids = append(ids, id)
	}
	held, err := p.store.heldUsers(ctx, ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		p.timers.clock[id] = clocks[id]
		p.timers.due[id] = held[id]
	}
	return nil
}

// dueInStep adds to missing the users whose held readings the step's
// records will settle and who are not in memory, so that they are loaded
// with the step's own users.
func (p *Processor) dueInStep(in []decoded, missing map[UserKey]struct{}) {
	latest := map[int32]int64{}
	for i := range in {
		r := in[i].rec
		latest[r.Partition] = max(latest[r.Partition], r.Timestamp.UnixMilli())
	}
	for part, at := range latest {
		if at <= p.timers.clock[part] {
			continue
		}
		for _, k := range p.timers.dueBy(part, at) {
			if p.users.get(k) == nil {
				missing[k] = struct{}{}
			}
		}
	}
}

// tick moves d's partition clock to d's timestamp, if later, and first
// settles the held readings that fall due.
func (p *Processor) tick(b *batch, d *decoded) {
	part, at := d.rec.Partition, d.rec.Timestamp.UnixMilli()
	if at <= p.timers.clock[part] {
		return
	}
	p.timers.clock[part] = at
	for _, k := range p.timers.dueBy(part, at) {
		c := p.users.get(k)
		if c == nil {
			// Loaded by dueInStep; only a user whose row is gone (erased
			// and deleted) can be missing, and it holds nothing.
			delete(p.timers.due[part], k)
			continue
		}
		c.partition = part
		p.touch(b, c)
		// What settling emits is the user's: sealed with their key (nil
		// only for a snapshot written in clear by an earlier release).
		b.dk = c.dk
		b.fwd, b.fwdReading = nil, nil // nothing settled here is forwarded
		for _, o := range c.agg.ExpireHeld(at, p.cfg.Rules) {
			p.emit(b, &o, nil)
		}
		p.setTimer(c)
	}
}

// setTimer notes c's deadline after its aggregate changed.
func (p *Processor) setTimer(c *cachedAggregate) {
	d, holds := c.agg.HeldDeadline(p.cfg.Rules)
	p.timers.set(c, d, holds)
}
