package ingest

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/userkeys"
)

// sealer gives users their data keys (userkeys.Store).
type sealer interface {
	KeysFor(ctx context.Context, tenant string, users []string, out []*userkeys.Key) ([]*userkeys.Key, error)
}

// sealed is a request's records sealed with their users' keys, less those
// of erased users.
type sealed struct {
	records  []*kgo.Record
	recIndex []int
	erased   []int // items dropped because their user was erased
}

// sealRecords seals every record whose user is known (users[j], "" for a
// dead letter of an item without one, which holds no user's data) with
// that user's data key, asking the key store once for the users whose keys
// are not cached. Records of erased users are dropped.
func sealRecords(ctx context.Context, keys sealer, tenant string, records []*kgo.Record, recIndex []int, users []string) (sealed, error) {
	ks, err := keys.KeysFor(ctx, tenant, users, make([]*userkeys.Key, 0, len(users)))
	if err != nil {
		return sealed{}, err
	}
	// One allocation each for the sealed values and their headers, as for
	// the records themselves.
	size, n := 0, 0
	for j, rec := range records {
		if ks[j] != nil {
			size += len(rec.Value) + userkeys.Overhead
			n++
		}
	}
	out := sealed{records: records[:0], recIndex: recIndex[:0]}
	mem := make([]byte, 0, size)
	hdrs := make([]kgo.RecordHeader, 2*n)
	for j, rec := range records {
		if k := ks[j]; k != nil {
			if k.Shredded() {
				out.erased = append(out.erased, recIndex[j])
				continue
			}
			mem = k.SealRecordInto(rec, mem, hdrs[:2:2])
			hdrs = hdrs[2:]
		}
		out.records = append(out.records, rec)
		out.recIndex = append(out.recIndex, recIndex[j])
	}
	return out, nil
}
