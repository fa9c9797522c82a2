package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/queryclient"
	"github.com/vitalshq/vitals/internal/quota"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/lab/loadgen"
	"github.com/vitalshq/vitals/query"
)

// Query benchmark data: rows readings of one metric spread over users and
// --bench-days days from benchStart, generated inside ClickHouse (INSERT ...
// SELECT from numbers()) so that 100 million rows take minutes, not hours.
// Row n belongs to user n % users and is its (n / users)-th reading, so
// the first k*users rows are the first k readings of every user: a prefix
// of the table is a time range, which is how PostgreSQL gets an equal
// subset. Values are whole beats per minute, deterministic, with a
// per-user offset so users' means differ.
const (
	benchTenant   = "bench"
	benchStartMS  = int64(1451606400000) // 2016-01-01T00:00:00Z
	benchPGTables = "bench_query_readings, bench_query_users"
)

// benchQuerySettings are bench query's own flags.
type benchQuerySettings struct {
	rows, users, pgRows, runs, days int
	database                        string
	keep, skipPG                    bool
}

// benchQuery measures the query API's latency over generated readings in
// a database of their own (dropped at the end unless --bench-keep), and
// the seeds' cohort statistics in PostgreSQL over an equal subset.
func benchQuery(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := cmdline.NewFlags("vitals-lab bench query")
	s.KafkaFlags(fs)
	s.PostgresFlags(fs)
	s.ClickHouseFlags(fs)
	s.QueryFlags(fs)
	var b benchQuerySettings
	fs.Int(&b.rows, "bench-rows", 100_000_000, "readings to generate (a multiple of --bench-users)")
	fs.Int(&b.users, "bench-users", 100_000, "users the readings are spread over")
	fs.Int(&b.pgRows, "bench-pg-rows", 10_000_000, "rows of the equal subset loaded into PostgreSQL for the comparison (a multiple of --bench-users; 0: skip)")
	fs.Int(&b.days, "bench-days", 90, "days the readings of each user are spread over: with --bench-rows and --bench-users it sets how many readings a user has a day, which decides how much the value rollup condenses")
	fs.Int(&b.runs, "bench-runs", 10, "measured runs of each cohort-wide query (single-user percentiles run 20 times as many)")
	fs.String(&b.database, "bench-database", "vitals_bench_query", "ClickHouse database the readings are generated in")
	fs.BoolVar(&b.keep, "bench-keep", false, "keep the generated database and PostgreSQL tables at the end (a later run of the same size reuses them)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if b.users < 1 || b.rows < b.users || b.rows%b.users != 0 || b.pgRows < 0 || b.pgRows%b.users != 0 || b.pgRows > b.rows || b.runs < 1 || b.days < 1 {
		return errors.New("--bench-rows and --bench-pg-rows must be multiples of --bench-users, pg rows at most rows, runs and days positive")
	}
	b.skipPG = b.pgRows == 0
	log, err := s.Logger()
	if err != nil {
		return err
	}
	s.ClickHouseDatabase = b.database
	wh := s.Warehouse()
	// Generating and merging 100 M rows runs statements for minutes:
	// OPTIMIZE ... FINAL waits for a background merge of the partition
	// to end first, which outlasted the default read timeout. The query
	// service under test keeps wh's.
	gen := wh
	gen.ReadTimeout = max(wh.ReadTimeout, 30*time.Minute)
	conn, err := warehouse.Open(ctx, gen)
	if err != nil {
		return err
	}
	defer conn.Close()
	pool, err := postgres.Open(ctx, s.PostgresURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if !b.keep {
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := conn.Exec(cctx, "DROP DATABASE IF EXISTS "+b.database); err != nil {
				fmt.Fprintln(stdout, "cleanup: drop database:", err)
			}
			if _, err := pool.Exec(cctx, "DROP TABLE IF EXISTS "+benchPGTables); err != nil {
				fmt.Fprintln(stdout, "cleanup: drop tables:", err)
			}
			fmt.Fprintln(stdout, "dropped the bench database and tables")
		}()
	}
	step := int64(b.days) * 86_400_000 / int64(b.rows/b.users)
	if err := generateReadings(ctx, conn, b, step, stdout); err != nil {
		return err
	}

	// The real query service, in-process, over HTTP with a real token.
	qcfg := s.Query()
	qcfg.Warehouse = wh
	qcfg.Addr = "127.0.0.1:0"
	qcfg.PerToken = quota.Limits{} // the benchmark's one token asks back to back: measure latency, not the share
	svc, err := query.New(ctx, qcfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		svc.Close()
		return fmt.Errorf("bench query: %w", err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Serve(sctx, ln); svc.Close() }()
	defer func() { stop(); <-done }()
	s.Tenant = benchTenant
	token, revoke, err := s.TempCredential(ctx, credential.AnalystTokens, "vitals bench query")
	if err != nil {
		return err
	}
	defer revoke()
	base := "http://" + ln.Addr().String()
	if err := cmdline.WaitHealthy(ctx, base); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "\nquery latency over HTTP (token auth, JSON), %d readings of %d users, %d days; 1 warm-up run each\n", b.rows, b.users, b.days)
	for _, c := range queryCases(b, step) {
		c.time(ctx, base, token, stdout)
	}
	if b.skipPG {
		return nil
	}
	return comparePostgres(ctx, conn, pool, b, step, base, token, stdout)
}

