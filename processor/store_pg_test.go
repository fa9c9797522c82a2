package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vitalshq/vitals/internal/pgtest"
	"github.com/vitalshq/vitals/processor/rules"
)

// TestLoadProbesEachUser runs against the stack's PostgreSQL (make test sets
// VITALS_PG_URL). A group of 20,000 rows whose statistics are stale, as
// they are while a group grows during a run, must still be read with one
// primary-key probe per requested user: a plan that scans the group made
// each load cost O(users in the group).
func TestLoadProbesEachUser(t *testing.T) {
	ctx, pool := pgtest.Pool(t, time.Minute)
	s := &store{pool: pool, group: fmt.Sprintf("loadplan-%d", time.Now().UnixNano())}
	if err := s.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = pool.Exec(context.WithoutCancel(ctx), `DELETE FROM processor_aggregates WHERE group_id = $1`, s.group)
	}()
	if _, err := pool.Exec(ctx, `INSERT INTO processor_aggregates (group_id, tenant_id, user_id, version, state)
		SELECT $1, 't', 'u' || g, 1, '\x00'::bytea FROM generate_series(1, 20000) g`, s.group); err != nil {
		t.Fatal(err)
	}
	want := &rules.Aggregate{}
	state, err := want.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO processor_aggregates (group_id, tenant_id, user_id, version, state) VALUES ($1, 't', 'real', 1, $2)`, s.group, state); err != nil {
		t.Fatal(err)
	}

	keys := []UserKey{{"t", "real"}, {"t", "absent"}, {"other", "real"}}
	got, err := s.load(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[UserKey{"t", "real"}] == nil {
		t.Fatalf("load returned %d aggregates (%v), want only t/real", len(got), got)
	}

	var plan []struct {
		Plan planNode `json:"Plan"`
	}
	var raw []byte
	if err := pool.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+loadSQL, s.group, []string{"t", "t"}, []string{"real", "absent"}).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
		t.Fatalf("EXPLAIN output %s: %v", raw, err)
	}
	var scans int
	plan[0].Plan.walk(func(n planNode) {
		if n.Relation != "processor_aggregates" {
			return
		}
		scans++
		if !strings.Contains(n.IndexCond, "user_id") {
			t.Errorf("%s of processor_aggregates with index condition %q: reads the whole group, not one row per user\n%s", n.Type, n.IndexCond, raw)
		}
	})
	if scans == 0 {
		t.Fatalf("no scan of processor_aggregates in the plan:\n%s", raw)
	}
}

// planNode is the part of a PostgreSQL JSON plan the test reads.
type planNode struct {
	Type      string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	IndexCond string     `json:"Index Cond"`
	Plans     []planNode `json:"Plans"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}
