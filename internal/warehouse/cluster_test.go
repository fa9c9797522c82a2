package warehouse

import (
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// TestShardingHash checks ShardingHash against cityHash64(tenant, user)
// as ClickHouse 18.16 computed it (SELECT cityHash64('a', 'u1'), ...): a
// row the projector routes itself must land on the shard a Distributed
// insert would pick.
func TestShardingHash(t *testing.T) {
	tests := []struct {
		tenant, user string
		want         uint64
	}{
		{"a", "u1", 7150579072160838297},
		{"default", "fitbit-2022484408", 10834711472028213417},
		{"", "", 857056678345777455},
		{"abc", "defghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz", 5715779506030015775},
	}
	for _, tc := range tests {
		if got := ShardingHash(tc.tenant, tc.user); got != tc.want {
			t.Errorf("ShardingHash(%q, %q) = %d, want %d", tc.tenant, tc.user, got, tc.want)
		}
	}
}

func TestShardOfWeights(t *testing.T) {
	c := &Cluster{Shards: []Shard{{Num: 1, Weight: 1}, {Num: 2, Weight: 3}}}
	c.slots = slots(c.Shards)
	if want := []int{0, 1, 1, 1}; len(c.slots) != 4 || c.slots[0] != want[0] || c.slots[3] != want[3] {
		t.Fatalf("slots = %v, want %v", c.slots, want)
	}
	counts := map[int]int{}
	for i := range 4000 {
		counts[c.ShardOf("t", "user-"+string(rune('a'+i%26))+strings.Repeat("x", i%97))]++
	}
	if counts[1] < 2*counts[0] {
		t.Errorf("a shard of weight 3 got %d rows against %d for weight 1", counts[1], counts[0])
	}
	for i := range 100 {
		u := "u" + strings.Repeat("y", i)
		if got, want := c.ShardOf("t", u), c.slots[ShardingHash("t", u)%4]; got != want {
			t.Fatalf("ShardOf(t, %s) = %d, want slot's shard %d", u, got, want)
		}
	}
}

func TestReplicatedEngine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ENGINE = ReplacingMergeTree()\n\tORDER BY (a)", "ENGINE = ReplicatedReplacingMergeTree('/p/{shard}', '{replica}')\n\tORDER BY (a)"},
		{"ENGINE = SummingMergeTree(readings)\n\tPARTITION BY toYYYYMM(day)", "ENGINE = ReplicatedSummingMergeTree('/p/{shard}', '{replica}', readings)\n\tPARTITION BY toYYYYMM(day)"},
		{"ENGINE = MergeTree()\n\tORDER BY (pause_id, kind)", "ENGINE = ReplicatedMergeTree('/p/{shard}', '{replica}')\n\tORDER BY (pause_id, kind)"},
	}
	for _, tc := range tests {
		got, err := replicatedEngine(tc.in, "/p/{shard}", "{replica}")
		if err != nil || got != tc.want {
			t.Errorf("replicatedEngine(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := replicatedEngine("ENGINE = Log", "/p", "r"); err == nil {
		t.Error("replicatedEngine accepted a Log engine")
	}
	for _, tb := range tables {
		if _, err := replicatedEngine(tb.engine, "/p", "r"); err != nil {
			t.Errorf("table %s: %v", tb.name, err)
		}
	}
}

// TestLocalTables checks what the replicated local tables need on 18.16:
// no column comments (ZooKeeper cannot keep them), every table with a
// local name, and the server-filled columns a retried block must carry.
func TestLocalTables(t *testing.T) {
	for _, tb := range tables {
		lt := tb
		lt.name = Local(tb.name)
		if ddl := localCreateSQL("vdb", lt); strings.Contains(ddl, "COMMENT") {
			t.Errorf("%s: local DDL has a comment:\n%s", tb.name, ddl)
		}
		if tb.name == ReplayPausesTable {
			if Local(tb.name) != tb.name {
				t.Errorf("replay pauses are not sharded, yet Local gives %s", Local(tb.name))
			}
		} else if Local(tb.name) != tb.name+LocalSuffix {
			t.Errorf("Local(%s) = %s", tb.name, Local(tb.name))
		}
	}
	if got := ServerFilledColumns(ReadingsTable); len(got) != 1 || got[0] != "inserted_at" {
		t.Errorf("ServerFilledColumns(readings) = %v", got)
	}
	if got := ServerFilledColumns(ErasedUsersTable); len(got) != 1 || got[0] != "erased_at" {
		t.Errorf("ServerFilledColumns(erased_users) = %v", got)
	}
	if got := PartitionColumn(ReadingsTable); got != "measured_at" {
		t.Errorf("PartitionColumn(readings) = %q", got)
	}
	if got := PartitionColumn(ProfileEventsTable); got != "" {
		t.Errorf("PartitionColumn(profile_events) = %q, want none", got)
	}
}

// TestClusterConnectionsKeepSettings: a cluster's front connection and
// its per-server connections get the protocol and TLS of the
// configuration, as one server does (they once connected in clear over
// the native protocol whatever was set), and a TLS setting without TLS is
// refused for them too.
func TestClusterConnectionsKeepSettings(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Cluster, cfg.TLS, cfg.Protocol, cfg.User = "vitals", true, ProtocolHTTP, "analyst"
	for _, addrs := range [][]string{{"ch1:8443", "ch2:8443"}, {"ch2:8443"}} {
		opts, err := options(cfg, addrs, 4, frontSettings)
		if err != nil {
			t.Fatal(err)
		}
		if opts.TLS == nil || opts.Protocol != clickhouse.HTTP || opts.Auth.Username != "analyst" || opts.MaxOpenConns != 4 {
			t.Errorf("options over %v: TLS %v, protocol %v, user %q, conns %d", addrs, opts.TLS != nil, opts.Protocol, opts.Auth.Username, opts.MaxOpenConns)
		}
	}
	cfg.TLS, cfg.TLSServerName = false, "ch.internal"
	if _, err := options(cfg, []string{"ch1:9000"}, 4, nil); err == nil {
		t.Error("a TLS server name without TLS was accepted")
	}
}
