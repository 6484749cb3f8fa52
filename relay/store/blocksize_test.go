package store

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/compress"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/trawl-dev/trawl/dev/benchdata"
)

// encodeAllocated encodes in as ch-go's client does (proto.Block.EncodeBlock
// into buf) and returns the bytes allocated meanwhile.
func encodeAllocated(t *testing.T, buf *proto.Buffer, in proto.Input) uint64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b := proto.Block{Columns: len(in), Rows: in[0].Data.Rows(), Info: proto.BlockInfo{BucketNum: -1}}
	if err := b.EncodeBlock(buf, proto.Version, in); err != nil {
		t.Fatalf("encode block: %v", err)
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// After an insert failed, the inserter dials again and ch-go encodes the
// next insert into a new, empty buffer: the catch-up after an outage, with
// the largest inserts. Grown by append, that buffer is copied over and
// over (several times the block in large allocations); grown once from
// what the table's rows took before, it is allocated about once.
func TestAnInsertIntoAFreshBufferAllocatesItsBlockAboutOnce(t *testing.T) {
	cols := newFlowColumns()
	addFlows(cols, labelledFlows(20000), 1)
	var sizes blockSizes

	first := new(proto.Buffer)
	encodeAllocated(t, first, sizes.input("flows", cols.len(), cols.input))
	block := len(first.Buf)

	for _, tc := range []struct {
		name string
		rows int
	}{
		{"the same rows again", 20000},
		{"more rows than before", 30000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			more := newFlowColumns()
			addFlows(more, labelledFlows(tc.rows), 2)
			fresh := new(proto.Buffer) // a new client's
			got := encodeAllocated(t, fresh, sizes.input("flows", more.len(), more.input))
			want := len(fresh.Buf)
			t.Logf("block %d bytes (first %d), %d allocated encoding it", want, block, got)
			if got > uint64(want)*3/2 {
				t.Errorf("encoding a %d-byte block into a fresh buffer allocated %d bytes, more than 1.5 times the block", want, got)
			}
		})
	}
}

// The wrapped columns encode exactly as the columns do.
func TestGrowingTheBufferLeavesTheEncodedBlockAsItWas(t *testing.T) {
	cols := newFlowColumns()
	addFlows(cols, labelledFlows(3000), 1)
	var sizes blockSizes
	plain, wrapped := new(proto.Buffer), new(proto.Buffer)
	encodeAllocated(t, plain, cols.input)
	for range 2 { // the second one grows the buffer first
		wrapped.Reset()
		encodeAllocated(t, wrapped, sizes.input("flows", cols.len(), cols.input))
		if string(wrapped.Buf) != string(plain.Buf) {
			t.Fatalf("the block encoded through the wrapped columns differs from the plain one (%d against %d bytes)", len(wrapped.Buf), len(plain.Buf))
		}
	}
}

// A failed insert closes the inserter's client and the next insert dials
// again: the new client must encode into the buffer the old one grew, not
// grow a new one from nothing during the catch-up after an outage.
func TestAClientDialledAgainKeepsTheInsertBuffer(t *testing.T) {
	s := openInternal(t)
	ctx := context.Background()
	c := newFlowColumns()
	addFlows(c, labelledFlows(1000), BatchID("node-1/boot-1/1"))
	if err := s.insertInput(ctx, "flows", "token-1", "", c.input); err != nil {
		t.Fatal(err)
	}
	grown := cap(s.ins.buf.Buf)
	if grown == 0 {
		t.Fatal("the first insert did not encode into the inserter's buffer")
	}
	// What a failed insert does: the client is closed, the next one dialled.
	if err := s.ins.close(); err != nil {
		t.Fatal(err)
	}
	if err := s.insertInput(ctx, "flows", "token-2", "", c.input); err != nil {
		t.Fatal(err)
	}
	if got := cap(s.ins.buf.Buf); got != grown {
		t.Errorf("after a new dial the insert buffer holds %d bytes, want the %d grown before", got, grown)
	}
}

// ch-go encodes a packet into the client's buffer and resets the buffer
// when it writes it out; an insert whose connection failed (the server
// stopped mid-insert, so the reading side gave up and the writing side
// returned before its write) leaves the encoded block there. A client
// dialled with that buffer sent it ahead of its Hello: the server refused
// the handshake ("Unexpected packet from client (expected Hello, got 1)")
// and the embedded server died of it (CI, TestWriterSurvivesClickHouse
// RestartWithoutLossOrDuplicates).
func TestAClientDialledAfterAFailedInsertSendsNothingLeftFromIt(t *testing.T) {
	s := openInternal(t)
	ctx := context.Background()
	c := newFlowColumns()
	addFlows(c, labelledFlows(10), BatchID("node-1/boot-1/1"))
	if err := s.insertInput(ctx, "flows", "token-1", "", c.input); err != nil {
		t.Fatal(err)
	}
	// What the failed insert leaves: a Data packet's first bytes, unsent.
	s.ins.buf.Buf = append(s.ins.buf.Buf, 1, 0, 1, 0, 2, 0xff, 0xff, 0xff, 0xff, 0)
	if err := s.ins.close(); err != nil {
		t.Fatal(err)
	}
	if err := s.insertInput(ctx, "flows", "token-2", "", c.input); err != nil {
		t.Fatalf("the insert after a new dial: %v", err)
	}
}

// BenchmarkInsertBlockOnTheWire reports what an insert of the relay
// benchmark's flows (50,000 rows, as dense in time as 150k flows/s) puts on
// the wire to ClickHouse: the encoded block as sent uncompressed (the
// default) and as LZ4 compresses it (compress=lz4 in the DSN), in bytes
// per flow, and the time LZ4 takes per block.
//
//	go test -run '^$' -bench InsertBlockOnTheWire ./relay/store/
func BenchmarkInsertBlockOnTheWire(b *testing.B) {
	const n = 50000
	cols := newFlowColumns()
	for _, batch := range benchdata.GenerateSpan(n, time.Now(), n*time.Second/150000) {
		addFlows(cols, batch.Flows, 1)
	}
	buf := new(proto.Buffer)
	block := proto.Block{Columns: len(cols.input), Rows: cols.len(), Info: proto.BlockInfo{BucketNum: -1}}
	if err := block.EncodeBlock(buf, proto.Version, cols.input); err != nil {
		b.Fatal(err)
	}
	w := compress.NewWriter(compress.LevelZero, compress.LZ4)
	b.ResetTimer()
	for b.Loop() {
		if err := w.Compress(buf.Buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf.Buf))/n, "raw-B/flow")
	b.ReportMetric(float64(len(w.Data))/n, "lz4-B/flow")
}
