package store

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
	gproto "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/dev/chtest"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
	"github.com/trawl-dev/trawl/internal/flowid"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

func openInternal(t *testing.T) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, Config{Retention: filtertest.Retention(), DSN: chtest.Database(t), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

// labelledFlows are flows shaped like the relay benchmark's: both endpoints
// enriched with three labels and a workload, 200 pods, some policies.
func labelledFlows(n int) []*flowv1.Flow {
	out := make([]*flowv1.Flow, n)
	for i := range out {
		src, dst := i%200, (i*7+3)%200
		ep := func(p int) *flowv1.Endpoint {
			ns, wl := fmt.Sprintf("team-%02d", p%20), fmt.Sprintf("svc-%d", p/20%5)
			return &flowv1.Endpoint{Namespace: ns, PodName: fmt.Sprintf("%s-7d9f%04x-%05x", wl, p, p*7919),
				Labels:    []string{"k8s:app=" + wl, "k8s:io.kubernetes.pod.namespace=" + ns, fmt.Sprintf("k8s:pod-template-hash=7d9f%d", p%7)},
				Workloads: []*flowv1.Workload{{Name: wl, Kind: "Deployment"}}}
		}
		at := filtertest.Base.Add(time.Duration(i) * time.Millisecond)
		f := &flowv1.Flow{Time: timestamppb.New(at), Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE,
			Uuid: flowid.Derive("node-1", "boot-1", uint64(i/1000), i%1000), NodeName: "node-1",
			IP:     &flowv1.IP{Source: fmt.Sprintf("10.1.%d.%d", src/250, 2+src%250), Destination: fmt.Sprintf("10.2.%d.%d", dst/250, 2+dst%250), IpVersion: flowv1.IPVersion_IPv4},
			L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: uint32(32768 + i%28000), DestinationPort: 443, Flags: &flowv1.TCPFlags{ACK: true}}}},
			Source: ep(src), Destination: ep(dst), TrafficDirection: flowv1.TrafficDirection_EGRESS,
			Interface:        &flowv1.NetworkInterface{Index: uint32(10 + src), Name: fmt.Sprintf("cali%08x", src*2654435761)},
			ObservationPoint: "tcx-ingress", Netns: 4026532000 + uint64(src), IsReply: wrapperspb.Bool(false),
			FirstSeen: timestamppb.New(at.Add(-time.Second)), LastSeen: timestamppb.New(at), Packets: 10, Bytes: 6000,
		}
		if i%10 < 4 {
			f.IngressAllowedBy = []*flowv1.Policy{{Namespace: f.Destination.Namespace, Name: "allow-web", Kind: "NetworkPolicy"}}
		}
		out[i] = f
	}
	return out
}

// The queue is bounded by the batches' encoded bytes while it holds them
// as columns: that bounds its memory only if the columns of an insert take
// no more than the encoded batches they hold.
func TestColumnsOfAnInsertTakeLessMemoryThanItsEncodedBatches(t *testing.T) {
	fs := labelledFlows(34_000) // an insert of the default queue's half
	encoded := 0
	for _, f := range fs {
		encoded += gproto.Size(f)
	}
	c := newFlowColumns()
	addFlows(c, fs, 1)
	perRow := float64(c.memBytes()) / float64(len(fs))
	t.Logf("columns %.0f B per row, encoded %.0f B per row", perRow, float64(encoded)/float64(len(fs)))
	if c.memBytes() >= encoded {
		t.Errorf("the columns of %d flows take %d B, their encoding %d B", len(fs), c.memBytes(), encoded)
	}
}

func TestLowCardinalityKeysReadBackAcrossTheirWidths(t *testing.T) {
	for _, tc := range []struct {
		name     string
		distinct int
		width    proto.CardinalityKey
	}{
		{"256 values fit one byte per row", 256, proto.KeyUInt8},
		{"257 values take two bytes per row", 257, proto.KeyUInt16},
		{"65,537 values take four bytes per row", 65_537, proto.KeyUInt32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newLowCardinalityString()
			var want []string
			for i := range 2 * tc.distinct {
				v := fmt.Sprint(i % tc.distinct)
				c.add(v)
				want = append(want, v)
			}
			if c.width != tc.width {
				t.Errorf("key width %v, want %v", c.width, tc.width)
			}
			for i, v := range want {
				if got := c.value(i); got != v {
					t.Fatalf("row %d reads %q, want %q", i, got, v)
				}
			}
		})
	}
}

