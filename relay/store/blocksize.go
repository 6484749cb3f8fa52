package store

import (
	"slices"
	"sync"

	"github.com/ClickHouse/ch-go/proto"
)

// blockSizes remembers, table by table, the most bytes a row took in an
// insert's encoded block, so that the next insert grows ch-go's buffer
// once, to about what its block needs, before encoding it.
//
// Why: ch-go encodes a whole insert into one buffer, column after column,
// growing it by append: from nothing, a block goes through ever larger
// copies (Go grows large slices by a quarter), about 5 times the block in
// large allocations (29 MB for a 5.5 MB block), each needing a run of free
// pages that the previous ones, garbage until the next collection, do not
// leave. It happened whenever the inserter dialled again (a new client, a
// new empty buffer) and then met the largest inserts, the catch-up after
// an outage: a relay held at its heap budget still took 60 MB more heap
// pages in seconds, +34 MiB RSS (docs/benchmarks/relay.md, "The relay's
// RSS through a ClickHouse shard stop"). The inserter now keeps its buffer
// across dials; growing it still happens at start and whenever an insert
// is larger than all before it, which the catch-up's are. Grown once, the
// buffer takes one allocation of the block's size.
type blockSizes struct {
	mu     sync.Mutex
	perRow map[string]int // table → most encoded bytes per row seen
}

// blockSlack is the part added to the estimate: rows of one table vary in
// size from insert to insert.
const blockSlack = 16 // 1/16

// input returns the insert's columns, the first wrapped to grow the buffer
// before any column data is written and the last to measure the block.
// Nothing else changes: the columns are encoded as they are.
func (s *blockSizes) input(table string, rows int, in proto.Input) proto.Input {
	if rows <= 0 || len(in) == 0 {
		return in
	}
	s.mu.Lock()
	per := s.perRow[table]
	s.mu.Unlock()
	b := &blockMeasure{sizes: s, table: table, rows: rows, need: per*rows + per*rows/blockSlack}
	out := slices.Clone(in)
	out[0].Data = &blockStart{ColInput: out[0].Data, b: b}
	last := len(out) - 1
	out[last].Data = &blockEnd{ColInput: out[last].Data, b: b}
	return out
}

// blockMeasure is one encoding of an insert's block.
type blockMeasure struct {
	sizes   *blockSizes
	table   string
	rows    int
	need    int // bytes the block is expected to take, 0: unknown
	started bool
	start   int // length of the buffer before the first column's data
}

func (b *blockMeasure) begin(buf *proto.Buffer) {
	if b.started {
		return
	}
	b.started, b.start = true, len(buf.Buf)
	if b.need > 0 {
		buf.Buf = slices.Grow(buf.Buf, b.need)
	}
}

func (b *blockMeasure) end(buf *proto.Buffer) {
	if !b.started {
		return
	}
	per := (len(buf.Buf) - b.start + b.rows - 1) / b.rows
	b.sizes.mu.Lock()
	defer b.sizes.mu.Unlock()
	if b.sizes.perRow == nil {
		b.sizes.perRow = map[string]int{}
	}
	b.sizes.perRow[b.table] = max(b.sizes.perRow[b.table], per)
}

// blockStart and blockEnd wrap a column: what ch-go asks of it goes to
// the column, including the optional Prepare and EncodeState, which are
// no-ops here for a column without them.
type blockStart struct {
	proto.ColInput
	b *blockMeasure
}

func (c *blockStart) Prepare() error { return prepare(c.ColInput) }

func (c *blockStart) EncodeState(buf *proto.Buffer) {
	c.b.begin(buf)
	encodeState(c.ColInput, buf)
}

func (c *blockStart) EncodeColumn(buf *proto.Buffer) {
	c.b.begin(buf)
	c.ColInput.EncodeColumn(buf)
}

type blockEnd struct {
	proto.ColInput
	b *blockMeasure
}

func (c *blockEnd) Prepare() error { return prepare(c.ColInput) }

func (c *blockEnd) EncodeState(buf *proto.Buffer) { encodeState(c.ColInput, buf) }

func (c *blockEnd) EncodeColumn(buf *proto.Buffer) {
	c.ColInput.EncodeColumn(buf)
	c.b.end(buf)
}

// WriteColumn is how an uncompressed insert writes the column: into the
// buffer (what measures) or, for fixed-width values, straight from the
// column (what the buffer then does not need). blockStart needs none: its
// EncodeState grows the buffer on both paths.
func (c *blockEnd) WriteColumn(w *proto.Writer) {
	c.ColInput.WriteColumn(w)
	w.ChainBuffer(c.b.end)
}

func prepare(c proto.ColInput) error {
	if p, ok := c.(proto.Preparable); ok {
		return p.Prepare()
	}
	return nil
}

func encodeState(c proto.ColInput, buf *proto.Buffer) {
	if s, ok := c.(proto.StateEncoder); ok {
		s.EncodeState(buf)
	}
}
