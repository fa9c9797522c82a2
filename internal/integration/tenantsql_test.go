package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/sample"
	"github.com/vitalshq/vitals/internal/tenantsql"
)

// sqlUser is a tenant's ClickHouse user as vitals sql-users grant made it.
type sqlUser struct {
	name, password, db string
}

// grantSQL runs vitals sql-users grant for tenant against the test's
// database and returns the user it printed.
func (s *stack) grantSQL(tenant string) sqlUser {
	s.t.Helper()
	out, err := s.runVitalsCH("sql-users", "grant", "--tenant", tenant, "--sql-user-networks", "127.0.0.1/32,::1/128")
	if err != nil {
		s.t.Fatalf("vitals sql-users grant --tenant %s: %v\n%s", tenant, err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	u := sqlUser{name: tenantsql.Database(s.wh.Database, tenant), db: tenantsql.Database(s.wh.Database, tenant), password: lines[len(lines)-1]}
	if len(u.password) != 32 {
		s.t.Fatalf("no password in the output of grant:\n%s", out)
	}
	return u
}

// runVitalsCH runs the vitals binary against the test's ClickHouse
// database and the stack's users.d directory.
func (s *stack) runVitalsCH(args ...string) (string, error) {
	s.t.Helper()
	dir := os.Getenv("VITALS_CLICKHOUSE_USERS_DIR")
	if dir == "" {
		s.t.Fatal("VITALS_CLICKHOUSE_USERS_DIR is not set: eval \"$(bash deploy/stack.sh env)\" (make test does)")
	}
	cmd := exec.Command(vitalsBinary(s.t), args...)
	cmd.Env = append(os.Environ(), "VITALS_CLICKHOUSE_ADDR="+s.wh.Addr, "VITALS_CLICKHOUSE_DATABASE="+s.wh.Database,
		"VITALS_CLICKHOUSE_USERS_DIR="+dir, "VITALS_LOG_FORMAT=json")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// clientSQL runs query as u with clickhouse-client over the native
// protocol and returns its output and error.
func (s *stack) clientSQL(u sqlUser, query string) (string, error) {
	host, port, err := net.SplitHostPort(s.wh.Addr)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command("clickhouse-client", "--host", host, "--port", port, "--user", u.name, "--password", u.password,
		"--database", u.db, "-q", query)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// httpSQL runs query as u over ClickHouse's HTTP interface, with extra
// URL parameters, and returns the status and body.
func httpSQL(t *testing.T, u sqlUser, extra url.Values, query string) (int, string) {
	t.Helper()
	addr := os.Getenv("VITALS_CLICKHOUSE_HTTP_ADDR")
	if addr == "" {
		t.Fatal("VITALS_CLICKHOUSE_HTTP_ADDR is not set: eval \"$(bash deploy/stack.sh env)\" (make test does)")
	}
	v := url.Values{"user": {u.name}, "password": {u.password}, "database": {u.db}}
	for k, vs := range extra {
		v[k] = vs
	}
	resp, err := http.Post("http://"+addr+"/?"+v.Encode(), "text/plain", strings.NewReader(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestTenantSQL gives two tenants' analysts direct ClickHouse users with
// vitals sql-users and checks, with clickhouse-client and over the HTTP
// interface, that each reads exactly its own tenant's readings (copied
// before the grant and fed after it) and nothing else: not the shared
// tables (directly, in a subquery, a join, through table functions),
// not the other tenant's database, not other databases' rows through the
// system tables; that it can change nothing; that an erasure reaches its
// copy; and that a revoked user can no longer log in while the pipeline
// goes on.
func TestTenantSQL(t *testing.T) {
	s, ctx := newStackFor(t, 4*time.Minute)
	ingestURL := s.startPipeline(ctx)
	ch := s.openWarehouse(t, ctx)

	tenantA, tenantB := s.tenant, "other.tenant-"+s.id
	keyB := s.newKey(ctx, tenantB)
	users, per := firstReadings(t, 2, 400)
	userA, userB := users[0], users[1]
	post := func(key string, rows []sample.HeartRate) {
		t.Helper()
		var items []wireReading
		for _, r := range rows {
			items = append(items, wire(r))
		}
		var resp ingest.BatchResponse
		if code := postAs(t, key, ingestURL+"/v1/readings", map[string]any{"gateway_id": "gw-sql", "readings": items}, &resp); code != http.StatusOK || resp.Accepted != len(items) {
			t.Fatalf("post: %d, %d of %d accepted", code, resp.Accepted, len(items))
		}
	}
	for _, p := range []struct {
		key string
		r   sample.HeartRate
	}{{s.key, per[userA][0]}, {keyB, per[userB][0]}} {
		var resp ingest.BatchResponse
		ev := map[string]any{"event_id": p.r.DeviceID() + "-paired", "user_id": p.r.UserID(), "device_id": p.r.DeviceID(), "kind": "paired", "occurred_at": "2016-01-01T00:00:00Z"}
		if code := postAs(t, p.key, ingestURL+"/v1/device-events", map[string]any{"gateway_id": "gw-sql", "events": []any{ev}}, &resp); code != http.StatusOK || resp.Accepted != 1 {
			t.Fatalf("pairing: %d", code)
		}
	}
	sharedCount := func(tenant string) uint64 {
		var n uint64
		if err := ch.QueryRow(ctx, fmt.Sprintf("SELECT uniqExact(event_id) FROM %s.readings WHERE tenant_id = ?", s.wh.Database), tenant).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Half of each tenant's readings before the grant (the backfill copies
	// them), half after (the feed does).
	post(s.key, per[userA][:200])
	post(keyB, per[userB][:200])
	eventually(t, 90*time.Second, "the first readings in ClickHouse", func() (bool, string) {
		a, b := sharedCount(tenantA), sharedCount(tenantB)
		return a == 200 && b == 200, fmt.Sprintf("A %d, B %d of 200", a, b)
	})
	a, b := s.grantSQL(tenantA), s.grantSQL(tenantB)
	t.Cleanup(func() {
		for _, tenant := range []string{tenantA, tenantB} {
			if out, err := s.runVitalsCH("sql-users", "revoke", "--tenant", tenant); err != nil {
				t.Logf("cleanup: revoke %s: %v\n%s", tenant, err, out)
			}
		}
	})
	post(s.key, per[userA][200:])
	post(keyB, per[userB][200:])

	// Each reads its own tenant's 400 readings, and only those.
	for _, c := range []struct {
		u      sqlUser
		tenant string
	}{{a, tenantA}, {b, tenantB}} {
		q := "SELECT uniqExact(event_id), uniqExact(tenant_id), any(tenant_id) FROM readings"
		eventually(t, 60*time.Second, c.tenant+"'s copy to hold its readings", func() (bool, string) {
			out, err := s.clientSQL(c.u, q)
			return err == nil && out == "400\t1\t"+c.tenant, fmt.Sprintf("%q %v", out, err)
		})
		if code, body := httpSQL(t, c.u, nil, q); code != http.StatusOK || body != "400\t1\t"+c.tenant {
			t.Errorf("%s over HTTP: %d %q", c.tenant, code, body)
		}
	}

	// What A must not reach, and the error it must get instead: 291 access
	// denied, 164 readonly (which also forbids every table function).
	shared, port := s.wh.Database, strings.Split(s.wh.Addr, ":")[1]
	denied := []struct{ query, code string }{
		{"SELECT count() FROM " + shared + ".readings", "291"},
		{"SELECT count() FROM " + b.db + ".readings", "291"},
		{"SELECT count() FROM " + b.db + ".feed_readings", "291"},
		{"SELECT count() FROM readings WHERE user_id IN (SELECT user_id FROM " + shared + ".readings)", "291"},
		{"SELECT count() FROM readings ANY LEFT JOIN " + shared + ".readings USING event_id", "291"},
		{"SELECT count() FROM readings WHERE user_id GLOBAL IN (SELECT user_id FROM " + b.db + ".readings)", "291"},
		{"DESCRIBE TABLE " + shared + ".readings", "291"},
		{"SELECT count() FROM remote('127.0.0.1:" + port + "', " + shared + ".readings, 'default', '')", "164"},
		{"SELECT count() FROM merge('" + shared + "', '^readings$')", "164"},
		{"SELECT count() FROM url('http://127.0.0.1/', CSV, 'x String')", "164"},
		{"SELECT count() FROM numbers(10)", "164"},
		{"INSERT INTO readings (tenant_id, user_id) VALUES ('" + tenantB + "', 'forged')", "164"},
		{"ALTER TABLE readings DELETE WHERE 1", "164"},
		{"DROP TABLE readings", "164"},
		{"CREATE TABLE x (a UInt8) ENGINE = Memory", "164"},
		{"SET readonly = 0", "164"},
	}
	for _, d := range denied {
		out, err := s.clientSQL(a, d.query)
		if err == nil || !strings.Contains(out, "Code: "+d.code) {
			t.Errorf("clickhouse-client as %s: %s\n  answered %v %q; want code %s", tenantA, d.query, err, out, d.code)
		}
		if code, body := httpSQL(t, a, nil, d.query); code == http.StatusOK || !strings.Contains(body, "Code: "+d.code) {
			t.Errorf("HTTP as %s: %s\n  answered %d %q; want code %s", tenantA, d.query, code, body, d.code)
		}
	}
	// The HTTP interface's own parameters: another database as the
	// session's, readonly lifted, a setting overridden.
	for _, extra := range []url.Values{{"database": {shared}}, {"readonly": {"0"}}, {"max_threads": {"64"}}} {
		if code, body := httpSQL(t, a, extra, "SELECT count() FROM readings"); code == http.StatusOK {
			t.Errorf("HTTP as %s with %v: %d %q", tenantA, extra, code, body)
		}
	}
	// System tables: names, parts, columns and mutations only of A's own
	// database; no query log at all (every 18.16 user could read it).
	for _, q := range []string{
		"SELECT DISTINCT database FROM system.tables", "SELECT name FROM system.databases",
		"SELECT DISTINCT database FROM system.columns", "SELECT DISTINCT database FROM system.parts",
		"SELECT DISTINCT database FROM system.parts_columns", "SELECT DISTINCT database FROM system.mutations",
	} {
		out, err := s.clientSQL(a, q)
		if err != nil {
			t.Errorf("%s: %v %q", q, err, out)
			continue
		}
		for _, db := range strings.Fields(out) {
			if db != a.db && db != "system" && db != "default" {
				t.Errorf("%s as %s lists database %s", q, tenantA, db)
			}
		}
	}
	if out, err := s.clientSQL(a, "SHOW TABLES FROM "+shared); err != nil || out != "" {
		t.Errorf("SHOW TABLES FROM %s as %s: %v %q; want nothing", shared, tenantA, err, out)
	}
	if out, err := s.clientSQL(a, "SELECT count() FROM system.query_log"); err == nil || !strings.Contains(out, "Code: 60") {
		t.Errorf("system.query_log is readable by a tenant's user (drop it and keep the query log off on 18.16): %v %q", err, out)
	}

	// An erasure of A's user reaches A's copy.
	var resp ingest.BatchResponse
	erase := map[string]any{"event_id": userA + "-erase", "user_id": userA, "kind": "erasure_requested", "occurred_at": "2016-12-01T00:00:00Z"}
	if code := postAs(t, s.key, ingestURL+"/v1/profile-events", map[string]any{"gateway_id": "gw-sql", "events": []any{erase}}, &resp); code != http.StatusOK || resp.Accepted != 1 {
		t.Fatalf("erasure: %d", code)
	}
	eventually(t, 90*time.Second, "the erasure to reach "+tenantA+"'s copy", func() (bool, string) {
		out, err := s.clientSQL(a, "SELECT count() FROM readings WHERE user_id = '"+userA+"'")
		return err == nil && out == "0", fmt.Sprintf("%q %v", out, err)
	})

	// Revoked: A's user is gone; the pipeline and B's copy go on.
	if out, err := s.runVitalsCH("sql-users", "revoke", "--tenant", tenantA); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if out, err := s.clientSQL(a, "SELECT 1"); err == nil {
		t.Errorf("a revoked user still logs in: %q", out)
	}
	if code, _ := httpSQL(t, a, nil, "SELECT 1"); code == http.StatusOK {
		t.Error("a revoked user still logs in over HTTP")
	}
	more := per[userB][len(per[userB])-1]
	extra := make([]sample.HeartRate, 10)
	for i := range extra {
		extra[i] = sample.HeartRate{FitbitID: more.FitbitID, Time: more.Time.Add(time.Duration(i+1) * time.Second), Value: 70}
	}
	post(keyB, extra)
	eventually(t, 60*time.Second, "readings posted after the revoke in "+tenantB+"'s copy", func() (bool, string) {
		out, err := s.clientSQL(b, "SELECT uniqExact(event_id) FROM readings")
		return err == nil && out == strconv.Itoa(410), fmt.Sprintf("%q %v", out, err)
	})
}
