package warehouse

// Rows is the part of a query's result that ScanMap, ScanSet and
// ScanNested read. Both clickhouse-go's driver.Rows and pgx's Rows have it,
// so the same helpers serve ClickHouse and PostgreSQL queries.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanMap reads a query's rows of two columns, a key and its value, into a
// map; a later row with the same key wins. It takes the query's two
// results as they come, ScanMap[K, V](conn.Query(ctx, q)), and closes the
// rows. An error is returned as it is, for the caller to say which query
// failed; the map then holds only the rows read before it. K and V are
// plain values (numbers, strings): every row is scanned into the same two
// variables.
func ScanMap[K comparable, V any](rows Rows, err error) (map[K]V, error) {
	out := map[K]V{}
	var k K
	var v V
	return out, scanEach(rows, err, func() { out[k] = v }, &k, &v)
}

// ScanSet reads a query's rows of one column into a set, as ScanMap does.
func ScanSet[K comparable](rows Rows, err error) (map[K]bool, error) {
	out := map[K]bool{}
	var k K
	return out, scanEach(rows, err, func() { out[k] = true }, &k)
}

// ScanNested reads a query's rows of three columns, an outer key, an inner
// key and a value, into a map of maps, as ScanMap does.
func ScanNested[K1, K2 comparable, V any](rows Rows, err error) (map[K1]map[K2]V, error) {
	out := map[K1]map[K2]V{}
	var k1 K1
	var k2 K2
	var v V
	return out, scanEach(rows, err, func() {
		if out[k1] == nil {
			out[k1] = map[K2]V{}
		}
		out[k1][k2] = v
	}, &k1, &k2, &v)
}

// EachRow calls fn with each row of a query's result, given with the
// query's error as the query returned them, and closes the result. The first error, the query's, fn's or the result's, is
// returned as it is, for the caller to say which query failed.
func EachRow(rows Rows, err error, fn func(Rows) error) error {
	if err != nil {
		return err
	}
	defer closeRows(rows)
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// scanEach scans every row of a query's result into dest and calls add
// after each, as EachRow does.
func scanEach(rows Rows, err error, add func(), dest ...any) error {
	return EachRow(rows, err, func(r Rows) error {
		if err := r.Scan(dest...); err != nil {
			return err
		}
		add()
		return nil
	})
}

// closeRows closes rows whichever driver made them: clickhouse-go's Close
// returns an error, pgx's does not. Once the rows are read or a scan has
// failed, a close error adds nothing to what the caller already knows.
func closeRows(rows Rows) {
	switch r := rows.(type) {
	case interface{ Close() error }:
		_ = r.Close()
	case interface{ Close() }:
		r.Close()
	}
}
