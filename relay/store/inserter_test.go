package store

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"testing"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
)

// A client dialled after a failed insert meets the catch-up's large
// inserts. Uncompressed (the default), it writes each block from the
// buffer the inserter kept and from the columns: it makes no copy of the
// block. Compressed, ch-go's new client would compress the block into a
// buffer of its own, as large as the block, grown anew after every dial.
func TestAnInsertAfterANewDialAllocatesNoCopyOfItsBlock(t *testing.T) {
	s := openInternal(t)
	ctx := context.Background()
	c := newFlowColumns()
	addFlows(c, labelledFlows(20000), BatchID("node-1/boot-1/1"))
	var sizes blockSizes
	if err := s.insertInput(ctx, "flows", "token-1", "", sizes.input("flows", c.len(), c.input)); err != nil {
		t.Fatal(err)
	}
	block := cap(s.ins.buf.Buf)
	if err := s.ins.close(); err != nil { // what a failed insert does
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := s.insertInput(ctx, "flows", "token-2", "", sizes.input("flows", c.len(), c.input)); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	got := after.TotalAlloc - before.TotalAlloc
	t.Logf("block buffer %d bytes; the insert after the dial allocated %d", block, got)
	if block < 1<<20 {
		t.Fatalf("the insert buffer holds %d bytes: too small a block to tell a copy of it from the dial's own allocations", block)
	}
	if got > uint64(block)/4 {
		t.Errorf("the insert after a new dial allocated %d bytes, more than a quarter of its %d-byte block: a copy of the block", got, block)
	}
}

// Compression to ClickHouse is the DSN's: what the native protocol knows
// inserts and reads back; what only HTTP knows is refused when the store
// opens, in one line that names the parameter.
func TestTheDSNsCompressionIsUsedForInsertsOrRefusedWhenTheProtocolLacksIt(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		param   string
		refused string // part of the error; "" when the insert must work
	}{
		{"", ""},
		{"compress=lz4", ""},
		{"compress=zstd", ""},
		{"compress=none", ""},
		{"compress=gzip", "compress=gzip: the native protocol compresses with lz4, lz4hc or zstd"},
	} {
		t.Run(tc.param, func(t *testing.T) {
			dsn := chtest.Database(t)
			if tc.param != "" {
				dsn += "?" + tc.param
			}
			s, err := Open(ctx, Config{Retention: filtertest.Retention(), DSN: dsn, Log: slog.New(slog.DiscardHandler)})
			if tc.refused != "" {
				if err == nil {
					s.Close()
					t.Fatalf("Open with %s succeeded; want %q", tc.param, tc.refused)
				}
				if !strings.Contains(err.Error(), tc.refused) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("Open with %s: %q; want one line containing %q", tc.param, err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatalf("open store: %v", err)
			}
			defer s.Close()
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			c := newFlowColumns()
			addFlows(c, labelledFlows(3000), BatchID("node-1/boot-1/1"))
			if err := s.insertInput(ctx, "flows", "token-1", "", c.input); err != nil {
				t.Fatalf("insert: %v", err)
			}
			var n uint64
			if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.d.table("flows")).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 3000 {
				t.Errorf("%d rows stored, want 3000", n)
			}
		})
	}
}
