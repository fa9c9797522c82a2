package userkeys

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// LoadRecordKeys loads the keys of a batch's sealed records that are not
// cached, in one round trip. A record whose envelope is damaged is left to
// OpenRecord, which reports it.
func (s *Store) LoadRecordKeys(ctx context.Context, recs []*kgo.Record) error {
	_, err := s.RecordKeys(ctx, recs, nil)
	return err
}

// RecordKeys is LoadRecordKeys that also appends to keys the key of each
// record, for OpenRecordKey: nil for a record in clear, one whose envelope
// is damaged or one whose key the store does not have (OpenRecord tells
// which). A batch's records take one cache lookup each (consecutive
// records of one key, as a gateway's batch of one user, take one in all):
// on a large cache the lookup is a cache miss, as dear as the decryption.
func (s *Store) RecordKeys(ctx context.Context, recs []*kgo.Record, keys []*Key) ([]*Key, error) {
	start := len(keys)
	var missing []ID
	var last *Key
	for _, r := range recs {
		id, sealed, err := RecordKeyID(r)
		var k *Key
		switch {
		case !sealed || err != nil:
		case last != nil && last.ID == id:
			k = last
		default:
			if k = s.cache.byID(id); k == nil {
				missing = append(missing, id)
			}
			last = k
		}
		keys = append(keys, k)
	}
	if len(missing) == 0 {
		return keys, nil
	}
	if err := s.ByIDs(ctx, missing); err != nil {
		return keys[:start], err
	}
	for i, r := range recs {
		if keys[start+i] == nil {
			if id, sealed, err := RecordKeyID(r); sealed && err == nil {
				keys[start+i] = s.cache.byID(id)
			}
		}
	}
	return keys, nil
}

// OpenRecord returns r's plain value, appended to dst, and the key it was
// sealed with (nil for a record written in clear, whose value is returned
// as it is). Its keys must have been loaded (LoadRecordKeys). The errors:
// ErrShredded (the key is returned: it names the erased user),
// ErrUnknownKey, ErrSealed.
func (s *Store) OpenRecord(dst []byte, r *kgo.Record) ([]byte, *Key, error) {
	id, sealed, err := RecordKeyID(r)
	if err != nil {
		return nil, nil, err
	}
	if !sealed {
		return r.Value, nil, nil
	}
	k, err := s.Key(id)
	if err != nil {
		return nil, nil, err
	}
	return openWith(dst, r, k)
}

// OpenRecordKey is OpenRecord for a record whose key RecordKeys gave: k,
// or nil, when OpenRecord finds the key (or the reason there is none).
// A key not the record's does not open it (ErrSealed).
func (s *Store) OpenRecordKey(dst []byte, r *kgo.Record, k *Key) ([]byte, *Key, error) {
	if k == nil {
		return s.OpenRecord(dst, r)
	}
	return openWith(dst, r, k)
}

func openWith(dst []byte, r *kgo.Record, k *Key) ([]byte, *Key, error) {
	if k.Shredded() {
		return nil, k, ErrShredded
	}
	plain, err := k.Open(dst, r.Value, r.Key)
	return plain, k, err
}

// SealedIn reports whether a record is sealed (has the envelope header).
func SealedIn(r *kgo.Record) bool {
	for i := range r.Headers {
		if r.Headers[i].Key == HeaderAlg {
			return true
		}
	}
	return false
}
