package audit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// testStore is a Store in a PostgreSQL schema of its own (the local
// stack's, `make up`), dropped at the end: the tests break chains on
// purpose, and the real trail must not inherit them.
func testStore(t testing.TB) (*Store, *pgxpool.Pool) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL (make up)")
	}
	url := os.Getenv("VITALS_PG_URL")
	if url == "" {
		url = "postgres://vitals:vitals@127.0.0.1:15432/vitals?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	schema := fmt.Sprintf("audit_test_%d", time.Now().UnixNano())
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("PostgreSQL is unreachable (start the stack with `make up`): %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, url); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			c.Close(ctx)
		}
	})
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := NewStore(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	return s, pool
}

// appendMany appends n records to each tenant from concurrent goroutines.
func appendMany(t *testing.T, s *Store, tenants []string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(tenants)*n)
	for _, tenant := range tenants {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rows := int64(i)
				_, err := s.Append(context.Background(), Record{Tenant: tenant, Actor: "0123456789abcdef", Action: "GET /v1/percentiles",
					Target: fmt.Sprintf("/v1/percentiles?user=u-%d", i%3), User: fmt.Sprintf("u-%d", i%3), Metric: "heart_rate",
					Rows: &rows, Status: 200})
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func verify(t *testing.T, s *Store, tenant string) Chain {
	t.Helper()
	c, err := s.Verify(context.Background(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tamper runs stmt with the append-only trigger disabled inside one
// transaction, as someone with the table owner's rights could.
func tamper(t *testing.T, pool *pgxpool.Pool, stmt string, args ...any) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "ALTER TABLE access_audit DISABLE TRIGGER access_audit_no_change"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, stmt, args...); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "ALTER TABLE access_audit ENABLE TRIGGER access_audit_no_change")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestChainsStayIntactUnderConcurrentAppends(t *testing.T) {
	s, _ := testStore(t)
	appendMany(t, s, []string{"acme", "globex", ""}, 40)
	for _, tenant := range []string{"acme", "globex", ""} {
		c := verify(t, s, tenant)
		if !c.OK() || c.Records != 40 || c.HeadSeq != 40 {
			t.Errorf("tenant %q: %d records, head %d, problems %v", tenant, c.Records, c.HeadSeq, c.Problems)
		}
	}
	got, err := s.Tenants(context.Background())
	if err != nil || strings.Join(got, ",") != ",acme,globex" {
		t.Errorf("tenants = %q, %v", got, err)
	}
	recs, err := s.List(context.Background(), Filter{Tenant: "acme", User: "u-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 13 { // i%3 == 1 for i in [0, 40)
		t.Errorf("listed %d accesses to u-1, want 13", len(recs))
	}
	for i, r := range recs {
		if r.User != "u-1" || (i > 0 && r.Seq <= recs[i-1].Seq) {
			t.Errorf("listing out of order or of another user: %+v", r)
		}
	}
}

func TestTheTableRefusesChanges(t *testing.T) {
	s, pool := testStore(t)
	appendMany(t, s, []string{"acme"}, 2)
	for _, stmt := range []string{"UPDATE access_audit SET rows = 0", "DELETE FROM access_audit", "TRUNCATE access_audit"} {
		if _, err := pool.Exec(context.Background(), stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want the append-only refusal", stmt, err)
		}
	}
}

func TestVerifyFindsAnEditedRecord(t *testing.T) {
	s, pool := testStore(t)
	appendMany(t, s, []string{"acme"}, 10)
	if c := verify(t, s, "acme"); !c.OK() {
		t.Fatalf("fresh chain broken: %v", c.Problems)
	}
	// Someone hides whose data was read: the record now names another person.
	tamper(t, pool, "UPDATE access_audit SET user_id = 'someone-else' WHERE tenant_id = 'acme' AND seq = 5")
	c := verify(t, s, "acme")
	if c.OK() || c.Problems[0].Seq != 5 || !strings.Contains(c.Problems[0].Reason, "contents changed") {
		t.Fatalf("an edited record went unnoticed: %v", c.Problems)
	}
}

func TestVerifyFindsRemovedAndRehashedRecords(t *testing.T) {
	s, pool := testStore(t)
	appendMany(t, s, []string{"acme", "globex"}, 6)
	// A record removed from the middle leaves a gap and a broken link.
	tamper(t, pool, "DELETE FROM access_audit WHERE tenant_id = 'acme' AND seq = 3")
	if c := verify(t, s, "acme"); c.OK() || c.Problems[0].Seq != 4 || !strings.Contains(c.Problems[0].Reason, "missing") {
		t.Errorf("a removed record went unnoticed: %v", c.Problems)
	}
	// The newest record removed: the head still names it.
	tamper(t, pool, "DELETE FROM access_audit WHERE tenant_id = 'globex' AND seq = 6")
	if c := verify(t, s, "globex"); c.OK() || !strings.Contains(c.Problems[0].Reason, "head") {
		t.Errorf("a removed last record went unnoticed: %v", c.Problems)
	}
	// An edit whose hash is recomputed still breaks the next link.
	tamper(t, pool, "UPDATE access_audit SET user_id = 'u-9' WHERE tenant_id = 'acme' AND seq = 1")
	var r Record
	rows, _ := pool.Query(context.Background(), `SELECT `+columns+` FROM access_audit WHERE tenant_id = 'acme' AND seq = 1`)
	r, err := pgx.CollectExactlyOneRow(rows, scan)
	if err != nil {
		t.Fatal(err)
	}
	tamper(t, pool, "UPDATE access_audit SET hash = $1 WHERE tenant_id = 'acme' AND seq = 1", r.ComputeHash())
	c := verify(t, s, "acme")
	if c.OK() || c.Problems[0].Seq != 2 || !strings.Contains(c.Problems[0].Reason, "prev_hash") {
		t.Errorf("a rehashed record went unnoticed: %v", c.Problems)
	}
}

// BenchmarkAppend is the time one audited request spends writing its
// record (one transaction, the tenant's head row locked), appending to
// one chain from GOMAXPROCS goroutines.
func BenchmarkAppend(b *testing.B) {
	s, _ := testStore(b)
	rows := int64(100)
	r := Record{Tenant: "acme", Actor: "0123456789abcdef", Action: "GET /v1/percentiles", Target: "/v1/percentiles?user=u-1&metric=heart_rate",
		User: "u-1", Metric: "heart_rate", Rows: &rows, Status: 200}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Append(context.Background(), r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
