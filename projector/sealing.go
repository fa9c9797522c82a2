package projector

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/userkeys"
)

// The projector reads records sealed with their users' data keys (or
// written in clear by earlier releases) and stores what they hold in
// ClickHouse in clear, where it is aggregated. A record whose key was
// shredded is the record of an erased user: nothing of it can be read, it
// is counted (Stats.Shredded) and its user is treated as erased here too
// (an erased_users row and deletes), so that a projection that read some
// of the user's records before the key was shredded (a rebuild racing an
// erasure) forgets them all the same.

// opened is what opening a batch's records found.
type opened struct {
	skip     map[*kgo.Record]bool // records not to decode: shredded or not opening
	shredded []row                // one row per user whose key was shredded
}

// openRecords replaces the value of every sealed record by its plain
// value, in place, loading the keys not cached in one round trip.
func (p *Projector) openRecords(ctx context.Context, records []*kgo.Record) (opened, error) {
	var o opened
	if p.keys == nil {
		return o, nil
	}
	keys, err := p.keys.RecordKeys(ctx, records, p.recKeys[:0])
	if err != nil {
		return o, err
	}
	defer func() { p.recKeys = keys; clear(keys) }()
	seen := map[userKey]bool{}
	for i, rec := range records {
		if _, ok := p.sinks[rec.Topic]; !ok || !userkeys.SealedIn(rec) {
			continue
		}
		// Opened in place: the plain value takes the sealed one's memory
		// (the fetch's, made without kgo.WithPools, which the rows' strings
		// share, as rows.go says), so opening allocates nothing per batch;
		// the sealed value is not needed once opened (a record that does
		// not open is skipped, its value cleared by the cipher).
		plain, k, err := p.keys.OpenRecordKey(rec.Value[:0], rec, keys[i])
		switch {
		case errors.Is(err, userkeys.ErrShredded):
			if o.skip == nil {
				o.skip = map[*kgo.Record]bool{}
			}
			o.skip[rec] = true
			p.stats.Shredded.Add(1)
			u := userKey{k.Tenant, k.User}
			if !seen[u] && !p.erased.has(row{tenant: u.tenant, user: u.user}) {
				seen[u] = true
				o.shredded = append(o.shredded, row{tenant: strings.Clone(u.tenant), user: strings.Clone(u.user), partition: rec.Partition, offset: rec.Offset})
			}
		case err != nil:
			if o.skip == nil {
				o.skip = map[*kgo.Record]bool{}
			}
			o.skip[rec] = true
			p.stats.Undecodable.Add(1)
			p.log.Error().Err(err).Str("topic", rec.Topic).Int32("partition", rec.Partition).Int64("offset", rec.Offset).Msg("sealed record does not open; skipped")
		default:
			rec.Value = plain
			rec.Headers = withoutSealHeaders(rec.Headers)
		}
	}
	return o, nil
}

// withoutSealHeaders drops the envelope headers of an opened record, so
// that nothing takes its plain value for a sealed one.
func withoutSealHeaders(hs []kgo.RecordHeader) []kgo.RecordHeader {
	out := hs[:0]
	for _, h := range hs {
		if h.Key != userkeys.HeaderAlg && h.Key != userkeys.HeaderKeyID {
			out = append(out, h)
		}
	}
	return out
}

// openWithRetry opens the records, retrying while the key store is
// unavailable (nothing is stored meanwhile, nothing is skipped).
func (p *Projector) openWithRetry(ctx context.Context, records []*kgo.Record) (opened, error) {
	backoff := p.cfg.MinBackoff
	for {
		o, err := p.openRecords(ctx, records)
		if err == nil {
			return o, nil
		}
		p.log.Warn().Err(err).Dur("retry_in", backoff).Msg("key store unavailable; retrying")
		select {
		case <-ctx.Done():
			return o, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
	}
}

// eraseShredded adds an erasure row for each user whose key was found
// shredded, unless the projection knows the user erased: stored first like
// any erasure, it makes every later insert leave the user out and deletes
// what the tables hold of the user.
func (p *Projector) eraseShredded(b *batch, users []row) {
	if len(users) == 0 {
		return
	}
	var s *sink
	for _, sk := range p.sinks {
		if sk.erasure {
			s = sk
		}
	}
	if s == nil {
		return // a projection without erased_users (replay of chosen tables): filter only
	}
	t := p.bufs[s.table]
	if t == nil {
		t = newPending(s)
		p.bufs[s.table] = t
	}
	if len(b.tables) == 0 || b.tables[0] != t {
		t.reset()
		b.tables = append([]*pending{t}, b.tables...)
	}
	eb := t.buf.(*erasedBuf)
	for _, u := range users {
		eb.addShredded(u)
		t.rows = append(t.rows, u)
		b.erasures = append(b.erasures, u)
	}
}

// closing is a ClickHouse connection that releases the key store and its
// PostgreSQL pool when it is closed, so that every path of New that gives
// up, and Close, release them with the connection.
type closing struct {
	driver.Conn
	also func()
}

func (c closing) Close() error {
	c.also()
	return c.Conn.Close()
}
