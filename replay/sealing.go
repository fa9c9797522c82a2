package replay

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/userkeys"
)

// openKeys opens the users' data keys, with which verification opens the
// sealed records it counts, as the projector does.
func (s *session) openKeys(ctx context.Context) (*userkeys.Store, func(), error) {
	pool, err := postgres.Open(ctx, s.cfg.Projector.PostgresURL)
	if err != nil {
		return nil, nil, fmt.Errorf("verify: %w", err)
	}
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	keys, err := userkeys.Open(octx, pool, s.cfg.Projector.UserKeys, s.log)
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("verify: %w", err)
	}
	return keys, func() { keys.Close(); pool.Close() }, nil
}

// openRecord replaces a sealed record's value by its plain value. It
// reports whether the record's key was shredded (its user erased).
func openRecord(keys *userkeys.Store, rec *kgo.Record) (bool, error) {
	if !userkeys.SealedIn(rec) {
		return false, nil
	}
	plain, _, err := keys.OpenRecord(nil, rec)
	if errors.Is(err, userkeys.ErrShredded) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	rec.Value = plain
	return false, nil
}
