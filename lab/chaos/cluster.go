package chaos

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/queryclient"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// Chaos on the cluster stack (deploy/cluster.sh)
//
// The cluster plan adds two faults of the distributed engines to the
// kills of the roles: the broker leading partition 0 of the raw readings
// topic is killed with SIGKILL and started again later (the producers and
// consumers move to the new leader; with min.insync.replicas 2 of 3 no
// acknowledged write is lost), and one ClickHouse replica, the first of
// shard 2 (the one the projector writes shard 2 to and Distributed reads
// prefer), is stopped and started again. While the replica is down the
// query service must keep answering: a prober asks it twice a second
// throughout the run, and a query started while the replica was down that
// fails fails the run.

// ClusterShort is the plan of the CI cluster test: 60 s, six kills of the
// roles, the partition leader killed for 12 s, a ClickHouse replica
// stopped for 20 s.
func ClusterShort() Plan {
	return Plan{Duration: 60 * time.Second, Kills: 6, LeaderKill: 12 * time.Second,
		ReplicaStop: 20 * time.Second, Replica: "clickhouse-s2r1"}
}

// leaderNode returns the cluster node (kafka-<id>) leading partition 0 of
// topic: deploy/cluster.sh numbers its nodes by their node.id.
func leaderNode(k eventlog.Config, topic string) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
		if err != nil {
			return "", err
		}
		defer cl.Close()
		md, err := kadm.NewClient(cl).Metadata(ctx, topic)
		if err != nil {
			return "", fmt.Errorf("leader of %s/0: %w", topic, err)
		}
		p, ok := md.Topics[topic].Partitions[0]
		if !ok || p.Leader < 0 {
			return "", fmt.Errorf("partition %s/0 has no leader", topic)
		}
		return "kafka-" + strconv.Itoa(int(p.Leader)), nil
	}
}

// probe is one query the prober made.
type probe struct {
	at   time.Time
	took time.Duration
	err  string
}

// prober asks the query service for the tenant's heart-rate distribution
// and overview every interval until ctx ends.
type prober struct {
	mu     sync.Mutex
	probes []probe
}

func (p *prober) run(ctx context.Context, base, token string, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	started := time.Now()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		v := url.Values{"metric": {"heart_rate"}}
		sub := "overview"
		if i%2 == 0 {
			sub = "distribution"
			v.Set("from", started.Add(-time.Hour).UTC().Format(time.RFC3339))
			v.Set("to", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		}
		path, err := queryclient.Path(sub, v)
		at := time.Now()
		if err == nil {
			_, err = queryclient.Get(ctx, base+path, token, 10*time.Second)
		}
		if ctx.Err() != nil {
			return
		}
		pr := probe{at: at, took: time.Since(at)}
		if err != nil {
			pr.err = err.Error()
		}
		p.mu.Lock()
		p.probes = append(p.probes, pr)
		p.mu.Unlock()
	}
}

// during counts the probes started in [from, to) and returns the
// failures' errors.
func (p *prober) during(from, to time.Time) (n int, failed []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.probes {
		if pr.at.Before(from) || !pr.at.Before(to) {
			continue
		}
		n++
		if pr.err != "" {
			failed = append(failed, pr.at.Format("15:04:05.000")+" "+pr.err)
		}
	}
	return n, failed
}

// printQueries writes the prober's results over the run and during each
// fault, and returns an error if a query started while the replica was
// down failed. The replica counts as down from 2 s after its stop ended
// until its start began.
func (p *prober) print(w io.Writer, faults []Fault, replica string) error {
	p.mu.Lock()
	var first, last time.Time
	if len(p.probes) > 0 {
		first, last = p.probes[0].at, p.probes[len(p.probes)-1].at.Add(time.Nanosecond)
	}
	var took []time.Duration
	for _, pr := range p.probes {
		took = append(took, pr.took)
	}
	p.mu.Unlock()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	n, failed := p.during(first, last)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "queries (query service, GET /v1/distribution and /v1/overview)\tasked\tfailed")
	fmt.Fprintf(tw, "whole run (p50 %s, max %s)\t%d\t%d\n", pct(took, 50), pct(took, 100), n, len(failed))
	var err error
	for _, f := range faults {
		if f.Start.IsZero() || f.End.Sub(f.Start) < time.Second {
			continue // not injected, or a kill: over at once
		}
		from, to := f.Start, f.End
		if replica != "" && strings.HasPrefix(f.Name, replica+" stopped") && !f.Down.IsZero() {
			from, to = f.Down.Add(2*time.Second), f.Up
		}
		fn, ff := p.during(from, to)
		fmt.Fprintf(tw, "during %s\t%d\t%d\n", f.Name, fn, len(ff))
		if replica != "" && strings.HasPrefix(f.Name, replica+" stopped") {
			if fn == 0 {
				err = fmt.Errorf("chaos: no query was asked while %s was down", replica)
			} else if len(ff) > 0 {
				err = fmt.Errorf("chaos: %d of %d queries failed while %s was down: %s", len(ff), fn, replica, strings.Join(ff, "; "))
			}
		}
	}
	tw.Flush()
	return err
}

func pct(d []time.Duration, p int) string {
	if len(d) == 0 {
		return "-"
	}
	return d[min(len(d)-1, len(d)*p/100)].Round(time.Millisecond).String()
}

// printReplicas writes each server's row counts of the run's readings and
// daily rollup, and fails if two replicas of a shard disagree once they
// have fetched everything (SYSTEM SYNC REPLICA).
func printReplicas(ctx context.Context, w io.Writer, wh warehouse.Config) error {
	conn, err := warehouse.Open(ctx, wh)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := warehouse.ClusterOf(conn)
	if c == nil {
		return nil
	}
	tables := []string{warehouse.ReadingsTable, warehouse.DailyRollupTable, warehouse.RejectedTable}
	if err := warehouse.SyncReplicas(ctx, conn, wh.Database, tables...); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "shard\treplica\treadings rows\trollup readings\trejected rows")
	var bad []string
	for _, s := range c.Shards {
		var first string
		for _, addr := range s.Replicas {
			sc, err := c.Server(addr)
			if err != nil {
				return err
			}
			var raw, rolled, rej uint64
			q := fmt.Sprintf(`SELECT (SELECT count() FROM %[1]s.%[2]s), (SELECT countMerge(readings) FROM %[1]s.%[3]s), (SELECT count() FROM %[1]s.%[4]s)`,
				wh.Database, warehouse.Local(tables[0]), warehouse.Local(tables[1]), warehouse.Local(tables[2]))
			if err := sc.QueryRow(ctx, q).Scan(&raw, &rolled, &rej); err != nil {
				return fmt.Errorf("row counts on %s: %w", addr, err)
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\n", s.Num, addr, raw, rolled, rej)
			got := fmt.Sprint(raw, rolled, rej)
			if first == "" {
				first = got
			} else if got != first {
				bad = append(bad, fmt.Sprintf("shard %d: %s has %s, the first replica %s", s.Num, addr, got, first))
			}
		}
	}
	tw.Flush()
	if len(bad) > 0 {
		return fmt.Errorf("chaos: replicas disagree: %s", strings.Join(bad, "; "))
	}
	return nil
}
