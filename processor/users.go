package processor

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/processor/rules"
)

// cachedAggregate is an owned user's aggregate and the partition it lives
// in. The aggregate is part of it, not pointed to: every record reads both,
// and with many users each is a cache miss of its own.
type cachedAggregate struct {
	key       UserKey
	step      uint64 // the last step that touched it
	partition int32
	dirty     bool // listed in users.dirty
	agg       rules.Aggregate
	dk        *userkeys.Key // the user's data key: it seals the snapshot
}

// users holds the aggregates of owned users in memory, each loaded from
// its last checkpoint on first use; dirty are those changed since the last
// checkpoint (each marked so, to be listed once). The caller serialises
// access (see Processor.users).
type users struct {
	byKey   map[UserKey]*cachedAggregate
	tenants map[string]string // one copy of each tenant id, shared by the keys
	dirty   []*cachedAggregate
}

func newUsers() users {
	return users{byKey: make(map[UserKey]*cachedAggregate), tenants: make(map[string]string)}
}

// get returns the user's aggregate, nil if it is not in memory.
func (u *users) get(k UserKey) *cachedAggregate { return u.byKey[k] }

// add puts a loaded aggregate in memory (an empty one if agg is nil, for a
// user never checkpointed). The key's strings are copied for the same
// reason as the ids an aggregate remembers (a decoded record's strings
// share its decoder's buffers); the few tenant ids once each, so that
// comparing a key's tenant on every lookup reads memory that is in cache.
func (u *users) add(k UserKey, agg *rules.Aggregate) *cachedAggregate {
	tenant, ok := u.tenants[k.Tenant]
	if !ok {
		tenant = strings.Clone(k.Tenant)
		u.tenants[tenant] = tenant
	}
	k = UserKey{tenant, strings.Clone(k.User)}
	c := &cachedAggregate{key: k}
	if agg != nil {
		c.agg = *agg
	}
	u.byKey[k] = c
	return c
}

// markDirty lists c among the aggregates the next checkpoint writes.
func (u *users) markDirty(c *cachedAggregate) {
	if !c.dirty {
		c.dirty = true
		u.dirty = append(u.dirty, c)
	}
}

// takeDirty calls f with each changed aggregate and clears the list.
func (u *users) takeDirty(f func(c *cachedAggregate)) {
	for _, c := range u.dirty {
		c.dirty = false
		f(c)
	}
	clear(u.dirty)
	u.dirty = u.dirty[:0]
}

// forget drops the aggregates of the partition numbers gone, changed or
// not: the next owner loads them from the last checkpoint.
func (u *users) forget(gone map[int32]bool) {
	for k, c := range u.byKey {
		if gone[c.partition] {
			delete(u.byKey, k)
		}
	}
	kept := u.dirty[:0]
	for _, c := range u.dirty {
		if gone[c.partition] {
			c.dirty = false
		} else {
			kept = append(kept, c)
		}
	}
	clear(u.dirty[len(kept):])
	u.dirty = kept
}

// evict keeps memory bounded: when more than max aggregates are in
// memory, it drops the least recently used of those whose state is
// committed (not changed since the last checkpoint), down to nine tenths of
// max, so that it runs once per that many new users rather than on every
// checkpoint. An evicted user is loaded from its checkpoint when its next
// event comes, which is the same aggregate, so decisions do not change.
// Only call it when no checkpoint is being written. It returns how many it
// dropped.
func (u *users) evict(max int) int {
	if max <= 0 || len(u.byKey) <= max {
		return 0
	}
	clean := make([]*cachedAggregate, 0, len(u.byKey))
	for _, c := range u.byKey {
		if !c.dirty {
			clean = append(clean, c)
		}
	}
	sort.Slice(clean, func(i, j int) bool { return clean[i].step < clean[j].step })
	n := min(len(u.byKey)-max*9/10, len(clean))
	for _, c := range clean[:n] {
		delete(u.byKey, c.key)
	}
	return n
}

// forgetAll drops every aggregate, so that each is loaded again from its
// last checkpoint.
func (u *users) forgetAll() {
	clear(u.byKey)
	u.takeDirty(func(*cachedAggregate) {})
}

// loadUsers loads the aggregates of the step's users not in memory yet
// (missing) from their last checkpoint, retrying while PostgreSQL is
// unavailable, and gives their records their aggregate.
func (p *Processor) loadUsers(ctx context.Context, in []decoded, missing map[UserKey]struct{}) error {
	if len(missing) == 0 {
		return nil
	}
	keys := make([]UserKey, 0, len(missing))
	for k := range missing {
		keys = append(keys, k)
	}
	var states map[UserKey][]byte
	if err := p.retry(ctx, "load aggregates", func(ctx context.Context) (err error) {
		states, err = p.store.load(ctx, keys)
		return err
	}); err != nil {
		return err
	}
	if err := p.loadSnapshotKeys(ctx, states); err != nil {
		return err
	}
	for _, k := range keys {
		var agg *rules.Aggregate
		var dk *userkeys.Key
		if st, ok := states[k]; ok {
			var err error
			if agg, dk, err = p.openSnapshot(st); err != nil {
				// A snapshot that does not open cannot be judged against;
				// going on without it would judge the user afresh.
				return fmt.Errorf("aggregate of a user in tenant %s: %w", k.Tenant, err)
			}
		}
		p.users.add(k, agg).dk = dk
	}
	p.attach(in)
	return nil
}

// attach gives the decoded records without an aggregate their user's.
func (p *Processor) attach(in []decoded) {
	for i := range in {
		if d := &in[i]; d.user == nil && d.decoded() {
			d.user = p.users.get(d.key)
		}
	}
}
