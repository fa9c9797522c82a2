package warehouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// MaxPositions returns the highest log offset stored per partition of
// db.table: where the projector resumes (the offset after it) and how far
// a rebuild got. Only rows read from the log count (log_offset >= 0; a
// lab comparison stores rows from elsewhere as -1). With parts, only those
// partitions are read; a partition with no row is absent from the map.
func MaxPositions(ctx context.Context, conn driver.Conn, db, table string, parts ...int32) (map[int32]int64, error) {
	where := "log_offset >= 0"
	if len(parts) > 0 {
		// Formatted here: clickhouse-go binds a slice as an array, which
		// 18.16 refuses in IN.
		list := make([]string, len(parts))
		for i, part := range parts {
			list[i] = strconv.Itoa(int(part))
		}
		where += " AND log_partition IN (" + strings.Join(list, ", ") + ")"
	}
	q := fmt.Sprintf("SELECT log_partition, max(log_offset) FROM %s.%s WHERE %s GROUP BY log_partition", db, table, where)
	out, err := ScanMap[int32, int64](conn.Query(ctx, q))
	if err != nil {
		return nil, fmt.Errorf("stored positions of %s.%s: %w", db, table, err)
	}
	return out, nil
}
