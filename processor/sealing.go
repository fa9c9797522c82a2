package processor

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/processor/rules"
	"github.com/vitalshq/vitals/schemas"
)

// Every record the processor reads is sealed with its user's data key
// (docs/privacy.md), or was written in clear by an earlier release; every
// output and snapshot it writes is sealed with the same key. A record whose
// key was shredded is the record of an erased user: it is counted as
// shredded and produces nothing, not even a rejection (which would keep
// something of the user). A record whose key the store does not have, or
// whose envelope does not open, is rejected as undecryptable with its
// sealed bytes, never as malformed.
//
// p.keys is nil only in the Kafka-free tests of a step, which read and
// write in clear.

// ReasonUndecryptable rejects a sealed record whose key the key store does
// not have or whose envelope does not authenticate.
const ReasonUndecryptable = "undecryptable"

// loadRecordKeys loads the data keys of the step's sealed records that are
// not cached, retrying while PostgreSQL is unavailable, and notes each
// record's key in p.recKeys (see userkeys.Store.RecordKeys).
func (p *Processor) loadRecordKeys(ctx context.Context, records []*kgo.Record) error {
	if p.keys == nil {
		return nil
	}
	return p.retry(ctx, "load data keys", func(ctx context.Context) (err error) {
		p.recKeys, err = p.keys.RecordKeys(ctx, records, p.recKeys[:0])
		return err
	})
}

// plainSlab returns memory for the step's opened values: one allocation
// for the step. Decoded strings share it, so it is never reused.
func plainSlab(records []*kgo.Record) []byte {
	n := 0
	for _, r := range records {
		n += len(r.Value)
	}
	return make([]byte, 0, n)
}

// open returns the plain value of d's record, opened into p.plain, and
// notes its key in d: k, the key loadRecordKeys found for it, if any. It
// reports false if the record does not open.
func (p *Processor) open(d *decoded, k *userkeys.Key) ([]byte, bool) {
	if p.keys == nil {
		return d.rec.Value, true
	}
	dst := p.plain[len(p.plain):]
	v, k, err := p.keys.OpenRecordKey(dst, d.rec, k)
	switch {
	case errors.Is(err, userkeys.ErrShredded):
		d.shredded = true
		return nil, false
	case err != nil:
		d.sealErr = err
		return nil, false
	}
	d.dk = k
	if k != nil && len(v) <= cap(dst) {
		p.plain = p.plain[:len(p.plain)+len(v)] // opened in place
	}
	return v, true
}

// keyUnsealed gives the decoded records written in clear (by an earlier
// release) their user's key, creating it if need be, so that their
// outputs and snapshots are sealed too: one round trip per tenant for the
// users not cached. A user whose key was shredded was erased: the record
// counts as shredded.
func (p *Processor) keyUnsealed(ctx context.Context, in []decoded) error {
	if p.keys == nil {
		return nil
	}
	var byTenant map[string][]string
	for i := range in {
		if d := &in[i]; d.dk == nil && d.decoded() {
			if byTenant == nil {
				byTenant = map[string][]string{}
			}
			byTenant[d.key.Tenant] = append(byTenant[d.key.Tenant], d.key.User)
		}
	}
	for tenant, users := range byTenant {
		var ks map[string]*userkeys.Key
		if err := p.retry(ctx, "load data keys", func(ctx context.Context) (err error) {
			ks, err = p.keys.ForUsers(ctx, tenant, users)
			return err
		}); err != nil {
			return err
		}
		for i := range in {
			if d := &in[i]; d.dk == nil && d.decoded() && d.key.Tenant == tenant {
				d.dk = ks[d.key.User]
			}
		}
	}
	for i := range in {
		if d := &in[i]; d.dk != nil && d.dk.Shredded() {
			d.reading, d.device, d.profile, d.user, d.shredded = nil, nil, nil, nil, true
		}
	}
	return nil
}

// openSnapshot returns the aggregate a stored snapshot holds: sealed with
// its user's key, or in clear (a tombstone, which holds nothing of the
// user, or a row of an earlier release). The snapshot of a user whose key
// was shredded is a tombstone. It returns the key that sealed the
// snapshot too (nil for one in clear): a user loaded only because held
// readings fall due has no record in the step to take the key from, and
// what settling them emits, and the next snapshot, must be sealed all the
// same.
func (p *Processor) openSnapshot(state []byte) (*rules.Aggregate, *userkeys.Key, error) {
	a := new(rules.Aggregate)
	id, sealed := userkeys.BlobKeyID(state)
	if !sealed {
		return a, nil, a.UnmarshalBinary(state)
	}
	if p.keys == nil {
		return nil, nil, errors.New("a sealed snapshot and no key store")
	}
	k, err := p.keys.Key(id)
	if err != nil {
		return nil, nil, err
	}
	if k.Shredded() {
		a.ErasedAt = 1
		return a, k, nil
	}
	plain, err := k.OpenBlob(state)
	if err != nil {
		return nil, nil, err
	}
	return a, k, a.UnmarshalBinary(plain)
}

// loadSnapshotKeys loads the keys of sealed snapshots not cached.
func (p *Processor) loadSnapshotKeys(ctx context.Context, states map[UserKey][]byte) error {
	if p.keys == nil {
		return nil
	}
	var ids []userkeys.ID
	for _, s := range states {
		if id, ok := userkeys.BlobKeyID(s); ok {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return p.retry(ctx, "load data keys", func(ctx context.Context) error { return p.keys.ByIDs(ctx, ids) })
}

// sealHeaders returns the headers of an output sealed with k, with room
// for two more: a forwarded reading's source and the sequence number that
// number appends.
func (m *outputMemory) sealHeaders(k *userkeys.Key) []kgo.RecordHeader {
	if cap(m.hdrs)-len(m.hdrs) < 4 {
		m.hdrs = make([]kgo.RecordHeader, 0, outputChunkRecords)
	}
	n := len(m.hdrs)
	m.hdrs = k.Headers(m.hdrs)
	m.hdrs = m.hdrs[:n+4]
	return m.hdrs[n : n+2 : n+4]
}

// forwardable notes whether d's accepted reading, if d is accepted as it
// is read, can be forwarded as ingest sealed it: d is a reading sealed with
// its user's key, under the record key the output has (the sealed value
// is bound to it).
func (b *batch) forwardable(d *decoded) {
	b.fwd, b.fwdReading = nil, nil
	if d.dk != nil && d.reading != nil && userkeys.SealedIn(d.rec) && string(d.rec.Key) == d.reading.UserID {
		b.fwd, b.fwdReading = d.rec, d.reading
	}
}

// forwardAccepted appends the accepted reading of the record being judged
// (b.fwd, whose reading is rd, at src) as the record's own sealed value
// with its source header, and returns the output's key. The value is the
// fetched record's: nothing reuses fetched memory (the client has no
// pools), and it lives until the broker acknowledged the output.
func (p *Processor) forwardAccepted(b *batch, rd *schemas.Reading, src *rules.Held) []byte {
	key := b.mem.bytes(rd.UserID)
	if b.dk.Shredded() {
		return key // the user was erased since the record was opened
	}
	out := b.mem.record()
	out.Topic, out.Key, out.Value = p.cfg.Kafka.Topics.AcceptedReadings, key, b.fwd.Value
	hs := b.mem.sealHeaders(b.dk)
	out.Headers = append(hs, kgo.RecordHeader{Key: rules.HeaderSource,
		Value: b.mem.take(rules.AppendSource(b.mem.room(32), src.Partition, src.Offset))})
	b.outputs = append(b.outputs, out)
	return key
}
