package userkeys

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Headers of a sealed Kafka record. What routing needs (the record key,
// which is the user id, and the timestamp) stays in clear; the value is
// the sealed message.
const (
	// HeaderAlg names the envelope: algorithm and layout version. A record
	// without it was written in clear (by a release before encryption).
	HeaderAlg = "vitals-enc"
	// HeaderKeyID is the data key's id, in hex.
	HeaderKeyID = "vitals-key"
	// AlgAES256GCM1 is the envelope written today: the value is a 12-byte
	// random nonce, the AES-256-GCM ciphertext and its 16-byte tag; the
	// additional data is the record key (the user id), so a sealed value
	// moved under another record key does not open (nor, of course, under
	// another data key).
	AlgAES256GCM1 = "aes256gcm.1"
)

// IDLen is the length of a data key id.
const IDLen = 16

// ID identifies a data key. It is random, so it tells nothing about its
// user; the key store maps it to the user.
type ID [IDLen]byte

// String is the id in hex, as in the record header.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Key is one user's data key, or the tombstone of a shredded one.
type Key struct {
	ID       ID
	Tenant   string
	User     string
	shredded atomic.Bool
	aead     cipher.AEAD
	hexID    []byte
	blobAAD  []byte // what a snapshot is bound to: tenant and user
}

// Shredded reports whether the key was destroyed: nothing it sealed opens
// again. A key cached by a process turns shredded when any process shreds
// it (see listen), so holders of the pointer see it too.
func (k *Key) Shredded() bool { return k.shredded.Load() }

// NewKey makes tenant/user's data key of id from its 32 raw bytes, for
// tests and tools that hold a key outside the store; the roles take
// theirs from a Store, which makes, wraps and shreds them.
func NewKey(id ID, tenant, user string, raw []byte) (*Key, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("data key: %d bytes, want 32", len(raw))
	}
	return newKey(id, tenant, user, raw)
}

func newKey(id ID, tenant, user string, raw []byte) (*Key, error) {
	k := &Key{ID: id, Tenant: tenant, User: user, hexID: []byte(id.String()), blobAAD: []byte(tenant + "\x00" + user)}
	if raw == nil {
		k.shredded.Store(true)
		return k, nil
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	if k.aead, err = cipher.NewGCMWithRandomNonce(block); err != nil {
		return nil, fmt.Errorf("data key: %w", err)
	}
	return k, nil
}

// Why a sealed message did not open.
var (
	// ErrShredded: the message's data key was destroyed by an erasure.
	// Such a message is not malformed: it is shredded, on purpose.
	ErrShredded = errors.New("data key shredded: the user was erased")
	// ErrUnknownKey: no data key of that id is in the store (a log from
	// another deployment, or a key store restored from an older backup).
	ErrUnknownKey = errors.New("data key not in the key store")
	// ErrSealed: the envelope is damaged or does not authenticate.
	ErrSealed = errors.New("sealed message does not open")
)

// Overhead is what sealing adds to a record value.
const Overhead = 12 + 16

// Seal appends the sealed form of plain, bound to bound (the record key,
// or the snapshot's owner), to dst. Callers check Shredded first: what a
// key shredded a moment ago still seals opens nowhere.
func (k *Key) Seal(dst, plain, bound []byte) []byte {
	return k.aead.Seal(dst, nil, plain, bound)
}

// Open appends the plain form of sealed to dst.
func (k *Key) Open(dst, sealed, bound []byte) ([]byte, error) {
	if k.Shredded() {
		return nil, ErrShredded
	}
	out, err := k.aead.Open(dst, nil, sealed, bound)
	if err != nil {
		return nil, ErrSealed
	}
	return out, nil
}

// Headers are a sealed record's headers, appended to hs.
func (k *Key) Headers(hs []kgo.RecordHeader) []kgo.RecordHeader {
	return append(hs, kgo.RecordHeader{Key: HeaderAlg, Value: algValue}, kgo.RecordHeader{Key: HeaderKeyID, Value: k.hexID})
}

var algValue = []byte(AlgAES256GCM1)

// SealRecord seals r's value in place (a new slice) with k and adds the
// headers. The record key must already be set: the value is bound to it.
func (k *Key) SealRecord(r *kgo.Record) {
	r.Value = k.Seal(make([]byte, 0, len(r.Value)+Overhead), r.Value, r.Key)
	r.Headers = k.Headers(r.Headers)
}

// SealRecordInto is SealRecord with the sealed value appended to mem
// (which it returns, grown) and the headers written into hs, two of them,
// for callers that seal many records into memory of their own. The
// record's headers must be empty.
func (k *Key) SealRecordInto(r *kgo.Record, mem []byte, hs []kgo.RecordHeader) []byte {
	start := len(mem)
	mem = k.Seal(mem, r.Value, r.Key)
	r.Value = mem[start:len(mem):len(mem)]
	hs[0] = kgo.RecordHeader{Key: HeaderAlg, Value: algValue}
	hs[1] = kgo.RecordHeader{Key: HeaderKeyID, Value: k.hexID}
	r.Headers = hs[:2:2]
	return mem
}

// RecordKeyID returns the id of the data key a record is sealed with;
// sealed is false for a record written in clear.
func RecordKeyID(r *kgo.Record) (id ID, sealed bool, err error) {
	var alg, kid []byte
	for i := range r.Headers {
		switch r.Headers[i].Key {
		case HeaderAlg:
			alg = r.Headers[i].Value
		case HeaderKeyID:
			kid = r.Headers[i].Value
		}
	}
	if alg == nil {
		return id, false, nil
	}
	if string(alg) != AlgAES256GCM1 {
		return id, true, fmt.Errorf("%w: envelope %q is not one this release reads", ErrSealed, alg)
	}
	if len(kid) != 2*IDLen {
		return id, true, fmt.Errorf("%w: key id header %q", ErrSealed, kid)
	}
	if _, err := hex.Decode(id[:], kid); err != nil {
		return id, true, fmt.Errorf("%w: key id header: %v", ErrSealed, err)
	}
	return id, true, nil
}

// Snapshots (a user's state in PostgreSQL) carry their key id inline:
// blobMagic, the id, then the sealed bytes, bound to tenant and user.
var blobMagic = [2]byte{0xE5, 0x01}

// SealBlob appends the sealed form of plain to dst, self-describing.
func (k *Key) SealBlob(dst, plain []byte) []byte {
	dst = append(append(dst, blobMagic[:]...), k.ID[:]...)
	return k.Seal(dst, plain, k.blobAAD)
}

// BlobKeyID reports whether b is a sealed blob and the id of its key.
func BlobKeyID(b []byte) (id ID, sealed bool) {
	if len(b) < 2+IDLen || b[0] != blobMagic[0] || b[1] != blobMagic[1] {
		return id, false
	}
	copy(id[:], b[2:])
	return id, true
}

// OpenBlob returns the plain form of a blob SealBlob made with k.
func (k *Key) OpenBlob(b []byte) ([]byte, error) {
	id, ok := BlobKeyID(b)
	if !ok || id != k.ID {
		return nil, ErrSealed
	}
	return k.Open(nil, b[2+IDLen:], k.blobAAD)
}
