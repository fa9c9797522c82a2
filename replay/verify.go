package replay

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/projector"
)

// Check compares one table partition with its topic partition: the
// records up to the caught-up end offset (leaving out erased users) and
// the rows stored from them, by count and by the sum of
// murmurHash2_64(event_id), which ClickHouse computes on its side and
// murmur64 here.
type Check struct {
	Table     string
	Partition int32
	Records   uint64 // records in the log
	Rows      uint64 // rows in the table
	LogSum    uint64
	TableSum  uint64
}

// OK reports whether the table matches the log.
func (c Check) OK() bool { return c.Records == c.Rows && c.LogSum == c.TableSum }

// String describes the comparison, for logs and errors.
func (c Check) String() string {
	return fmt.Sprintf("%s p%d: log %d records (hash sum %d), table %d rows (hash sum %d)", c.Table, c.Partition, c.Records, c.LogSum, c.Rows, c.TableSum)
}

// verify compares the shadow database db with the log from its start up
// to end, table partition by table partition, and the rollup's count and
// sum with the readings table's.
func (s *session) verify(ctx context.Context, db string, _ positions, end positions) ([]Check, error) {
	started := time.Now()
	// On a cluster, read only once every replica holds every insert.
	if err := warehouse.SyncReplicas(ctx, s.ch, db, append(slices.Clone(s.tables), warehouse.ErasedUsersTable)...); err != nil {
		return nil, err
	}
	var checks []Check
	var erased map[[2]string]bool
	// The shadow projector is still running: read the erasures before and
	// after the table sums, and again if they changed in between.
	for attempt := 0; ; attempt++ {
		before, err := s.erasedUsers(ctx, db)
		if err != nil {
			return nil, err
		}
		if checks, err = s.tableSums(ctx, db, end); err != nil {
			return nil, err
		}
		if erased, err = s.erasedUsers(ctx, db); err != nil {
			return nil, err
		}
		if len(erased) == len(before) || attempt == 5 {
			break
		}
	}
	if err := s.logSums(ctx, end, erased, checks); err != nil {
		return nil, err
	}
	var bad []string
	for _, c := range checks {
		if !c.OK() {
			bad = append(bad, c.String())
		}
	}
	if len(bad) > 0 {
		return checks, fmt.Errorf("verification failed, not swapping (the shadow stays in %s): %s", db, strings.Join(bad, "; "))
	}
	if err := s.verifyRollup(ctx, db); err != nil {
		return checks, err
	}
	s.log.Info().Int("partitions", len(checks)).Dur("took", time.Since(started)).Msg("verified the shadow tables against the log: counts and event-id hash sums match")
	return checks, nil
}

func (s *session) erasedUsers(ctx context.Context, db string) (map[[2]string]bool, error) {
	qctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	rows, err := s.ch.Query(qctx, fmt.Sprintf("SELECT DISTINCT tenant_id, user_id FROM %s.%s", db, warehouse.ErasedUsersTable))
	if err != nil {
		return nil, fmt.Errorf("read erased users: %w", err)
	}
	defer rows.Close()
	out := map[[2]string]bool{}
	for rows.Next() {
		var t, u string
		if err := rows.Scan(&t, &u); err != nil {
			return nil, fmt.Errorf("read erased users: %w", err)
		}
		out[[2]string{t, u}] = true
	}
	return out, rows.Err()
}