// queryCase is one query the benchmark times: path gives each run's
// URL path (users and regions drawn at random).
type queryCase struct {
	name string
	runs int
	path func() string
}

// queryCases are the timed queries over the generated readings.
func queryCases(b benchQuerySettings, step int64) []queryCase {
	day := func(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }
	all := "&from=" + day(benchStartMS) + "&to=" + day(benchStartMS+int64(b.rows/b.users)*step)
	rng := rand.New(rand.NewPCG(1, 2))
	user := func() string { return "bench-" + strconv.Itoa(rng.IntN(b.users)) }
	regions := []string{"DE", "FR", "US-CA", "US-NY", "GB", "JP", "BR", "IN"}
	return []queryCase{
		{fmt.Sprintf("single-user percentiles (p50,90,99 of %d readings)", b.rows/b.users), 20 * b.runs,
			func() string { return "/v1/percentiles?metric=heart_rate&p=50,90,99&user=" + user() + all }},
		{fmt.Sprintf("cohort distribution, sex=female (%d rows)", b.rows/2), b.runs,
			func() string { return "/v1/distribution?metric=heart_rate&bins=auto&sex=female" + all }},
		{fmt.Sprintf("cohort distribution, region (%d rows)", b.rows/len(regions)), b.runs,
			func() string {
				return "/v1/distribution?metric=heart_rate&region=" + regions[rng.IntN(len(regions))] + all
			}},
		{fmt.Sprintf("tenant distribution (%d rows)", b.rows), b.runs,
			func() string { return "/v1/distribution?metric=heart_rate" + all }},
		{fmt.Sprintf("compare user with region cohort (%d users)", b.users/len(regions)), b.runs,
			func() string { return "/v1/compare?metric=heart_rate&by=region&user=" + user() + all }},
		{fmt.Sprintf("cohorts table by sex (%d rows)", b.rows), b.runs,
			func() string { return "/v1/cohorts?metric=heart_rate&by=sex" + all }},
	}
}

// time runs the case once to warm up and then c.runs times, and prints
// the latency percentiles. A case that fails (the query service's
// timeout, say) is reported and the others still run.
func (c queryCase) time(ctx context.Context, base, token string, stdout io.Writer) {
	lat := make([]time.Duration, 0, c.runs)
	var err error
	for i := -1; i < c.runs && err == nil; i++ { // run -1 warms up
		start := time.Now()
		if _, err = queryclient.Get(ctx, base+c.path(), token, time.Minute); err == nil && i >= 0 {
			lat = append(lat, time.Since(start))
		}
	}
	if err != nil {
		fmt.Fprintf(stdout, "  %-58s failed after %d runs: %v\n", c.name, len(lat), err)
		return
	}
	slices.Sort(lat)
	fmt.Fprintf(stdout, "  %-58s runs %4d  p50 %9s  p95 %9s  max %9s\n", c.name, c.runs,
		loadgen.Percentile(lat, 50).Round(time.Microsecond*100), loadgen.Percentile(lat, 95).Round(time.Microsecond*100), lat[len(lat)-1].Round(time.Microsecond*100))
}

