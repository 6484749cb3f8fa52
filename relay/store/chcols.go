package store

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"
)

// Columns of the writer's inserts in ch-go's native form (the protocol
// library clickhouse-go is built on). clickhouse-go takes Go slices and
// copies them into such columns on every insert, LowCardinality ones row by
// row through reflection and an any-keyed map (a third of the relay's CPU,
// docs/benchmarks/relay.md); these are filled once, straight from the
// records, and reused between inserts. They copy what they keep (string
// bytes go into the columns' own buffers), so a column never keeps a
// record's memory reachable.

// lowCardinality is a LowCardinality(T) column whose dictionary is built
// while rows are added: each row costs one map lookup (none when it repeats
// the previous row's value) and a distinct value is stored once per insert.
// Keys are kept in the narrowest width the dictionary allows (one byte per
// row up to 256 values), the form they are sent in.
type lowCardinality[T comparable] struct {
	dict    proto.ColumnOf[T] // the distinct values, in key order
	ids     map[T]uint32
	last    T
	lastKey uint32
	hasLast bool
	// own makes a copy of a new value that the map may keep without keeping
	// the record's memory reachable (strings.Clone for strings).
	own func(T) T
	// ident is a string value's bytes' address and length (nil for other
	// types). Strings decoded by the relay are interned per stream
	// (internal/vtcodec), so a repeated value is usually the same bytes:
	// seen finds it by address, without hashing it. The slot keeps the
	// address, which keeps those bytes alive and unchanged (Go strings are
	// immutable), so a hit is always the same value.
	ident func(T) (unsafe.Pointer, int)
	seen  [64]seenSlot

	width  proto.CardinalityKey
	keys8  proto.ColUInt8
	keys16 proto.ColUInt16
	keys32 proto.ColUInt32
}

// seenSlot is a string's address and length and its key in the dictionary.
type seenSlot struct {
	p  unsafe.Pointer
	n  int
	id uint32
}

func newLowCardinalityString() *lowCardinality[string] {
	return &lowCardinality[string]{dict: new(proto.ColStr), own: strings.Clone,
		ident: func(s string) (unsafe.Pointer, int) { return unsafe.Pointer(unsafe.StringData(s)), len(s) }}
}

func newLowCardinalityIPv6() *lowCardinality[proto.IPv6] {
	return &lowCardinality[proto.IPv6]{dict: new(proto.ColIPv6), own: func(v proto.IPv6) proto.IPv6 { return v }}
}

func (c *lowCardinality[T]) add(v T) {
	if c.hasLast && v == c.last {
		c.appendKey(c.lastKey)
		return
	}
	var slot *seenSlot
	var p unsafe.Pointer
	var n int
	if c.ident != nil {
		if p, n = c.ident(v); n > 0 {
			slot = &c.seen[(uintptr(p)>>4)%uintptr(len(c.seen))]
			if slot.p == p && slot.n == n {
				c.appendKey(slot.id)
				c.last, c.lastKey, c.hasLast = v, slot.id, true
				return
			}
		}
	}
	id, ok := c.ids[v]
	if !ok {
		if c.ids == nil {
			c.ids = map[T]uint32{}
		}
		v = c.own(v)
		id = uint32(c.dict.Rows())
		c.dict.Append(v)
		c.ids[v] = id
		c.widen(id)
	}
	if slot != nil {
		*slot = seenSlot{p, n, id}
	}
	c.appendKey(id)
	c.last, c.lastKey, c.hasLast = v, id, true
}

// widen moves the keys to a wider type when key id needs it.
func (c *lowCardinality[T]) widen(id uint32) {
	switch {
	case c.width == proto.KeyUInt8 && id > math.MaxUint8:
		for _, k := range c.keys8 {
			c.keys16 = append(c.keys16, uint16(k))
		}
		c.keys8, c.width = c.keys8[:0], proto.KeyUInt16
	case c.width == proto.KeyUInt16 && id > math.MaxUint16:
		for _, k := range c.keys16 {
			c.keys32 = append(c.keys32, uint32(k))
		}
		c.keys16, c.width = c.keys16[:0], proto.KeyUInt32
	}
}

func (c *lowCardinality[T]) appendKey(id uint32) {
	switch c.width {
	case proto.KeyUInt8:
		c.keys8 = append(c.keys8, uint8(id))
	case proto.KeyUInt16:
		c.keys16 = append(c.keys16, uint16(id))
	default:
		c.keys32 = append(c.keys32, id)
	}
}

