package collect

import (
	"testing"
	"time"
	"unsafe"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Records of flows whose packets the kernel dropped, written into the real
// maps as flow.c and drop.c would.

func instants(recs []*flowv1.Flow) (out []*flowv1.Flow) {
	for _, f := range recs {
		if k := f.GetEventKind(); k == flowv1.EventKind_FLOW_NEW || k == flowv1.EventKind_FLOW_CLOSE {
			out = append(out, f)
		}
	}
	return out
}

func flows(c *capture) (out []*flowv1.Flow) {
	for _, r := range c.take() {
		if f := r.GetFlow(); f != nil {
			out = append(out, f)
		}
	}
	return out
}

func TestAggregatesCountOnlyDeliveredPackets(t *testing.T) {
	tests := []struct {
		name              string
		seen, dropped     uint64 // packets; 100 bytes each
		wantRecords       int
		wantPkts, wantLen uint64
	}{
		{"every packet delivered", 10, 0, 1, 10, 1000},
		{"every packet dropped: no FORWARDED record at all", 10, 10, 0, 0, 0},
		{"half dropped: the delivered half", 10, 5, 1, 5, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, dp, pub := newTestCollector(t, Config{FateWait: time.Second})
			quiet := monoNow() - uint64(3*time.Second) // fates known; the window is past the active timeout
			v := bpf.FlowFlowAgg{FirstNs: quiet - 1, LastNs: quiet, Packets: tt.seen, Bytes: 100 * tt.seen,
				DropPackets: tt.dropped, DropBytes: 100 * tt.dropped}
			if err := dp.Flow.Flows.Put(flowKey(7), v); err != nil {
				t.Fatal(err)
			}
			c.Poll(false)
			got := aggregates(pub.take())
			if len(got) != tt.wantRecords {
				t.Fatalf("%d records %v, want %d", len(got), got, tt.wantRecords)
			}
			if len(got) == 1 && (got[0].Verdict != flowv1.Verdict_FORWARDED || got[0].Packets != tt.wantPkts || got[0].Bytes != tt.wantLen) {
				t.Errorf("record %s %d packets %d bytes, want FORWARDED %d and %d", got[0].Verdict, got[0].Packets, got[0].Bytes, tt.wantPkts, tt.wantLen)
			}
		})
	}
}

func TestABusyFlowReportsOnlyPacketsWhoseFateIsKnown(t *testing.T) {
	c, dp, pub := newTestCollector(t, Config{FlushInterval: time.Second, FateWait: 3 * time.Second, IdleTimeout: time.Minute})
	t0 := monoNow()
	put := func(last, seen, dropped uint64) {
		t.Helper()
		v := bpf.FlowFlowAgg{FirstNs: t0, LastNs: last, Packets: seen, Bytes: 100 * seen, DropPackets: dropped, DropBytes: 100 * dropped}
		if err := dp.Flow.Flows.Put(flowKey(9), v); err != nil {
			t.Fatal(err)
		}
	}
	poll := func(at time.Duration) []*flowv1.Flow {
		c.skew = at
		c.Poll(false)
		return aggregates(pub.take())
	}
	// Packets still arriving: their fate may be pending, nothing is claimed.
	put(t0, 10, 0)
	if got := poll(0); len(got) != 0 {
		t.Fatalf("at 0 s: %v, want nothing before any packet's fate is known", got)
	}
	// 4 s later, 10 more seen and 3 drops so far: the 10 seen before the
	// first poll are 3 s old, so at least 10-3 of them arrived.
	put(t0+uint64(4*time.Second), 20, 3)
	got := poll(4 * time.Second)
	if len(got) != 1 || got[0].Packets != 7 {
		t.Fatalf("at 4 s: %v, want the lower bound of 7 delivered packets", got)
	}
	// Quiet for the fate wait: the rest is exact, and the totals add up.
	got = poll(8 * time.Second)
	if len(got) != 1 || got[0].Packets != 10 || got[0].Bytes != 1000 {
		t.Fatalf("at 8 s: %v, want the remaining 10 delivered packets (20 seen - 3 dropped - 7 reported)", got)
	}
}

// event runs a flow event through the collector as the ring buffer would.
func event(c *Collector, k bpf.FlowFlowKey, kind bpf.FlowEventKind, flags uint16) {
	ev := bpf.FlowFlowEvent{Key: k, TsNs: monoNow(), Ifindex: 7, Bytes: 60, TcpFlags: flags, Kind: uint8(kind)}
	c.handleFlowEvent(unsafe.Slice((*byte)(unsafe.Pointer(&ev)), unsafe.Sizeof(ev)))
}

func tcpKey(sport, dport uint16) bpf.FlowFlowKey {
	k := flowKey(sport)
	k.Tuple.Proto, k.Tuple.Dport = 6, dport
	return k
}