// tableSums reads each selected table's count and hash sum per partition
// below the end offsets.
func (s *session) tableSums(ctx context.Context, db string, end positions) ([]Check, error) {
	var out []Check
	for _, t := range s.tables {
		topic, ok := s.topicOf[t]
		if !ok || t == warehouse.RevisionsTable {
			// A revision record makes a retraction and a new version, or
			// only one of them: the rows are not the records. The rollup
			// check below covers them.
			continue
		}
		filter := " AND " + warehouse.NotErased(db)
		if t == warehouse.ErasedUsersTable {
			filter = ""
		}
		q := fmt.Sprintf("SELECT count(), sum(murmurHash2_64(event_id)) FROM %s.%s WHERE log_partition = ? AND log_offset >= 0 AND log_offset < ?%s", db, t, filter)
		for _, part := range end.sortedParts(topic) {
			c := Check{Table: t, Partition: part}
			qctx, cancel := context.WithTimeout(ctx, opTimeout)
			err := s.ch.QueryRow(qctx, q, part, end[topic][part]).Scan(&c.Rows, &c.TableSum)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("sum %s.%s partition %d: %w", db, t, part, err)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// logSums reads every selected topic from its start to end and adds each
// record's count and hash into checks.
func (s *session) logSums(ctx context.Context, end positions, erased map[[2]string]bool, checks []Check) error {
	actx, cancel := context.WithTimeout(ctx, opTimeout)
	start, err := startOffsets(actx, s.adm, time.Time{}, s.topics()...)
	cancel()
	if err != nil {
		return err
	}
	index := map[string]map[int32]*Check{}
	consume := map[string]map[int32]kgo.Offset{}
	left := 0
	for i := range checks {
		c := &checks[i]
		topic := s.topicOf[c.Table]
		if index[topic] == nil {
			index[topic] = map[int32]*Check{}
		}
		index[topic][c.Partition] = c
		if from, to := start[topic][c.Partition], end[topic][c.Partition]; to > from {
			if consume[topic] == nil {
				consume[topic] = map[int32]kgo.Offset{}
			}
			consume[topic][c.Partition] = kgo.NewOffset().At(from)
			left++
		}
	}
	if left == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(s.cfg.Kafka.ClientOpts(s.log), kgo.ConsumePartitions(consume), kgo.FetchMaxBytes(32<<20))...)
	if err != nil {
		return fmt.Errorf("verify: kafka client: %w", err)
	}
	defer cl.Close()
	identify := projector.Identifier(s.cfg.Kafka.Topics)
	keys, closeKeys, err := s.openKeys(ctx)
	if err != nil {
		return err
	}
	defer closeKeys()
	finished := map[string]map[int32]bool{}
	for left > 0 {
		pctx, cancel := context.WithTimeout(ctx, opTimeout)
		fetches := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fetches.Err0(); err != nil {
			return fmt.Errorf("verify: read the log: %w", err)
		}
		lctx, cancel := context.WithTimeout(ctx, opTimeout)
		err := keys.LoadRecordKeys(lctx, fetches.Records())
		cancel()
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			stop := end[rec.Topic][rec.Partition]
			if rec.Offset >= stop || finished[rec.Topic][rec.Partition] {
				return
			}
			shredded, err := openRecord(keys, rec)
			var id projector.Identity
			ok := true
			if err == nil && !shredded {
				id, ok, err = identify(rec)
			}
			c := index[rec.Topic][rec.Partition]
			switch {
			case shredded:
				// The projector leaves out records of erased users whose
				// key is shredded, and so does the count.
			case !ok || c == nil:
			case err != nil:
				// The projector skips undecodable records too.
				s.log.Warn().Err(err).Msg("verify: undecodable record left out, as the projector does")
			case c.Table != warehouse.ErasedUsersTable && erased[[2]string{id.Tenant, id.User}]:
			default:
				c.Records++
				c.LogSum += murmur64([]byte(id.EventID))
			}
			if rec.Offset >= stop-1 {
				if finished[rec.Topic] == nil {
					finished[rec.Topic] = map[int32]bool{}
				}
				finished[rec.Topic][rec.Partition] = true
				left--
			}
		})
	}
	return nil
}

// verifyRollup checks that both rollups count and sum exactly the rows of
// the readings table. The shadow projector is still inserting, and an
// insert reaches the table and the rollup one after the other, so it
// compares a few times before calling a difference real.
func (s *session) verifyRollup(ctx context.Context, db string) error {
	if _, ok := s.topicOf[warehouse.ReadingsTable]; !ok {
		return nil
	}
	type total struct {
		n   uint64
		sum float64
	}
	read := func(q string) (total, error) {
		qctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		var t total
		if err := s.ch.QueryRow(qctx, q).Scan(&t.n, &t.sum); err != nil {
			return t, fmt.Errorf("%s: %w", q, err)
		}
		return t, nil
	}
	var raw, rollup, values total
	same := func(a, b total) bool {
		return a.n == b.n && math.Abs(a.sum-b.sum) <= 1e-9*math.Max(1, math.Abs(a.sum))
	}
	for attempt := 0; attempt < 20; attempt++ {
		var err error
		if raw, err = read(fmt.Sprintf(`SELECT toUInt64(sum(n)), sum(v) FROM (
				SELECT toInt64(count()) AS n, sum(value) AS v FROM %[1]s.%[2]s WHERE %[4]s
				UNION ALL
				SELECT sum(toInt64(sign)) AS n, sum(value * sign) AS v FROM %[1]s.%[3]s WHERE %[4]s)`,
			db, warehouse.ReadingsTable, warehouse.RevisionsTable, warehouse.NotErased(db))); err != nil {
			return err
		}
		if rollup, err = read(fmt.Sprintf(`SELECT toUInt64(sum(n)), sum(v) FROM (
				SELECT toInt64(countMerge(readings)) AS n, sumMerge(sum_value) AS v FROM %[1]s.%[2]s WHERE %[4]s
				UNION ALL
				SELECT sum(readings) AS n, sum(sum_value) AS v FROM %[1]s.%[3]s WHERE %[4]s)`,
			db, warehouse.DailyRollupTable, warehouse.DailyRevisionsTable, warehouse.NotErased(db))); err != nil {
			return err
		}
		if values, err = read(fmt.Sprintf("SELECT toUInt64(sum(readings)), sum(value * readings) FROM %s.%s WHERE %s", db, warehouse.ValuesRollupTable, warehouse.NotErased(db))); err != nil {
			return err
		}
		if same(raw, rollup) && same(raw, values) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("verification failed, not swapping: %s holds %d readings (sum %g) but its rollup %d (sum %g) and its value rollup %d (sum %g)",
		db, raw.n, raw.sum, rollup.n, rollup.sum, values.n, values.sum)
}

// murmur64 is ClickHouse's murmurHash2_64: MurmurHash64A with seed 0.
func murmur64(data []byte) uint64 {
	const m = 0xc6a4a7935bd1e995
	const r = 47
	h := uint64(len(data)) * m
	for ; len(data) >= 8; data = data[8:] {
		k := binary.LittleEndian.Uint64(data)
		k *= m
		k ^= k >> r
		k *= m
		h ^= k
		h *= m
	}
	if n := len(data); n > 0 {
		for i := n - 1; i >= 0; i-- {
			h ^= uint64(data[i]) << (8 * i)
		}
		h *= m
	}
	h ^= h >> r
	h *= m
	h ^= h >> r
	return h
}
