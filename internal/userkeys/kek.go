// Package userkeys is Vitals' crypto-shredding: every user has a data key
// (AES-256-GCM) that seals everything the log and the processor's
// snapshots hold about the user; the data keys are wrapped by a
// key-encryption key (KEK) and kept in PostgreSQL; erasing a user destroys
// the data key, so nothing of the user can be decrypted again from the
// log, from a copy of it or from any snapshot.
//
// It holds the key-encryption keyring (kek.go), the store of data keys
// with its bounded cache and the invalidation that follows a shredding
// (store.go, cache.go, notify.go), and the envelopes that Kafka records and
// snapshots are sealed in (envelope.go). docs/privacy.md is the threat
// model.
package userkeys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Environment variables the keyring is read from when the configuration
// names no file: the KEK itself (base64 of 32 bytes), or a file holding it.
const (
	EnvKEK         = "VITALS_KEK"
	EnvKEKFile     = "VITALS_KEK_FILE"
	EnvPreviousKEK = "VITALS_KEK_PREVIOUS_FILE"
)

// KEK is a key-encryption key: it wraps data keys. Its bytes never leave
// it; ID is a fingerprint that is safe to store and print.
type KEK struct {
	id   string
	aead cipher.AEAD
}

// ID names the KEK: "kek-" and the first 8 bytes of its SHA-256, in hex.
func (k *KEK) ID() string { return k.id }

// String prints the id only, so a KEK in a log line shows no secret.
func (k *KEK) String() string { return k.id }

// ParseKEK reads a KEK from its text form: the base64 (standard or URL
// alphabet, padded or not) of 32 random bytes, surrounding space ignored.
func ParseKEK(text []byte) (*KEK, error) {
	s := strings.TrimSpace(string(text))
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil || len(raw) != 32 {
		return nil, errors.New("key-encryption key: want the base64 of 32 bytes (e.g. openssl rand -base64 32)")
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	sum := sha256.Sum256(raw)
	clear(raw)
	return &KEK{id: "kek-" + hex.EncodeToString(sum[:8]), aead: aead}, nil
}

// LoadKEK reads a KEK from a file (see ParseKEK).
func LoadKEK(path string) (*KEK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key: %w", err)
	}
	k, err := ParseKEK(b)
	clear(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// wrap seals a data key under the KEK, bound to its id and owner.
func (k *KEK) wrap(dk []byte, aad []byte) []byte { return k.aead.Seal(nil, nil, dk, aad) }

func (k *KEK) unwrap(wrapped, aad []byte) ([]byte, error) { return k.aead.Open(nil, nil, wrapped, aad) }

// Keyring is the current KEK, which wraps new data keys, and the previous
// ones that may still wrap some (until vitals datakeys rewrap moved them).
type Keyring struct {
	Current  *KEK
	Previous []*KEK
}

// byID returns the keyring's KEK of that id.
func (r *Keyring) byID(id string) *KEK {
	if r.Current.id == id {
		return r.Current
	}
	for _, k := range r.Previous {
		if k.id == id {
			return k
		}
	}
	return nil
}

// KeyringConfig says where the keyring is. Empty fields fall back to the
// environment (EnvKEKFile, EnvKEK, EnvPreviousKEK), so that every role
// and test started with the stack's environment finds the same keyring.
type KeyringConfig struct {
	// KEKFile holds the current KEK.
	KEKFile string
	// PreviousKEKFiles hold KEKs that data keys may still be wrapped by.
	PreviousKEKFiles []string
}

// Load reads the keyring. Without a KEK it fails: Vitals writes no
// personal data it could not shred.
func (c KeyringConfig) Load() (*Keyring, error) {
	var r Keyring
	var err error
	switch file := c.KEKFile; {
	case file != "":
		r.Current, err = LoadKEK(file)
	case os.Getenv(EnvKEKFile) != "":
		r.Current, err = LoadKEK(os.Getenv(EnvKEKFile))
	case os.Getenv(EnvKEK) != "":
		r.Current, err = ParseKEK([]byte(os.Getenv(EnvKEK)))
	default:
		return nil, fmt.Errorf("no key-encryption key: set --kek-file or %s (a file holding the base64 of 32 random bytes; the local stack makes one, see docs/privacy.md)", EnvKEKFile)
	}
	if err != nil {
		return nil, err
	}
	prev := c.PreviousKEKFiles
	if len(prev) == 0 && os.Getenv(EnvPreviousKEK) != "" {
		prev = strings.Split(os.Getenv(EnvPreviousKEK), ",")
	}
	for _, f := range prev {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		k, err := LoadKEK(f)
		if err != nil {
			return nil, err
		}
		r.Previous = append(r.Previous, k)
	}
	return &r, nil
}
