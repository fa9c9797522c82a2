package userkeys

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// LoadRecordKeys loads the keys of a batch's sealed records that are not
// cached, in one round trip. A record whose envelope is damaged is left to
// OpenRecord, which reports it.
func (s *Store) LoadRecordKeys(ctx context.Context, recs []*kgo.Record) error {
	var ids []ID
	for _, r := range recs {
		if id, sealed, err := RecordKeyID(r); sealed && err == nil && s.cache.byID(id) == nil {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return s.ByIDs(ctx, ids)
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