func (c *lowCardinality[T]) key(i int) int {
	switch c.width {
	case proto.KeyUInt8:
		return int(c.keys8[i])
	case proto.KeyUInt16:
		return int(c.keys16[i])
	default:
		return int(c.keys32[i])
	}
}

// value is row i's value.
func (c *lowCardinality[T]) value(i int) T { return c.dict.Row(c.key(i)) }

func (c *lowCardinality[T]) Reset() {
	c.dict.Reset()
	clear(c.ids)
	clear(c.seen[:])
	var zero T
	c.last, c.hasLast = zero, false
	c.width = proto.KeyUInt8
	c.keys8, c.keys16, c.keys32 = c.keys8[:0], c.keys16[:0], c.keys32[:0]
}

func (c *lowCardinality[T]) Rows() int { return len(c.keys8) + len(c.keys16) + len(c.keys32) }

func (c *lowCardinality[T]) Type() proto.ColumnType {
	return proto.ColumnTypeLowCardinality.Sub(c.dict.Type())
}

// lowCardinalityVersion is the serialization version of LowCardinality
// columns ClickHouse reads: shared dictionaries with additional keys.
const lowCardinalityVersion = 1

// Bits of a LowCardinality column's meta word: the dictionary comes with
// the column (additional keys) and replaces any previous one.
const (
	lowCardinalityHasAdditionalKeys    = 1 << 9
	lowCardinalityNeedUpdateDictionary = 1 << 10
)

func (c *lowCardinality[T]) EncodeState(b *proto.Buffer) {
	b.PutInt64(lowCardinalityVersion)
}

func (c *lowCardinality[T]) EncodeColumn(b *proto.Buffer) {
	if c.Rows() == 0 {
		return
	}
	b.PutInt64(lowCardinalityHasAdditionalKeys | lowCardinalityNeedUpdateDictionary | int64(c.width))
	b.PutInt64(int64(c.dict.Rows()))
	c.dict.EncodeColumn(b)
	b.PutInt64(int64(c.Rows()))
	switch c.width {
	case proto.KeyUInt8:
		c.keys8.EncodeColumn(b)
	case proto.KeyUInt16:
		c.keys16.EncodeColumn(b)
	default:
		c.keys32.EncodeColumn(b)
	}
}

func (c *lowCardinality[T]) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// arrayOf is an Array(T) column: the end offset of every row and the
// elements of all rows.
type arrayOf[E interface {
	proto.ColInput
	Reset()
}] struct {
	offsets proto.ColUInt64
	elems   E
	n       uint64 // elements so far
}

// endRow closes a row holding the elements added since the last one.
func (a *arrayOf[E]) endRow() { a.offsets = append(a.offsets, a.n) }

// row is the [start, end) range of row i's elements.
func (a *arrayOf[E]) row(i int) (int, int) {
	start := uint64(0)
	if i > 0 {
		start = a.offsets[i-1]
	}
	return int(start), int(a.offsets[i])
}

func (a *arrayOf[E]) Reset() {
	a.offsets = a.offsets[:0]
	a.elems.Reset()
	a.n = 0
}

func (a *arrayOf[E]) Rows() int { return len(a.offsets) }

func (a *arrayOf[E]) Type() proto.ColumnType { return proto.ColumnTypeArray.Sub(a.elems.Type()) }

func (a *arrayOf[E]) Prepare() error {
	if p, ok := any(a.elems).(proto.Preparable); ok {
		return p.Prepare()
	}
	return nil
}

func (a *arrayOf[E]) EncodeState(b *proto.Buffer) {
	if s, ok := any(a.elems).(proto.StateEncoder); ok {
		s.EncodeState(b)
	}
}

func (a *arrayOf[E]) EncodeColumn(b *proto.Buffer) {
	a.offsets.EncodeColumn(b)
	a.elems.EncodeColumn(b)
}

func (a *arrayOf[E]) WriteColumn(w *proto.Writer) { w.ChainBuffer(a.EncodeColumn) }

// lowCardinalityArray is Array(LowCardinality(String)).
type lowCardinalityArray struct {
	arrayOf[*lowCardinality[string]]
}

func newLowCardinalityArray() *lowCardinalityArray {
	return &lowCardinalityArray{arrayOf[*lowCardinality[string]]{elems: newLowCardinalityString()}}
}