// generateReadings fills the bench database unless it already holds the
// rows (with --bench-keep), then merges every partition of the readings and
// of the value rollup into one part, as closed months end up, so that
// queries read them without grouping.
func generateReadings(ctx context.Context, conn driver.Conn, b benchQuerySettings, step int64, stdout io.Writer) error {
	db := b.database
	// A database kept by an earlier run with the same size is reused; a
	// missing one makes the count fail, which means generate.
	var have, rolled uint64
	err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM %s.readings WHERE tenant_id = ?", db), benchTenant).Scan(&have)
	if err == nil {
		err = conn.QueryRow(ctx, fmt.Sprintf("SELECT toUInt64(sum(readings)) FROM %s.%s WHERE tenant_id = ?", db, warehouse.ValuesRollupTable), benchTenant).Scan(&rolled)
	}
	if have == uint64(b.rows) && rolled == have {
		fmt.Fprintf(stdout, "reusing %d readings in %s (kept by an earlier --bench-keep run)\n", have, db)
		return mergePartitions(ctx, conn, db, stdout)
	}
	fmt.Fprintf(stdout, "not reusing %s: %d readings, %d in the value rollup (%v)\n", db, have, rolled, err)
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		return fmt.Errorf("bench query: %w", err)
	}
	if err := warehouse.Migrate(ctx, conn, db); err != nil {
		return err
	}
	// Both rollups are filled by their views, as the projector's inserts
	// fill them. (Dropping a view to generate faster does not pay: the
	// query service's Migrate would recreate it and backfill it from 100
	// million rows.)
	u := strconv.Itoa(b.users)
	dims := []string{
		fmt.Sprintf(`INSERT INTO %s.profile_events (tenant_id, user_id, event_id, gateway_id, kind, birth_year, sex, region, occurred_at, occurred_at_ms, received_at_ms, ingested_at_ms)
			SELECT '%s', concat('bench-', toString(number)), concat('p-', toString(number)), 'gw-bench', 'registered', toInt32(1940 + number %% 60),
				if(number %% 2 = 0, 'female', 'male'), arrayElement(['DE', 'FR', 'US-CA', 'US-NY', 'GB', 'JP', 'BR', 'IN'], number %% 8 + 1),
				toDateTime(1451606400), 1451606400000, 1451606400000, 1451606400000 FROM numbers(%s)`, db, benchTenant, u),
		fmt.Sprintf(`INSERT INTO %s.device_events (tenant_id, user_id, device_id, event_id, gateway_id, kind, model, occurred_at, occurred_at_ms, received_at_ms, ingested_at_ms)
			SELECT '%s', concat('bench-', toString(number)), concat('dev-', toString(number)), concat('d-', toString(number)), 'gw-bench', 'paired',
				arrayElement(['fitbit-charge-hr', 'fitbit-alta', 'apple-watch-2', 'garmin-vivosmart'], number %% 4 + 1),
				toDateTime(1451606400), 1451606400000, 1451606400000, 1451606400000 FROM numbers(%s)`, db, benchTenant, u),
	}
	for _, q := range dims {
		if err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("bench query: user dimension: %w", err)
		}
	}
	const chunk = 5_000_000
	start := time.Now()
	fmt.Fprintf(stdout, "generating %d readings of %d users in ClickHouse %s (chunks of %d)\n", b.rows, b.users, db, chunk)
	for off := 0; off < b.rows; off += chunk {
		n := min(chunk, b.rows-off)
		q := fmt.Sprintf(`INSERT INTO %[1]s.readings (tenant_id, user_id, device_id, gateway_id, metric, loinc, value, unit,
				measured_at, measured_at_ms, received_at_ms, ingested_at_ms, event_id, source_topic, source_partition, source_offset)
			SELECT '%[2]s', concat('bench-', toString(u)), concat('dev-', toString(u)), 'gw-bench', 'heart_rate', '8867-4',
				toFloat64(45 + u %% 30 + intHash32(number) %% 60), '/min', toDateTime(intDiv(ms, 1000)), ms, ms, ms,
				concat('e-', toString(number)), 'bench', toInt32(u %% 6), toInt64(number)
			FROM (SELECT number, number %% %[3]d AS u, %[4]d + intDiv(number, %[3]d) * %[5]d AS ms FROM numbers(%[6]d, %[7]d))`,
			db, benchTenant, b.users, benchStartMS, step, off, n)
		if err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("bench query: generate rows %d..%d: %w", off, off+n, err)
		}
		done := off + n
		el := time.Since(start)
		eta := time.Duration(float64(el) / float64(done) * float64(b.rows-done))
		fmt.Fprintf(stdout, "  %3d%%  %d rows  %s elapsed  ETA %s\n", 100*done/b.rows, done, el.Round(time.Second), eta.Round(time.Second))
	}
	fmt.Fprintln(stdout, "merging each partition into one part (OPTIMIZE TABLE ... PARTITION ... FINAL)")
	mstart := time.Now()
	if err := mergePartitions(ctx, conn, db, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "generated in %s, merged in %s\n", mstart.Sub(start).Round(time.Second), time.Since(mstart).Round(time.Second))
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT count(), toUInt64(sum(readings)) FROM %s.%s", db, warehouse.ValuesRollupTable)).Scan(&have, &rolled); err != nil {
		return fmt.Errorf("bench query: value rollup: %w", err)
	}
	if rolled != uint64(b.rows) {
		return fmt.Errorf("bench query: the value rollup counts %d readings, want %d", rolled, b.rows)
	}
	fmt.Fprintf(stdout, "value rollup: %d rows for %d readings (%.1f readings a row)\n", have, rolled, float64(rolled)/float64(have))
	return nil
}

