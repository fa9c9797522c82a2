package userkeys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func testKey(t testing.TB, user string) *Key {
	t.Helper()
	var id ID
	rand.Read(id[:])
	raw := make([]byte, 32)
	rand.Read(raw)
	k, err := newKey(id, "tenant", user, raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A sealed record opens with its key and its record key only; the
// plain value appears nowhere in it; a fresh nonce makes two seals of the
// same value differ.
func TestRecordSealOpen(t *testing.T) {
	k := testKey(t, "alice")
	plain := []byte("canary-value-12345")
	r := &kgo.Record{Key: []byte("alice"), Value: append([]byte(nil), plain...)}
	k.SealRecord(r)
	if bytes.Contains(r.Value, plain) || len(r.Value) != len(plain)+Overhead {
		t.Fatalf("sealed value %x", r.Value)
	}
	id, sealed, err := RecordKeyID(r)
	if err != nil || !sealed || id != k.ID {
		t.Fatalf("RecordKeyID: %v %v %v", id, sealed, err)
	}
	got, err := k.Open(nil, r.Value, r.Key)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := k.Open(nil, r.Value, []byte("bob")); !errors.Is(err, ErrSealed) {
		t.Fatalf("opened under another record key: %v", err)
	}
	if _, err := testKey(t, "alice").Open(nil, r.Value, r.Key); !errors.Is(err, ErrSealed) {
		t.Fatalf("opened with another key: %v", err)
	}
	r2 := &kgo.Record{Key: []byte("alice"), Value: append([]byte(nil), plain...)}
	k.SealRecord(r2)
	if bytes.Equal(r.Value, r2.Value) {
		t.Fatal("two seals of one value are equal: the nonce is not fresh")
	}
	if _, sealed, _ := RecordKeyID(&kgo.Record{Value: plain}); sealed {
		t.Fatal("a record without headers reads as sealed")
	}
	k.shredded.Store(true)
	if _, err := k.Open(nil, r.Value, r.Key); !errors.Is(err, ErrShredded) {
		t.Fatalf("a shredded key opened: %v", err)
	}
}

func TestRecordKeyIDRejectsUnknownEnvelope(t *testing.T) {
	r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderAlg, Value: []byte("rot13.9")}, {Key: HeaderKeyID, Value: []byte("00")}}}
	if _, sealed, err := RecordKeyID(r); !sealed || !errors.Is(err, ErrSealed) {
		t.Fatalf("unknown envelope: sealed %v, err %v", sealed, err)
	}
}

func TestBlobSealOpen(t *testing.T) {
	k := testKey(t, "alice")
	plain := []byte("snapshot of alice")
	b := k.SealBlob(nil, plain)
	if id, ok := BlobKeyID(b); !ok || id != k.ID {
		t.Fatal("blob key id")
	}
	if got, err := k.OpenBlob(b); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open blob: %q %v", got, err)
	}
	other, _ := newKey(k.ID, "tenant", "bob", nil)
	other.aead = k.aead
	other.shredded.Store(false)
	if _, err := other.OpenBlob(b); err == nil {
		t.Fatal("a blob opened as another user's")
	}
	if _, ok := BlobKeyID([]byte("{\"json\": 1}")); ok {
		t.Fatal("JSON reads as a sealed blob")
	}
}

func TestKEKWrap(t *testing.T) {
	raw := make([]byte, 32)
	rand.Read(raw)
	kek, err := ParseKEK([]byte(base64.StdEncoding.EncodeToString(raw) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if kek.String() != kek.ID() || len(kek.ID()) != len("kek-")+16 {
		t.Fatalf("KEK prints %q", kek.String())
	}
	var id ID
	dk := []byte("0123456789abcdef0123456789abcdef")
	w := kek.wrap(dk, wrapAAD(id, "t", "u"))
	if got, err := kek.unwrap(w, wrapAAD(id, "t", "u")); err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := kek.unwrap(w, wrapAAD(id, "t", "v")); err == nil {
		t.Fatal("a data key unwrapped for another user")
	}
	for _, bad := range []string{"", "short", base64.StdEncoding.EncodeToString(raw[:16])} {
		if _, err := ParseKEK([]byte(bad)); err == nil {
			t.Errorf("ParseKEK(%q) accepted", bad)
		}
	}
}

// BenchmarkSeal seals a 150-byte record value, as ingest and the processor
// do, with one key (hot: its expanded schedule and GHASH tables stay in
// the CPU's caches) and with a key drawn from 50,000 (cold: as in the
// benchmarks' round robin over 50,000 users, each record a different
// user's key, most of it read from memory). The gap is what a record costs
// beyond the cipher itself: go test -run '^$' -bench Seal ./internal/userkeys/
func BenchmarkSeal(b *testing.B) {
	for _, n := range []int{1, 50_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			keys := make([]*Key, n)
			for i := range keys {
				keys[i] = testKey(b, "user-"+strconv.Itoa(i))
			}
			rec := &kgo.Record{Key: []byte("user-1"), Value: bytes.Repeat([]byte{'v'}, 150)}
			plain := rec.Value
			dst := make([]byte, 0, 256)
			for i := 0; b.Loop(); i++ {
				dst = keys[(i*7919)%n].Seal(dst[:0], plain, rec.Key)
			}
		})
	}
}
