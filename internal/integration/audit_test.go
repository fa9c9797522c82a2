package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vitalshq/vitals/internal/audit"
	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/sample/sampletest"
)

// runVitals runs the vitals binary with the stack's PostgreSQL and returns
// its output and error.
func (s *stack) runVitals(args ...string) (string, error) {
	s.t.Helper()
	cmd := exec.Command(vitalsBinary(s.t), args...)
	cmd.Env = append(os.Environ(), "VITALS_PG_URL="+s.pgURL, "VITALS_LOG_FORMAT=json")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// askQuery GETs path with token and returns the status and body.
func askQuery(t *testing.T, base, token, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestAccessAuditTrail reads a person's data through the query API and
// checks the trail in PostgreSQL through the vitals command: the access is
// listed for that person with the rows it returned, the denied requests
// (a revoked token, none at all) are recorded too, the chain verifies,
// an edited record makes `vitals audit verify` fail, and while the trail
// cannot be written the data is not served.
func TestAccessAuditTrail(t *testing.T) {
	s, ctx := newStackFor(t, 4*time.Minute)
	ingestURL := s.startPipeline(ctx)
	queryURL := s.startQuery(ctx)

	all := sampletest.HeartRates(t)
	rows := all[:300] // one user's first readings
	user := rows[0].UserID()
	s.pairDevices(ingestURL, rows[0])
	s.postReadings(ingestURL, "gw-audit", rows, 300)
	from, to := rows[0].Time.Truncate(24*time.Hour), rows[0].Time.Truncate(24*time.Hour).Add(24*time.Hour)
	expectPercentiles(t, queryURL, user, from, to, valuesOf(rows), []float64{50}, 90*time.Second)

	// The access to audit, then two refusals.
	path := "/v1/users/" + url.PathEscape(user) + "/percentiles?" + url.Values{"metric": {"heart_rate"},
		"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}.Encode()
	if code, body := askQuery(t, queryURL, s.queryToken, path); code != http.StatusOK || !strings.Contains(body, `"count":300`) {
		t.Fatalf("percentiles: %d %s", code, body)
	}
	revoked := s.newCredential(ctx, credential.AnalystTokens, s.tenant)
	s.revokeAnalystToken(ctx, revoked)
	if code, _ := askQuery(t, queryURL, revoked, path); code != http.StatusForbidden {
		t.Fatalf("revoked token: %d", code)
	}
	if code, _ := askQuery(t, queryURL, "", path); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}

	out, err := s.runVitals("audit", "--tenant", s.tenant, "--user", user, "--json")
	if err != nil {
		t.Fatalf("vitals audit: %v\n%s", err, out)
	}
	var recs []audit.Record
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("vitals audit --json line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	var served, denied *audit.Record
	for i, r := range recs {
		if r.User != user || r.Tenant != s.tenant {
			t.Errorf("listed another person's access: %+v", r)
		}
		if r.Action == "GET /v1/users/{user}/percentiles" && r.Status == 200 && r.Rows != nil && *r.Rows == 300 && r.From != nil && r.From.Equal(from) {
			served = &recs[i]
		}
		if r.Status == 403 && r.Outcome == audit.OutcomeDenied && r.Code == "token_revoked" {
			denied = &recs[i]
		}
	}
	if served == nil || denied == nil {
		t.Fatalf("the trail lacks the access (%v) or the revoked token's attempt (%v):\n%s", served != nil, denied != nil, out)
	}
	if strings.Contains(out, `"value"`) {
		t.Errorf("the trail holds values: %s", out)
	}
	checkExportAudited(t, s, user)
	if out, err := s.runVitals("audit", "--unidentified", "--json", "--limit", "50"); err != nil || !strings.Contains(out, `"status":401`) {
		t.Errorf("the request without a token is not in the unidentified callers' chain: %v\n%s", err, out)
	}
	if out, err := s.runVitals("audit", "verify", "--tenant", s.tenant); err != nil || !strings.Contains(out, "intact") {
		t.Fatalf("vitals audit verify of an untouched chain: %v\n%s", err, out)
	}

	// Someone hides the access: the record now names another person.
	// The check fails; the record is restored so the stack's trail stays
	// intact for later runs.
	s.editAuditRecord(ctx, served.Seq, "someone-else")
	out, err = s.runVitals("audit", "verify", "--tenant", s.tenant)
	if err == nil || !strings.Contains(out, "BROKEN") || !strings.Contains(out, "contents changed") {
		t.Errorf("vitals audit verify after an edit: err %v\n%s", err, out)
	}
	s.editAuditRecord(ctx, served.Seq, user)
	if out, err := s.runVitals("audit", "verify", "--tenant", s.tenant); err != nil {
		t.Fatalf("vitals audit verify after the restore: %v\n%s", err, out)
	}

	// While the tenant's chain cannot be appended to (its head is locked
	// past the 5 s the service waits), the data is not served.
	pool := s.pgPool(ctx)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM access_audit_heads WHERE tenant_id = $1 FOR UPDATE`, s.tenant); err != nil {
		t.Fatal(err)
	}
	code, body := askQuery(t, queryURL, s.queryToken, path)
	_ = tx.Rollback(ctx)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "audit_unavailable") || strings.Contains(body, "percentiles\"") {
		t.Fatalf("with the trail blocked: %d %s", code, body)
	}
	if code, _ := askQuery(t, queryURL, s.queryToken, path); code != http.StatusOK {
		t.Fatalf("after the trail is back: %d", code)
	}
}

// revokeAnalystToken revokes a full analyst token in PostgreSQL.
func (s *stack) revokeAnalystToken(ctx context.Context, full string) {
	s.t.Helper()
	pool := s.pgPool(ctx)
	store, err := credential.NewStore(ctx, pool, credential.AnalystTokens, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	id := strings.Split(full, "_")[1]
	if ok, err := store.Revoke(ctx, id); err != nil || !ok {
		s.t.Fatalf("revoke %s: %v %v", id, ok, err)
	}
}

// editAuditRecord sets the user of the test tenant's record seq, with the
// append-only trigger disabled inside the transaction (as the table's
// owner could).
func (s *stack) editAuditRecord(ctx context.Context, seq int64, user string) {
	s.t.Helper()
	conn, err := pgx.Connect(ctx, s.pgURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, q := range []string{`ALTER TABLE access_audit DISABLE TRIGGER access_audit_no_change`,
			`UPDATE access_audit SET user_id = $2 WHERE tenant_id = $1 AND seq = $3`,
			`ALTER TABLE access_audit ENABLE TRIGGER access_audit_no_change`} {
			var args []any
			if strings.HasPrefix(q, "UPDATE") {
				args = []any{s.tenant, user, seq}
			}
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.t.Fatal(err)
	}
}

// checkExportAudited exports the user with `vitals export` and requires
// the export in the trail, with the number of resources it handed out;
// with the trail out of reach it writes nothing.
func checkExportAudited(t *testing.T, s *stack, user string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "bundle.json")
	out, err := s.runVitals("export", "--tenant", s.tenant, "--user", user, "--out", file,
		"--clickhouse-addr", s.wh.Addr, "--clickhouse-database", s.wh.Database,
		"--pg-url", "postgres://vitals:vitals@127.0.0.1:1/vitals?sslmode=disable&connect_timeout=2")
	if _, serr := os.Stat(file); err == nil || !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("vitals export without the audit trail: err %v, file %v\n%s", err, serr, out)
	}
	out, err = s.runVitals("export", "--tenant", s.tenant, "--user", user, "--out", file,
		"--clickhouse-addr", s.wh.Addr, "--clickhouse-database", s.wh.Database)
	if err != nil {
		t.Fatalf("vitals export: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []json.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(raw, &b); err != nil || len(b.Entry) < 300 {
		t.Fatalf("export: %d resources, want the 300 readings and more (%v)", len(b.Entry), err)
	}
	out, err = s.runVitals("audit", "--tenant", s.tenant, "--user", user, "--json")
	if err != nil {
		t.Fatalf("vitals audit: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("vitals audit --json line %q: %v", line, err)
		}
		if r.Action == "export" && r.User == user && r.Rows != nil && *r.Rows == int64(len(b.Entry)) && strings.HasPrefix(r.Actor, "cmd:") {
			return
		}
	}
	t.Fatalf("the export of %d resources is not in the trail:\n%s", len(b.Entry), out)
}