// mergePartitions merges every partition of the readings and of the value
// rollup into one part.
func mergePartitions(ctx context.Context, conn driver.Conn, db string, stdout io.Writer) error {
	for _, table := range []string{warehouse.ReadingsTable, warehouse.ValuesRollupTable} {
		if err := mergeTable(ctx, conn, db, table, stdout); err != nil {
			return err
		}
	}
	return nil
}

// mergeTable repeats OPTIMIZE ... FINAL per partition until each is one
// merged part: 18.16 answers OPTIMIZE at once, doing nothing, when
// background merges hold some of the parts.
func mergeTable(ctx context.Context, conn driver.Conn, db, table string, stdout io.Writer) error {
	deadline := time.Now().Add(time.Hour)
	for {
		rows, err := conn.Query(ctx, `SELECT partition, count(), min(level) FROM system.parts
			WHERE database = ? AND table = ? AND active GROUP BY partition ORDER BY partition`, db, table)
		if err != nil {
			return fmt.Errorf("bench query: parts: %w", err)
		}
		var pending []string
		for rows.Next() {
			var p string
			var n uint64
			var level uint32
			if err := rows.Scan(&p, &n, &level); err != nil {
				rows.Close()
				return fmt.Errorf("bench query: parts: %w", err)
			}
			if n > 1 || level == 0 {
				pending = append(pending, p)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("bench query: parts: %w", err)
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench query: partitions %v of %s still not merged after an hour", pending, table)
		}
		fmt.Fprintf(stdout, "  %s partitions not yet one part: %v\n", table, pending)
		for _, p := range pending {
			if _, err := strconv.ParseUint(p, 10, 32); err != nil {
				return fmt.Errorf("bench query: unexpected partition %q", p)
			}
			if err := conn.Exec(ctx, fmt.Sprintf("OPTIMIZE TABLE %s.%s PARTITION %s FINAL", db, table, p)); err != nil {
				return fmt.Errorf("bench query: optimize partition %s: %w", p, err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
}

// comparePostgres loads the first pgRows generated rows (the first
// readings of every user: a time range) into PostgreSQL and runs the
// seeds' cohort statistics there (percentile_cont, as in their
// getAggregateAnalytics) and the same statistics through the query API
// over the same range, and reports both and their ratio.
func comparePostgres(ctx context.Context, conn driver.Conn, pool *pgxpool.Pool, b benchQuerySettings, step int64, base, token string, stdout io.Writer) error {
	endMS := benchStartMS + int64(b.pgRows/b.users)*step
	var have int64
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM bench_query_readings").Scan(&have) // absent: load
	if have != int64(b.pgRows) {
		if err := loadPostgres(ctx, conn, pool, b, endMS, stdout); err != nil {
			return err
		}
	}
	pgSQL := `SELECT u.sex, count(*), avg(r.value),
			percentile_cont(0.5) WITHIN GROUP (ORDER BY r.value),
			percentile_cont(0.1) WITHIN GROUP (ORDER BY r.value),
			percentile_cont(0.9) WITHIN GROUP (ORDER BY r.value),
			stddev(r.value)
		FROM bench_query_readings r JOIN bench_query_users u USING (user_id)
		WHERE r.measured_at >= $1 AND r.measured_at < $2
		GROUP BY u.sex ORDER BY u.sex`
	from, to := time.UnixMilli(benchStartMS).UTC(), time.UnixMilli(endMS).UTC()
	apiPath := "/v1/cohorts?metric=heart_rate&by=sex&from=" + url.QueryEscape(from.Format(time.RFC3339)) + "&to=" + url.QueryEscape(to.Format(time.RFC3339))
	const runs = 3
	var pgTimes, chTimes []time.Duration
	for range runs {
		start := time.Now()
		rows, err := pool.Query(ctx, pgSQL, from, to)
		if err != nil {
			return fmt.Errorf("bench query: postgres cohort statistics: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil || n != 2 {
			return fmt.Errorf("bench query: postgres cohort statistics: %d cohorts, %v", n, err)
		}
		pgTimes = append(pgTimes, time.Since(start))
		start = time.Now()
		if _, err := queryclient.Get(ctx, base+apiPath, token, 5*time.Minute); err != nil {
			return err
		}
		chTimes = append(chTimes, time.Since(start))
	}
	slices.Sort(pgTimes)
	slices.Sort(chTimes)
	fmt.Fprintf(stdout, "\ncohort statistics by sex (count, mean, median, p10, p90, stddev) over the same %d rows (%s to %s):\n", b.pgRows, from.Format(time.DateOnly), to.Format(time.DateOnly))
	fmt.Fprintf(stdout, "  PostgreSQL percentile_cont (seeds' SQL)  runs %v  median %s\n", roundAll(pgTimes), pgTimes[runs/2].Round(time.Millisecond))
	fmt.Fprintf(stdout, "  ClickHouse via GET /v1/cohorts           runs %v  median %s\n", roundAll(chTimes), chTimes[runs/2].Round(time.Millisecond))
	fmt.Fprintf(stdout, "  PostgreSQL / query API: %.1fx\n", float64(pgTimes[runs/2])/float64(chTimes[runs/2]))
	return nil
}

func roundAll(ds []time.Duration) string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond).String()
	}
	return strings.Join(out, " ")
}

// loadPostgres copies the subset's rows from ClickHouse with COPY, so both
// stores hold exactly the same readings.
func loadPostgres(ctx context.Context, conn driver.Conn, pool *pgxpool.Pool, b benchQuerySettings, endMS int64, stdout io.Writer) error {
	start := time.Now()
	fmt.Fprintf(stdout, "\nloading %d of the rows into PostgreSQL (COPY from a ClickHouse read)\n", b.pgRows)
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + benchPGTables,
		"CREATE UNLOGGED TABLE bench_query_users (user_id text PRIMARY KEY, sex text NOT NULL, region text NOT NULL)",
		"CREATE UNLOGGED TABLE bench_query_readings (user_id text NOT NULL, measured_at timestamptz NOT NULL, value double precision NOT NULL)",
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("bench query: postgres: %w", err)
		}
	}
	users, err := conn.Query(ctx, fmt.Sprintf("SELECT user_id, sex, region FROM (%s)", warehouse.UserDimension(b.database)), benchTenant)
	if err != nil {
		return fmt.Errorf("bench query: read users: %w", err)
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"bench_query_users"}, []string{"user_id", "sex", "region"}, &chRows{rows: users}); err != nil {
		return fmt.Errorf("bench query: copy users: %w", err)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT user_id, measured_at_ms, value FROM %s.readings WHERE tenant_id = ? AND measured_at_ms < ?", b.database), benchTenant, endMS)
	if err != nil {
		return fmt.Errorf("bench query: read readings: %w", err)
	}
	n, err := pool.CopyFrom(ctx, pgx.Identifier{"bench_query_readings"}, []string{"user_id", "measured_at", "value"}, &chRows{rows: rows, msTime: 1})
	if err != nil {
		return fmt.Errorf("bench query: copy readings: %w", err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE bench_query_readings; ANALYZE bench_query_users"); err != nil {
		return fmt.Errorf("bench query: analyze: %w", err)
	}
	fmt.Fprintf(stdout, "loaded %d rows in %s\n", n, time.Since(start).Round(time.Second))
	return nil
}

// chRows adapts ClickHouse rows to pgx.CopyFromSource; column msTime (if
// positive) holds epoch milliseconds that become a timestamptz.
type chRows struct {
	rows   driver.Rows
	msTime int
	vals   []any
	err    error
}

func (c *chRows) Next() bool {
	if !c.rows.Next() {
		c.rows.Close()
		return false
	}
	var user, s2 string
	var s3 string
	var ms int64
	var v float64
	if c.msTime > 0 {
		c.err = c.rows.Scan(&user, &ms, &v)
		c.vals = []any{user, time.UnixMilli(ms).UTC(), v}
	} else {
		c.err = c.rows.Scan(&user, &s2, &s3)
		c.vals = []any{user, s2, s3}
	}
	return c.err == nil
}

func (c *chRows) Values() ([]any, error) { return c.vals, c.err }

func (c *chRows) Err() error {
	if c.err != nil {
		return c.err
	}
	return c.rows.Err()
}