// A value found by its bytes' address (a string interned by the stream's
// decoder, seen before) reads back as the value, whether its rows repeat
// the same bytes or copies of them, in one insert and the next (a reset
// forgets the addresses with the dictionary).
func TestLowCardinalityValuesReadBackWhetherTheyRepeatTheirBytesOrNot(t *testing.T) {
	interned := make([]string, 300)
	for i := range interned {
		interned[i] = fmt.Sprintf("value-%d", i)
	}
	r := rand.New(rand.NewPCG(1, 2))
	c := newLowCardinalityString()
	for _, name := range []string{"first insert", "after a reset"} {
		t.Run(name, func(t *testing.T) {
			c.Reset()
			var want []string
			for range 5000 {
				v := interned[r.IntN(len(interned))]
				if r.IntN(4) == 0 {
					v = strings.Clone(v)
				}
				c.add(v)
				want = append(want, v)
			}
			for i, v := range want {
				if got := c.value(i); got != v {
					t.Fatalf("row %d reads %q, want %q", i, got, v)
				}
			}
			if n := c.dict.Rows(); n > len(interned) {
				t.Errorf("the dictionary holds %d values for %d distinct ones", n, len(interned))
			}
		})
	}
}

// The wire form of the columns as ClickHouse reads it: LowCardinality keys
// of every width, arrays of them, empty arrays and strings.
func TestClickHouseReadsTheColumnsAsWritten(t *testing.T) {
	s := openInternal(t)
	ctx := context.Background()
	table := s.d.table("wire")
	if err := s.conn.Exec(ctx, "CREATE TABLE "+table+" (n UInt64, s LowCardinality(String), a Array(LowCardinality(String)), b Array(String)) ENGINE = MergeTree ORDER BY n"); err != nil {
		t.Fatal(err)
	}
	for _, rows := range []int{10, 300, 70_000} {
		t.Run(fmt.Sprintf("%d rows, as many distinct values", rows), func(t *testing.T) {
			if err := s.conn.Exec(ctx, "TRUNCATE TABLE "+table); err != nil {
				t.Fatal(err)
			}
			n, lc, arr, strs := new(proto.ColUInt64), newLowCardinalityString(), newLowCardinalityArray(), newStringArray()
			for i := range rows {
				n.Append(uint64(i))
				lc.add(fmt.Sprint("v", i))
				var row []string
				for j := range i % 3 { // empty arrays too
					row = append(row, fmt.Sprint("e", i+j))
				}
				arr.add(row)
				strs.add(row)
			}
			err := s.ins.do(ctx, ch.Query{Body: "INSERT INTO " + table + " (n, s, a, b) VALUES",
				Input: namedInput([]string{"n", "s", "a", "b"}, n, lc, arr, strs)})
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.conn.Query(ctx, "SELECT n, s, a, b FROM "+table+" ORDER BY n")
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			i := 0
			for ; got.Next(); i++ {
				var gn uint64
				var gs string
				var ga, gb []string
				if err := got.Scan(&gn, &gs, &ga, &gb); err != nil {
					t.Fatal(err)
				}
				if gn != uint64(i) || gs != lc.value(i) || !slices.Equal(ga, arr.value(i)) || !slices.Equal(gb, strs.value(i)) {
					t.Fatalf("row %d reads (%d, %q, %q, %q), want (%d, %q, %q, %q)", i, gn, gs, ga, gb, i, lc.value(i), arr.value(i), strs.value(i))
				}
			}
			if i != rows {
				t.Errorf("read %d rows, want %d", i, rows)
			}
		})
	}
}

// A retry whose first attempt was stored (its answer lost) is the same
// insert with the same token: ClickHouse keeps one copy in flows and counts
// it once in the rollups. Another token is another insert.
func TestAnIdenticalInsertSentAgainIsStoredOnceInFlowsAndRollups(t *testing.T) {
	s := openInternal(t)
	ctx := context.Background()
	fs := labelledFlows(1000)
	c := newFlowColumns()
	addFlows(c, fs, BatchID("node-1/boot-1/1"))
	for range 2 {
		if err := s.insertInput(ctx, "flows", "token-1", "", c.input); err != nil {
			t.Fatal(err)
		}
	}
	var rows, rolled uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.d.table("flows")).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := s.conn.QueryRow(ctx, "SELECT sum(bytes) FROM "+s.d.table("flows_1m")).Scan(&rolled); err != nil {
		t.Fatal(err)
	}
	if rows != 1000 || rolled != 1000*6000 {
		t.Errorf("after the same insert twice: %d rows, %d bytes rolled up; want 1000 rows, %d bytes", rows, rolled, 1000*6000)
	}
	if err := s.insertInput(ctx, "flows", "token-2", "", c.input); err != nil {
		t.Fatal(err)
	}
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.d.table("flows")).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 2000 {
		t.Errorf("an insert under another token left %d rows, want 2000", rows)
	}
}
