package projector

import (
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// column is one column of a table's share of a batch, held as a slice of
// the Go type that clickhouse-go's column of the DDL type takes whole:
// an insert then costs one Column(i).Append call per column, instead of
// one boxed value per cell through batch.Append, and the slices are
// reused from batch to batch.
type column interface {
	// send appends every value held to the batch's column.
	send(c driver.BatchColumn) error
	// retain keeps the values at the indexes idx (ascending), in order.
	retain(idx []int)
	// reset empties the column for the next batch, keeping its capacity.
	reset()
	// value is row i's value as clickhouse-go receives it (a nullable
	// column's is a pointer, nil for NULL), for Identifier and tests.
	value(i int) any
	// pick appends the values of src, a column of the same type, at the
	// indexes idx: how a batch is split by shard on a cluster (shards.go).
	pick(src column, idx []int)
}

// namedColumn is a column with its name in the table.
type namedColumn struct {
	name string
	col  column
}

// col is a column of a non-nullable type: String ([]string), Float64,
// Int32, Int64, and DateTime, which clickhouse-go also takes as []int64
// of epoch seconds.
type col[T any] struct{ v []T }

func (c *col[T]) add(x T) { c.v = append(c.v, x) }

func (c *col[T]) send(bc driver.BatchColumn) error { return bc.Append(c.v) }

func (c *col[T]) retain(idx []int) { c.v = retain(c.v, idx) }

// reset zeroes the values too, so that strings of the last batch, which
// point into its records' buffers, do not keep those alive.
func (c *col[T]) reset() { clear(c.v); c.v = c.v[:0] }

func (c *col[T]) value(i int) any { return c.v[i] }

// nullCol is a Nullable column. It holds values and NULL flags side by
// side, so that a row costs no allocation, and hands clickhouse-go the
// []*T it takes for Nullable, pointing into the values.
type nullCol[T any] struct {
	v    []T
	null []bool
	ptrs []*T // rebuilt by send; kept only for its capacity
}

func (c *nullCol[T]) add(o opt[T]) {
	if !o.ok {
		c.addNull()
		return
	}
	c.addValue(o.v)
}

// opt is a value that may be NULL (!ok), held without a pointer, so that
// holding one in a struct does not make what it came from escape.
type opt[T any] struct {
	v  T
	ok bool
}

// optOf is *p, NULL for a nil p.
func optOf[T any](p *T) opt[T] {
	if p == nil {
		return opt[T]{}
	}
	return opt[T]{*p, true}
}

func (c *nullCol[T]) addValue(x T) {
	c.v = append(c.v, x)
	c.null = append(c.null, false)
}

func (c *nullCol[T]) addNull() {
	var zero T
	c.v = append(c.v, zero)
	c.null = append(c.null, true)
}

func (c *nullCol[T]) send(bc driver.BatchColumn) error {
	c.ptrs = c.ptrs[:0]
	for i := range c.v {
		var p *T
		if !c.null[i] {
			p = &c.v[i]
		}
		c.ptrs = append(c.ptrs, p)
	}
	err := bc.Append(c.ptrs)
	clear(c.ptrs)
	return err
}

func (c *nullCol[T]) retain(idx []int) {
	c.v = retain(c.v, idx)
	c.null = retain(c.null, idx)
}

func (c *nullCol[T]) reset() {
	clear(c.v)
	c.v, c.null = c.v[:0], c.null[:0]
}

func (c *nullCol[T]) value(i int) any {
	if c.null[i] {
		return (*T)(nil)
	}
	x := c.v[i]
	return &x
}

// retain moves the elements at the ascending indexes idx to the front of
// s and cuts it there, zeroing the rest so that it holds no stale
// references.
func retain[T any](s []T, idx []int) []T {
	for j, i := range idx {
		s[j] = s[i]
	}
	clear(s[len(idx):])
	return s[:len(idx)]
}

// sendColumns appends every column of t to the batch, in the order of
// the sink's INSERT column list.
func sendColumns(b driver.Batch, t *pending) error {
	for i, c := range t.cols {
		if err := c.col.send(b.Column(i)); err != nil {
			return fmt.Errorf("column %s: %w", c.name, err)
		}
	}
	return nil
}
