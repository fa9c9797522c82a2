package warehouse

import (
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestAgeBand(t *testing.T) {
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		birthYear int
		want      string
	}{
		{0, "unknown"},
		{-5, "unknown"},
		{2027, "unknown"}, // born after at
		{1895, "unknown"}, // 131: implausible
		{1896, "80+"},     // 130
		{2026, "0-17"},
		{2009, "0-17"}, // 17
		{2008, "18-29"},
		{1997, "18-29"}, // 29
		{1996, "30-39"},
		{1987, "30-39"},
		{1986, "40-49"},
		{1947, "70-79"},
		{1946, "80+"},
	}
	for _, tc := range tests {
		if got := AgeBand(tc.birthYear, at); got != tc.want {
			t.Errorf("AgeBand(%d, %s) = %q, want %q", tc.birthYear, at.Format("2006"), got, tc.want)
		}
	}
	// The year is taken in UTC: 23:30 on 31 December in UTC-5 is already
	// next year in UTC.
	ny := time.Date(2025, 12, 31, 23, 30, 0, 0, time.FixedZone("EST", -5*3600))
	if got := AgeBand(2008, ny); got != "18-29" {
		t.Errorf("AgeBand across the UTC new year = %q, want 18-29", got)
	}
}

func TestSQLHelpers(t *testing.T) {
	tests := []struct {
		name         string
		sql          string
		placeholders int
		contains     []string
	}{
		{"UserDimension", UserDimension("vdb"), 1, []string{"vdb.profile_events", "vdb.device_events", "vdb.erased_users", "AS age_band", "AS device_model"}},
		{"NotErased", NotErased("vdb"), 0, []string{"vdb.erased_users"}},
		{"DedupReadings", DedupReadings("vdb", "tenant_id = ? AND user_id = ?"), 2, []string{"FROM vdb.readings", "vdb.erased_users", "GROUP BY tenant_id, user_id, metric, measured_at_ms, event_id"}},
	}
	for _, tc := range tests {
		if n := strings.Count(tc.sql, "?"); n != tc.placeholders {
			t.Errorf("%s: %d placeholders, want %d", tc.name, n, tc.placeholders)
		}
		for _, c := range tc.contains {
			if !strings.Contains(tc.sql, c) {
				t.Errorf("%s: missing %q", tc.name, c)
			}
		}
	}
}

// TestTableDefinitions checks what 18.16 needs of the DDL and what
// analysts rely on: every column has a comment, no DateTime64, no table
// COMMENT clause, and erasure covers every table with user rows.
func TestTableDefinitions(t *testing.T) {
	erasable := map[string]bool{}
	for _, n := range ErasableTables {
		erasable[n] = true
	}
	for _, tb := range tables {
		ddl := tb.createSQL("vdb")
		if strings.Contains(ddl, "DateTime64") || strings.Contains(tb.engine, "COMMENT") {
			t.Errorf("%s: DDL 18.16 cannot run:\n%s", tb.name, ddl)
		}
		hasUser := false
		for _, c := range tb.columns {
			if strings.TrimSpace(c.comment) == "" {
				t.Errorf("%s.%s has no comment", tb.name, c.name)
			}
			hasUser = hasUser || c.name == "user_id"
		}
		if hasUser && tb.name != ErasedUsersTable && !erasable[tb.name] {
			t.Errorf("%s holds user rows but erasure does not delete from it", tb.name)
		}
	}
	if got := quote(`it's a \ test`); got != `'it\'s a \\ test'` {
		t.Errorf("quote = %s", got)
	}
}

// TestViewsFeedTheirTables checks that each rollup view's query yields
// every column of its table (the backfill inserts them by name) and groups
// by the whole key, so one insert block adds one row per key.
func TestViewsFeedTheirTables(t *testing.T) {
	for _, v := range views {
		tb := tableByName(v.table)
		for _, c := range tb.columns {
			if !strings.Contains(v.query, c.name) {
				t.Errorf("view %s does not yield %s.%s", v.name, v.table, c.name)
			}
		}
		if !strings.Contains(v.query, "{src}") || !strings.Contains(v.query, "GROUP BY tenant_id, user_id, metric, day") {
			t.Errorf("view %s: query must read {src} and group by tenant, user, metric and day:\n%s", v.name, v.query)
		}
	}
}

func TestCompression(t *testing.T) {
	for _, tc := range []struct {
		setting, addr string
		lz4, err      bool
	}{
		{"auto", "127.0.0.1:19000", false, false},
		{"", "[::1]:9000", false, false},
		{"auto", "localhost:9000", false, false},
		{"auto", "10.0.0.7:9000", true, false},
		{"auto", "ch.internal:9000", true, false},
		{"lz4", "127.0.0.1:19000", true, false},
		{"none", "10.0.0.7:9000", false, false},
		{"zstd", "127.0.0.1:19000", false, true},
	} {
		c, err := compression(tc.setting, tc.addr)
		if (err != nil) != tc.err {
			t.Errorf("compression(%q, %q) error %v, want error %v", tc.setting, tc.addr, err, tc.err)
			continue
		}
		if got := c != nil; got != tc.lz4 {
			t.Errorf("compression(%q, %q) lz4 = %v, want %v", tc.setting, tc.addr, got, tc.lz4)
		}
	}
}

func TestProtocol(t *testing.T) {
	for setting, want := range map[string]clickhouse.Protocol{"": clickhouse.Native, ProtocolNative: clickhouse.Native, ProtocolHTTP: clickhouse.HTTP} {
		if got, err := protocol(setting); err != nil || got != want {
			t.Errorf("protocol(%q) = %v, %v; want %v", setting, got, err, want)
		}
	}
	if _, err := protocol("https"); err == nil {
		t.Error(`protocol("https") must fail: TLS is not configurable`)
	}
	if _, err := Open(t.Context(), Config{Addr: "127.0.0.1:1", Database: "vitals", Protocol: "grpc"}); err == nil || !strings.Contains(err.Error(), "want native or http") {
		t.Errorf("Open with protocol grpc: %v", err)
	}
}
