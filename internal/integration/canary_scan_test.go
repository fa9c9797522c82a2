package integration

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/userkeys"
)

// The canary scans of TestErasureShredsEverything: each reads a store
// whole, as an attacker with a copy of it would, and reports where the
// needles (a user's canary values, as bytes) occur.

// scanResult is what one scan read and found.
type scanResult struct {
	what        string
	units       int   // files, tables
	rows, bytes int64 // rows (tables) and bytes read
	hits        map[string][]string
}

func (r scanResult) String() string {
	n := 0
	for _, h := range r.hits {
		n += len(h)
	}
	return fmt.Sprintf("%s: %d %s, %d rows, %d bytes read; %d hits", r.what, r.units, map[bool]string{true: "files", false: "tables"}[r.rows == 0], r.rows, r.bytes, n)
}

func (r *scanResult) check(where string, data []byte, needles map[string][]byte) {
	for name, n := range needles {
		if bytes.Contains(data, n) {
			if r.hits == nil {
				r.hits = map[string][]string{}
			}
			r.hits[name] = append(r.hits[name], where)
		}
	}
}

// stackDir is the local stack's state directory (deploy/stack.sh).
func stackDir(t *testing.T) string {
	if d := os.Getenv("VITALS_STACK_DIR"); d != "" {
		return d
	}
	d, err := filepath.Abs("../../.stack")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// scanFiles reads every regular file under root whose name passes keep.
func scanFiles(t *testing.T, what, root string, keep func(name string) bool, needles map[string][]byte) scanResult {
	t.Helper()
	r := scanResult{what: what}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // a part or segment removed while walking
			}
			return err
		}
		if !d.Type().IsRegular() || !keep(d.Name()) {
			return nil
		}
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		r.units++
		r.bytes += int64(len(data))
		r.check(path, data, needles)
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
	if r.units == 0 {
		t.Fatalf("scan %s: no files: the scan would prove nothing", root)
	}
	return r
}

// scanPostgres reads every row of every table of the database as text
// (bytea in hex, so needles are looked for in hex too).
func scanPostgres(t *testing.T, ctx context.Context, pgURL string, needles map[string][]byte) scanResult {
	t.Helper()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables
		WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	both := map[string][]byte{}
	for name, n := range needles {
		both[name] = n
		both[name+" (hex)"] = []byte(hex.EncodeToString(n))
	}
	r := scanResult{what: "PostgreSQL tables"}
	for _, tbl := range tables {
		rows, err := conn.Query(ctx, "SELECT t::text FROM "+tbl+" t")
		if err != nil {
			t.Fatal(err)
		}
		r.units++
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			r.rows++
			r.bytes += int64(len(s))
			r.check(tbl, []byte(s), both)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// scanClickHouse reads every table of every database but system's (every
// Vitals database on the server: the tests', the _old and _shadow ones)
// as TabSeparated text over HTTP.
func scanClickHouse(t *testing.T, ctx context.Context, ch driver.Conn, needles map[string][]byte) scanResult {
	t.Helper()
	rows, err := ch.Query(ctx, "SELECT database, name FROM system.tables WHERE database NOT IN ('system') AND engine NOT IN ('View', 'MaterializedView')")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var db, name string
		if err := rows.Scan(&db, &name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, fmt.Sprintf("`%s`.`%s`", db, name))
	}
	rows.Close()
	base := "http://127.0.0.1:" + env("VITALS_CLICKHOUSE_HTTP_PORT", "18123") + "/"
	r := scanResult{what: "ClickHouse tables"}
	for _, tbl := range tables {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"?"+url.Values{"query": {"SELECT * FROM " + tbl + " FORMAT TabSeparated"}}.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("read %s: %v %d %s", tbl, err, resp.StatusCode, data)
		}
		r.units++
		r.rows += int64(bytes.Count(data, []byte("\n")))
		r.bytes += int64(len(data))
		r.check(tbl, data, needles)
	}
	return r
}

// textNeedles are the needles that are text.
func textNeedles(needles map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range needles {
		if !strings.HasPrefix(k, "float ") {
			out[k] = v
		}
	}
	return out
}

// readTopic returns every record of topic up to its end offsets.
func (s *stack) readTopic(ctx context.Context, topic string) []*kgo.Record {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var out []*kgo.Record
	if err := eventlog.ReadToEnd(ctx, []kgo.Opt{kgo.SeedBrokers(s.kafka.Brokers...)}, topic, func(r *kgo.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		s.t.Fatal(err)
	}
	return out
}

// userKeys opens the users' data keys in the stack's PostgreSQL, with the
// KEK from the environment, as the roles have them; they close with the
// test.
func (s *stack) userKeys(ctx context.Context) *userkeys.Store {
	s.t.Helper()
	pool := s.pgPool(ctx)
	keys, err := userkeys.Open(ctx, pool, userkeys.DefaultConfig(), s.log)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(keys.Close)
	return keys
}

// openRecords replaces the values of sealed records by their plain values
// (the users' data keys in the stack's PostgreSQL, the KEK from the
// environment, as the roles have them).
func (s *stack) openRecords(ctx context.Context, recs []*kgo.Record) {
	s.t.Helper()
	keys := s.userKeys(ctx)
	if err := keys.LoadRecordKeys(ctx, recs); err != nil {
		s.t.Fatal(err)
	}
	for _, r := range recs {
		plain, _, err := keys.OpenRecord(nil, r)
		if err != nil {
			s.t.Fatalf("open %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
		}
		r.Value = plain
	}
}

// dataKeyOf returns the id of user's data key in the stack's tenant.
func (s *stack) dataKeyOf(ctx context.Context, user string) userkeys.ID {
	s.t.Helper()
	ks, err := s.userKeys(ctx).ForUsers(ctx, s.tenant, []string{user})
	if err != nil || ks[user] == nil {
		s.t.Fatalf("data key of %s: %v", user, err)
	}
	return ks[user].ID
}

// deleteTopics deletes topics a test made beside its stack's.
func (s *stack) deleteTopics(names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...))
	if err != nil {
		return
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).DeleteTopics(ctx, names...); err != nil {
		s.t.Logf("cleanup: delete topics: %v", err)
	}
}
