package userkeys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/pgtest"
)

func newKEKFile(t *testing.T) string {
	raw := make([]byte, 32)
	rand.Read(raw)
	p := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(raw)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStoreLifecycle runs against the stack's PostgreSQL (make test sets
// VITALS_PG_URL): a user's key is created once and found by every
// process; shredding it in one process makes it shredded in the other's
// cache at once (LISTEN/NOTIFY), and for good (no new key is made); a
// rewrap under a new KEK keeps every key opening what it sealed.
func TestStoreLifecycle(t *testing.T) {
	ctx, pool := pgtest.Pool(t, time.Minute)
	oldKEK, newKEKPath := newKEKFile(t), newKEKFile(t)
	open := func(cfg KeyringConfig) *Store {
		s, err := Open(ctx, pool, Config{Keyring: cfg, CacheKeys: 100}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a, b := open(KeyringConfig{KEKFile: oldKEK}), open(KeyringConfig{KEKFile: oldKEK})
	tenant := fmt.Sprintf("keystest-%d", time.Now().UnixNano())
	defer func() {
		_, _ = DropTenant(context.WithoutCancel(ctx), pool, tenant)
	}()
	ka, err := a.ForUsers(ctx, tenant, []string{"alice", "bob", "alice"})
	if err != nil || len(ka) != 2 {
		t.Fatalf("ForUsers: %v %v", ka, err)
	}
	kb, err := b.ForUsers(ctx, tenant, []string{"alice"})
	if err != nil || kb["alice"].ID != ka["alice"].ID {
		t.Fatalf("another process got another key for alice: %v", err)
	}
	rec := &kgo.Record{Key: []byte("alice"), Value: []byte("alice's reading")}
	ka["alice"].SealRecord(rec)
	fresh := open(KeyringConfig{KEKFile: oldKEK})
	if err := fresh.LoadRecordKeys(ctx, []*kgo.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if plain, _, err := fresh.OpenRecord(nil, rec); err != nil || string(plain) != "alice's reading" {
		t.Fatalf("a fresh process does not open alice's record: %q %v", plain, err)
	}

	if err := a.Shred(ctx, tenant, "alice"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := fresh.OpenRecord(nil, rec)
		if kb["alice"].Shredded() && err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("10 s after the shredding, the other processes' cached key is not shredded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	again := open(KeyringConfig{KEKFile: oldKEK})
	if k, err := again.ForUsers(ctx, tenant, []string{"alice"}); err != nil || !k["alice"].Shredded() {
		t.Fatalf("an erased user got a key again: %v", err)
	}
	if err := again.LoadRecordKeys(ctx, []*kgo.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if _, k, err := again.OpenRecord(nil, rec); err == nil || k == nil || k.User != "alice" {
		t.Fatalf("a record of a shredded key: key %v, err %v", k, err)
	}

	// Rewrap bob's key under a new KEK: with the new KEK alone it opens
	// what it sealed before.
	bobRec := &kgo.Record{Key: []byte("bob"), Value: []byte("bob's reading")}
	ka["bob"].SealRecord(bobRec)
	r := open(KeyringConfig{KEKFile: newKEKPath, PreviousKEKFiles: []string{oldKEK}})
	if _, err := r.Rewrap(ctx, 10, tenant); err != nil {
		t.Fatal(err)
	}
	onlyNew := open(KeyringConfig{KEKFile: newKEKPath})
	if err := onlyNew.LoadRecordKeys(ctx, []*kgo.Record{bobRec}); err != nil {
		t.Fatalf("after the rewrap, the new KEK alone does not unwrap: %v", err)
	}
	if plain, _, err := onlyNew.OpenRecord(nil, bobRec); err != nil || string(plain) != "bob's reading" {
		t.Fatalf("after the rewrap: %q %v", plain, err)
	}
}

// TestRecordKeys: a fresh process finds each record's key in one pass
// (nil for one in clear, a damaged envelope or a key the store lacks),
// OpenRecordKey opens with it, and a key that is not the record's opens
// nothing; KeysFor gives a key per user in order.
func TestRecordKeys(t *testing.T) {
	ctx, pool := pgtest.Pool(t, time.Minute)
	kek := newKEKFile(t)
	open := func() *Store {
		s, err := Open(ctx, pool, Config{Keyring: KeyringConfig{KEKFile: kek}, CacheKeys: 100}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	tenant := fmt.Sprintf("keystest-%d", time.Now().UnixNano())
	defer func() {
		_, _ = DropTenant(context.WithoutCancel(ctx), pool, tenant)
	}()
	ks, err := open().ForUsers(ctx, tenant, []string{"alice", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	sealed := func(user, value string) *kgo.Record {
		r := &kgo.Record{Key: []byte(user), Value: []byte(value)}
		ks[user].SealRecord(r)
		return r
	}
	damaged := sealed("bob", "bob's 2nd")
	damaged.Headers[1].Value = []byte("not hex")
	stranger, _ := newKey(ID{1, 2, 3}, tenant, "carol", make([]byte, 32))
	unknown := &kgo.Record{Key: []byte("carol"), Value: []byte("carol's")}
	stranger.SealRecord(unknown)
	recs := []*kgo.Record{{Key: []byte("dave"), Value: []byte("in clear")}, sealed("alice", "alice's 1st"),
		sealed("alice", "alice's 2nd"), sealed("bob", "bob's 1st"), damaged, unknown}

	fresh := open()
	keys, err := fresh.RecordKeys(ctx, recs, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []*Key{nil, ks["alice"], ks["alice"], ks["bob"], nil, nil}
	if len(keys) != len(want) {
		t.Fatalf("%d keys for %d records", len(keys), len(recs))
	}
	for i, k := range keys {
		if (k == nil) != (want[i] == nil) || k != nil && k.ID != want[i].ID {
			t.Errorf("record %d: key %v, want %v", i, k, want[i])
		}
	}
	for i, plain := range []string{"in clear", "alice's 1st", "alice's 2nd", "bob's 1st"} {
		if got, _, err := fresh.OpenRecordKey(nil, recs[i], keys[i]); err != nil || string(got) != plain {
			t.Errorf("record %d opens as %q, %v; want %q", i, got, err, plain)
		}
	}
	if _, _, err := fresh.OpenRecordKey(nil, damaged, keys[4]); !errors.Is(err, ErrSealed) {
		t.Errorf("damaged envelope: %v, want ErrSealed", err)
	}
	if _, _, err := fresh.OpenRecordKey(nil, unknown, keys[5]); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("key not in the store: %v, want ErrUnknownKey", err)
	}
	if _, _, err := fresh.OpenRecordKey(nil, recs[3], keys[1]); !errors.Is(err, ErrSealed) {
		t.Errorf("bob's record with alice's key: %v, want ErrSealed", err)
	}

	// KeysFor: a key per user in order, nil for no user, a new user's
	// created once however often named.
	got, err := open().KeysFor(ctx, tenant, []string{"bob", "", "erin", "erin"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0] == nil || got[0].ID != ks["bob"].ID || got[1] != nil || got[2] == nil || got[2] != got[3] || got[2].User != "erin" {
		t.Fatalf("KeysFor: %v", got)
	}
}

// TestDropTenant: a scratch tenant's keys go, and only its own; a store
// that asks again afterwards gets a new key, and what the old one sealed
// does not open.
func TestDropTenant(t *testing.T) {
	ctx, pool := pgtest.Pool(t, time.Minute)
	kek := KeyringConfig{KEKFile: newKEKFile(t)}
	open := func() *Store {
		s, err := Open(ctx, pool, Config{Keyring: kek, CacheKeys: 100}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	s := open()
	scratch, other := fmt.Sprintf("droptest-%d", time.Now().UnixNano()), fmt.Sprintf("droptest-other-%d", time.Now().UnixNano())
	defer func() { _, _ = DropTenant(context.WithoutCancel(ctx), pool, other) }()
	defer func() { _, _ = DropTenant(context.WithoutCancel(ctx), pool, scratch) }()
	ks, err := s.ForUsers(ctx, scratch, []string{"alice", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ForUsers(ctx, other, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{Key: []byte("alice"), Value: []byte("alice's reading")}
	ks["alice"].SealRecord(rec)
	if n, err := DropTenant(ctx, pool, scratch); err != nil || n != 2 {
		t.Fatalf("DropTenant = %d, %v; want 2 keys", n, err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM user_data_keys WHERE tenant_id = ANY($1)`, []string{scratch, other}).Scan(&left); err != nil || left != 1 {
		t.Fatalf("keys left of the two tenants = %d, %v; want the other tenant's 1", left, err)
	}
	fresh := open()
	if err := fresh.LoadRecordKeys(ctx, []*kgo.Record{rec}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fresh.OpenRecord(nil, rec); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a record sealed with a dropped key: %v, want ErrUnknownKey", err)
	}
	again, err := fresh.ForUsers(ctx, scratch, []string{"alice"})
	if err != nil || again["alice"].ID == ks["alice"].ID {
		t.Fatalf("alice after the drop: %v, %v; want a new key", again["alice"], err)
	}
}