func (a *lowCardinalityArray) push(s string) { a.elems.add(s); a.n++ }

// add appends a row.
func (a *lowCardinalityArray) add(vs []string) {
	for _, s := range vs {
		a.push(s)
	}
	a.endRow()
}

// value is row i (a new slice; for reading back, not on the insert path).
func (a *lowCardinalityArray) value(i int) []string {
	start, end := a.row(i)
	out := make([]string, 0, end-start)
	for j := start; j < end; j++ {
		out = append(out, a.elems.value(j))
	}
	return out
}

// stringArray is Array(String).
type stringArray struct {
	arrayOf[*proto.ColStr]
}

func newStringArray() *stringArray {
	return &stringArray{arrayOf[*proto.ColStr]{elems: new(proto.ColStr)}}
}

func (a *stringArray) push(s string) { a.elems.Append(s); a.n++ }

// add appends a row.
func (a *stringArray) add(vs []string) {
	for _, s := range vs {
		a.push(s)
	}
	a.endRow()
}

func (a *stringArray) value(i int) []string {
	start, end := a.row(i)
	out := make([]string, 0, end-start)
	for j := start; j < end; j++ {
		out = append(out, a.elems.Row(j))
	}
	return out
}

// uint64Array is Array(UInt64).
type uint64Array struct {
	arrayOf[*proto.ColUInt64]
}

func newUint64Array() *uint64Array {
	return &uint64Array{arrayOf[*proto.ColUInt64]{elems: new(proto.ColUInt64)}}
}

func (a *uint64Array) push(v uint64) { a.elems.Append(v); a.n++ }

// enumColumn is an Enum8 column of raw values. Its type, the values' names
// included, is the server's (ch-go asks the column to infer it from the
// insert's header), so the schema's enums are written in one place only.
type enumColumn struct {
	proto.ColEnum8
	t proto.ColumnType
}

func (e *enumColumn) Infer(t proto.ColumnType) error {
	if t.Base() != proto.ColumnTypeEnum8 {
		return fmt.Errorf("column is %s, not an Enum8", t)
	}
	e.t = t
	return nil
}

func (e *enumColumn) Type() proto.ColumnType { return e.t }

// dateTime64 is a DateTime64(9) column (every time column of the schema).
func dateTime64() *proto.ColDateTime64 {
	return new(proto.ColDateTime64).WithPrecision(proto.PrecisionNano)
}

// memBytes is about the memory the column holds: keys, dictionary and
// the map over it (counted as the dictionary's size again).
func (c *lowCardinality[T]) memBytes() int {
	d := columnBytes(c.dict)
	return cap(c.keys8) + 2*cap(c.keys16) + 4*cap(c.keys32) + 2*d
}

// reserve makes room for rows rows in every column without growing it: the
// part of each column that takes the same bytes for every row (values,
// dictionary keys of up to 256 values, array offsets, string positions).
// Strings' bytes, array elements and dictionaries depend on the records;
// they grow with the first inserts that need them.
func (c *flowColumns) reserve(rows int) {
	for _, col := range c.input {
		reserveColumn(col.Data, rows)
	}
}

func reserveColumn(col proto.ColInput, rows int) {
	switch c := col.(type) {
	case *proto.ColDateTime64:
		c.Data = slices.Grow(c.Data, rows)
	case *proto.ColUInt8:
		*c = slices.Grow(*c, rows)
	case *proto.ColUInt16:
		*c = slices.Grow(*c, rows)
	case *proto.ColUInt32:
		*c = slices.Grow(*c, rows)
	case *proto.ColUInt64:
		*c = slices.Grow(*c, rows)
	case *proto.ColInt64:
		*c = slices.Grow(*c, rows)
	case *enumColumn:
		c.ColEnum8 = slices.Grow(c.ColEnum8, rows)
	case *proto.ColStr:
		c.Pos = slices.Grow(c.Pos, rows)
	case *lowCardinality[string]:
		c.keys8 = slices.Grow(c.keys8, rows)
	case *lowCardinality[proto.IPv6]:
		c.keys8 = slices.Grow(c.keys8, rows)
	case *lowCardinalityArray:
		c.offsets = slices.Grow(c.offsets, rows)
	case *stringArray:
		c.offsets = slices.Grow(c.offsets, rows)
	default:
		panic(fmt.Sprintf("no reserve for column type %T", col))
	}
}
