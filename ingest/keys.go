package ingest

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vitalshq/vitals/internal/credential"
)

// API keys: every gateway belongs to a tenant and authenticates with a key
// of the form vk_<key id>_<secret>, stored hashed in PostgreSQL by package
// credential (which also keeps the analysts' query tokens). The tenant
// always comes from the key, never from a payload.

// Errors of key verification; the HTTP layer maps them to 401 and 403.
var (
	ErrBadKey     = credential.ErrUnknown
	ErrRevokedKey = credential.ErrRevoked
)

// Key is a stored key's public part.
type Key = credential.Credential

// KeyStore keeps API keys in PostgreSQL and caches verifications briefly,
// so that ingest keeps authenticating known gateways through a short
// database outage; a revocation takes effect within the cache TTL.
type KeyStore = credential.Store

// NewKeyStore creates the keys table if needed.
func NewKeyStore(ctx context.Context, pool *pgxpool.Pool, ttl time.Duration) (*KeyStore, error) {
	return credential.NewStore(ctx, pool, credential.GatewayKeys, ttl)
}
