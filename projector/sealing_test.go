package projector

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/pgtest"
	"github.com/vitalshq/vitals/internal/userkeys"
)

// TestOpenRecordsInPlace runs against the stack's PostgreSQL (the key
// store): a sealed record's plain value takes the sealed value's own
// memory (no copy per batch), loses the envelope headers and is what was
// sealed; a record that does not open is skipped and counted; a record in
// clear is left as it is.
func TestOpenRecordsInPlace(t *testing.T) {
	ctx, pool := pgtest.Pool(t, time.Minute)
	raw := make([]byte, 32)
	rand.Read(raw)
	kek, err := userkeys.ParseKEK([]byte(base64.StdEncoding.EncodeToString(raw)))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := userkeys.OpenWith(ctx, pool, &userkeys.Keyring{Current: kek}, 100, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	tenant := fmt.Sprintf("opentest-%d", time.Now().UnixNano())
	defer func() { _, _ = userkeys.DropTenant(ctx, pool, tenant) }()
	ks, err := keys.ForUsers(ctx, tenant, []string{"alice"})
	if err != nil {
		t.Fatal(err)
	}

	topics := eventlog.TopicsWithPrefix("t")
	p := &Projector{log: zerolog.Nop(), keys: keys, sinks: map[string]*sink{}}
	for _, s := range sinks(topics) {
		p.sinks[s.topic] = s
	}
	plain := []byte("alice's reading, as ingest wrote it")
	sealed := func() *kgo.Record {
		r := &kgo.Record{Topic: topics.AcceptedReadings, Key: []byte("alice"), Value: bytes.Clone(plain)}
		ks["alice"].SealRecord(r)
		return r
	}
	good, bad := sealed(), sealed()
	bad.Value[len(bad.Value)-1] ^= 1
	clear := &kgo.Record{Topic: topics.AcceptedReadings, Key: []byte("alice"), Value: bytes.Clone(plain)}
	mem := &good.Value[0]

	o, err := p.openRecords(ctx, []*kgo.Record{good, bad, clear})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(good.Value, plain) || &good.Value[0] != mem || userkeys.SealedIn(good) {
		t.Errorf("opened record: %q (in place %v, sealed headers %v); want %q in place, no envelope headers",
			good.Value, &good.Value[0] == mem, userkeys.SealedIn(good), plain)
	}
	if !o.skip[bad] || o.skip[good] || o.skip[clear] || p.stats.Undecodable.Load() != 1 {
		t.Errorf("skipped %v, undecodable %d; want only the damaged record", o.skip, p.stats.Undecodable.Load())
	}
	if !bytes.Equal(clear.Value, plain) {
		t.Errorf("record in clear changed: %q", clear.Value)
	}
}