func TestNewFlowEventsWaitForTheirFirstPacketsFate(t *testing.T) {
	noSocket := func(c *Collector) uint32 { n, _ := c.dp.Reasons.Number("NO_SOCKET"); return n }

	t.Run("a new flow whose first packet was dropped is a DROPPED event with the reason", func(t *testing.T) {
		c, dp, pub := newTestCollector(t, Config{FateWait: time.Hour})
		k := tcpKey(40000, 5432)
		event(c, k, bpf.FlowEventKindEV_FLOW_NEW, l4.SYN)
		if got := flows(pub); len(got) != 0 {
			t.Fatalf("published %v before the fate was known", got)
		}
		// drop.c took the SYN back out of the flow.
		if err := dp.Flow.Flows.Put(k, bpf.FlowFlowAgg{Packets: 1, DropPackets: 1, DropReason: noSocket(c), FirstDropped: 1}); err != nil {
			t.Fatal(err)
		}
		c.settleKey(k) // what a drop event of the flow does
		got := instants(flows(pub))
		if len(got) != 1 || got[0].Verdict != flowv1.Verdict_DROPPED || got[0].DropReasonKernel != "NO_SOCKET" || got[0].DropClass != "no-socket" {
			t.Fatalf("got %v, want one DROPPED FLOW_NEW with NO_SOCKET / no-socket", got)
		}
	})

	t.Run("an answer in the other direction releases the new flow as FORWARDED at once", func(t *testing.T) {
		c, dp, pub := newTestCollector(t, Config{FateWait: time.Hour})
		k := tcpKey(40001, 80)
		if err := dp.Flow.Flows.Put(k, bpf.FlowFlowAgg{Packets: 1}); err != nil {
			t.Fatal(err)
		}
		event(c, k, bpf.FlowEventKindEV_FLOW_NEW, l4.SYN)
		event(c, reverse(k), bpf.FlowEventKindEV_FLOW_NEW, l4.SYN|l4.ACK)
		got := instants(flows(pub))
		if len(got) != 1 || got[0].Verdict != flowv1.Verdict_FORWARDED || got[0].L4.GetTCP().DestinationPort != 80 {
			t.Fatalf("got %v, want the SYN's FORWARDED event (the SYN-ACK still waits)", got)
		}
	})

	t.Run("a first packet delivered and a later one dropped keeps the new flow FORWARDED", func(t *testing.T) {
		c, dp, pub := newTestCollector(t, Config{FateWait: time.Hour})
		k := flowKey(5000)
		event(c, k, bpf.FlowEventKindEV_FLOW_NEW, 0)
		if err := dp.Flow.Flows.Put(k, bpf.FlowFlowAgg{Packets: 5, DropPackets: 1, DropReason: noSocket(c)}); err != nil {
			t.Fatal(err)
		}
		c.settleKey(k)
		got := instants(flows(pub))
		if len(got) != 1 || got[0].Verdict != flowv1.Verdict_FORWARDED || got[0].DropReasonKernel != "" {
			t.Fatalf("got %v, want one FORWARDED FLOW_NEW", got)
		}
	})

	t.Run("without news the event goes out after the fate wait", func(t *testing.T) {
		c, _, pub := newTestCollector(t, Config{FateWait: 50 * time.Millisecond})
		event(c, flowKey(6000), bpf.FlowEventKindEV_FLOW_NEW, 0)
		c.releaseDue(time.Now(), false)
		if got := flows(pub); len(got) != 0 {
			t.Fatalf("released %v before the wait was over", got)
		}
		c.releaseDue(time.Now().Add(time.Second), false)
		if got := instants(flows(pub)); len(got) != 1 || got[0].Verdict != flowv1.Verdict_FORWARDED {
			t.Fatalf("got %v, want one FORWARDED FLOW_NEW", got)
		}
	})

	t.Run("an ICMP echo reply answers its request", func(t *testing.T) {
		c, _, pub := newTestCollector(t, Config{FateWait: time.Hour})
		req := flowKey(8) // ICMP: type 8 in sport, code 0 in dport
		req.Tuple.Proto, req.Tuple.Dport = 1, 0
		event(c, req, bpf.FlowEventKindEV_FLOW_NEW, 0)
		rep := reverse(req)
		if rep.Tuple.Sport != 0 || rep.Tuple.Saddr != req.Tuple.Daddr {
			t.Fatalf("reverse of an echo request = %+v, want an echo reply from the destination", rep.Tuple)
		}
		event(c, rep, bpf.FlowEventKindEV_FLOW_NEW, 0)
		if got := instants(flows(pub)); len(got) != 1 || got[0].L4.GetICMPv4().GetType() != 8 {
			t.Fatalf("got %v, want the echo request released", got)
		}
	})
}

func TestDropsReportedFromAFlowsEntryBecomeOneDropRecordEach(t *testing.T) {
	c, dp, pub := newTestCollector(t, Config{FateWait: time.Second})
	noSocket, _ := dp.Reasons.Number("NO_SOCKET")
	quiet := monoNow() - uint64(3*time.Second)
	v := bpf.FlowFlowAgg{FirstNs: quiet - 1, LastNs: quiet, Packets: 6, Bytes: 600, DropPackets: 6, DropBytes: 600,
		SamePackets: 5, SameBytes: 500, DropReason: noSocket, DropNetns: 99}
	if err := dp.Flow.Flows.Put(flowKey(11), v); err != nil {
		t.Fatal(err)
	}
	c.Poll(false)
	got := aggregates(pub.take())
	if len(got) != 1 || got[0].EventKind != flowv1.EventKind_DROP || got[0].Packets != 5 || got[0].Bytes != 500 ||
		got[0].DropReasonKernel != "NO_SOCKET" || got[0].DropClass != "no-socket" || got[0].Netns != 99 {
		t.Fatalf("got %v, want one NO_SOCKET DROP record of the 5 later drops (the first went through the drop map)", got)
	}
	c.Poll(false)
	if got := aggregates(pub.take()); len(got) != 0 {
		t.Fatalf("a poll without new drops exported %v", got)
	}
}
