package collect

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/agent/datapath"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// The retransmit rings are tested as the collector's other maps are: the
// real kernel map (loaded, not attached), written by the test as the
// programs would (tcp_retrans.c: the slot, then the head).

// ringWriter writes one row of a retransmit ring map.
type ringWriter struct {
	t    *testing.T
	dp   *datapath.Datapath
	row  uint32
	ring bpf.TcpRetransRetransRing
}

func newRetransCollector(t *testing.T) (*Collector, *datapath.Datapath, *capture) {
	t.Helper()
	c, dp, pub := newTestCollector(t, Config{FateWait: time.Nanosecond})
	spec, err := bpf.LoadTcpRetrans()
	if err != nil {
		t.Fatal(err)
	}
	var maps bpf.TcpRetransMaps
	if err := spec.LoadAndAssign(&maps, nil); err != nil { // one CPU's rows
		t.Fatalf("load the retransmit rings: %v", err)
	}
	t.Cleanup(func() { maps.Close() })
	dp.Retrans = &bpf.TcpRetransObjects{TcpRetransMaps: maps}
	c.initRetrans() // as New does when the datapath has the rings
	return c, dp, pub
}

func (w *ringWriter) write(slots ...bpf.TcpRetransRetransSlot) {
	w.t.Helper()
	for _, s := range slots {
		w.ring.Slots[w.ring.Head%retransSlots] = s
		w.ring.Head++
	}
	if err := w.dp.Retrans.RetransRings.Put(w.row, &w.ring); err != nil {
		w.t.Fatal(err)
	}
}

func slot(k bpf.FlowFlowKey, kind bpf.TcpRetransRetransKind, sock uint64, total uint32, segs uint16) bpf.TcpRetransRetransSlot {
	var s bpf.TcpRetransRetransSlot
	s.Tuple = k.Tuple
	s.Sock, s.Total, s.Segs, s.Kind = sock, total, segs, uint8(kind)
	return s
}

// retransOf is the retransmits the flow's AGGREGATE records carry.
func retransOf(recs []*flowv1.Flow, sport uint32) (n uint32) {
	for _, f := range recs {
		if f.GetL4().GetTCP().GetSourcePort() == sport {
			n += f.GetTcpHealth().GetRetransmits()
		}
	}
	return n
}

const (
	evRetrans  = bpf.TcpRetransRetransKindRETRANS_EVENT
	evState    = bpf.TcpRetransRetransKindRETRANS_STATE
	evAccepted = bpf.TcpRetransRetransKindRETRANS_ACCEPTED
	evSynAck   = bpf.TcpRetransRetransKindRETRANS_SYNACK
)

func TestRetransmitsAreCountedFromEachSocketsTotal(t *testing.T) {
	syn, synAck, ack := uint32(l4.SYN), uint32(l4.SYN|l4.ACK), uint32(l4.ACK)
	for _, tc := range []struct {
		name       string
		firstFlags uint32
		events     func(k bpf.FlowFlowKey) []bpf.TcpRetransRetransSlot
		want       uint32
	}{
		{"a client entry that began with its SYN counts the socket's whole total", syn,
			func(k bpf.FlowFlowKey) []bpf.TcpRetransRetransSlot {
				// The first event the program ran for came after two it missed.
				return []bpf.TcpRetransRetransSlot{slot(k, evRetrans, 7, 3, 1), slot(k, evRetrans, 7, 5, 2)}
			}, 5},
		{"an event read after a later one of the same socket counts once", syn,
			func(k bpf.FlowFlowKey) []bpf.TcpRetransRetransSlot {
				return []bpf.TcpRetransRetransSlot{slot(k, evRetrans, 7, 5, 2), slot(k, evRetrans, 7, 3, 1), slot(k, evState, 7, 5, 0)}
			}, 5},
		{"a socket met mid-life counts from the event at hand, and its close adds what it missed since", ack,
			func(k bpf.FlowFlowKey) []bpf.TcpRetransRetransSlot {
				return []bpf.TcpRetransRetransSlot{slot(k, evRetrans, 7, 10, 2), slot(k, evState, 7, 13, 0)}
			}, 5},
		{"an accepted socket starts at its total when accepted, after its listener's SYN-ACKs sent again", synAck,
			func(k bpf.FlowFlowKey) []bpf.TcpRetransRetransSlot {
				return []bpf.TcpRetransRetransSlot{slot(k, evSynAck, 0, 0, 1), slot(k, evSynAck, 0, 0, 1),
					slot(k, evAccepted, 7, 2, 0), slot(k, evRetrans, 7, 4, 2)}
			}, 4},
		{"a later socket on the tuple counts from its own first event", syn,
			func(k bpf.FlowFlowKey) []bpf.TcpRetransRetransSlot {
				return []bpf.TcpRetransRetransSlot{slot(k, evRetrans, 7, 3, 1), slot(k, evRetrans, 8, 9, 1)}
			}, 4},
		{"a socket's cookie made mid-life (a new identity) counts from the event at hand", ack,
			func(k bpf.FlowFlowKey) []bpf.TcpRetransRetransSlot {
				return []bpf.TcpRetransRetransSlot{slot(k, evRetrans, 0xffff888000001000, 4, 1), slot(k, evRetrans, 42, 6, 2)}
			}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, dp, pub := newRetransCollector(t)
			k := tcpKey(40000, 80)
			now := monoNow()
			if err := dp.Flow.Flows.Put(k, bpf.FlowFlowAgg{FirstNs: now, LastNs: now, Packets: 10, Bytes: 1000, FirstTcpFlags: tc.firstFlags}); err != nil {
				t.Fatal(err)
			}
			w := &ringWriter{t: t, dp: dp}
			w.write(tc.events(k)...)
			c.Poll(true)
			if got := retransOf(aggregates(pub.take()), 40000); got != tc.want {
				t.Errorf("records carry %d retransmits, want %d", got, tc.want)
			}
			if c.retrans.lost != 0 {
				t.Errorf("%d events counted lost, want none", c.retrans.lost)
			}
		})
	}
}

func TestARetransmissionOfAFlowWithoutAnEntryIsCountedNotRecorded(t *testing.T) {
	c, dp, pub := newRetransCollector(t)
	w := &ringWriter{t: t, dp: dp}
	w.write(slot(tcpKey(40001, 80), evRetrans, 7, 1, 1))
	c.Poll(true)
	if got := aggregates(pub.take()); len(got) != 0 {
		t.Errorf("records %v for a flow with no entry", got)
	}
	if c.retrans.noFlow != 1 || c.Totals()["tcp_retrans_no_flow"] != 1 {
		t.Errorf("no-flow events %d (heartbeat %d), want 1", c.retrans.noFlow, c.Totals()["tcp_retrans_no_flow"])
	}
}

func TestEventsOverwrittenBeforeTheyWereReadAreLostEventsAndRecordsClaimNoMore(t *testing.T) {
	for _, tc := range []struct {
		name       string
		firstFlags uint32
		want       uint32 // retransmits in the records
	}{
		// The socket's later events carry its total: the lost ones come back.
		{"a socket whose whole total counts: exact despite the loss", uint32(l4.SYN), 74},
		// Met mid-life, the first event read starts the count: the lost
		// events' segments are missing, and the lost-events record says
		// how many events were lost.
		{"a socket met mid-life: short by the lost events, never above", uint32(l4.ACK), 63},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, dp, pub := newRetransCollector(t)
			k := tcpKey(40002, 80)
			now := monoNow()
			if err := dp.Flow.Flows.Put(k, bpf.FlowFlowAgg{FirstNs: now, LastNs: now, Packets: 10, Bytes: 1000, FirstTcpFlags: tc.firstFlags}); err != nil {
				t.Fatal(err)
			}
			w := &ringWriter{t: t, dp: dp}
			// 74 events between two reads: the row holds the last 64, and
			// the oldest of those may be mid-overwrite for all the reader
			// can tell (the next event would write its slot): 11 lost.
			var events []bpf.TcpRetransRetransSlot
			for total := uint32(1); total <= 74; total++ {
				events = append(events, slot(k, evRetrans, 7, total, 1))
			}
			w.write(events...)
			c.Poll(true)
			recs := pub.take()
			if got := retransOf(aggregates(recs), 40002); got != tc.want {
				t.Errorf("records carry %d retransmits, want %d", got, tc.want)
			}
			var lost uint64
			for _, r := range recs {
				if le := r.GetLostEvents(); le != nil && le.Source == flowv1.LostEventSource_RINGBUF_RESERVE_FAILED {
					lost += le.NumEventsLost
				}
			}
			if lost != 11 {
				t.Errorf("lost-events records say %d, want 11", lost)
			}
			var m dto.Metric
			if err := c.m.LostEvents.WithLabelValues(causeRetransOverrun).Write(&m); err != nil {
				t.Fatal(err)
			}
			if got := m.GetCounter().GetValue(); got != 11 {
				t.Errorf("lost-events metric %v, want 11", got)
			}
		})
	}
}

func TestASlotIsAppliedOnlyWhenTheNextReadShowsItWasNotOverwritten(t *testing.T) {
	c, dp, pub := newRetransCollector(t)
	k := tcpKey(40003, 80)
	now := monoNow()
	if err := dp.Flow.Flows.Put(k, bpf.FlowFlowAgg{FirstNs: now, LastNs: now, Packets: 10, Bytes: 1000, FirstTcpFlags: uint32(l4.ACK)}); err != nil {
		t.Fatal(err)
	}
	w := &ringWriter{t: t, dp: dp}
	w.write(slot(k, evRetrans, 7, 1, 1), slot(k, evRetrans, 7, 2, 1))
	c.readRetrans() // copy 0: the events may be mid-write in it
	c.readRetrans() // copy 1: whole, unless the next read shows them overwritten
	if c.retrans.applied != 0 {
		t.Fatalf("%d events applied before a read proved them whole", c.retrans.applied)
	}
	// A row's worth of another socket's events overwrites both slots
	// before the read that would prove copy 1 whole: the collector cannot
	// tell whether copy 1 was taken before or during the overwrite.
	var events []bpf.TcpRetransRetransSlot
	for i := uint32(1); i <= uint32(retransSlots); i++ {
		events = append(events, slot(k, evRetrans, 8, i, 1))
	}
	w.write(events...)
	c.Poll(true)
	// Socket 7's two, and socket 8's first (its slot is the next to be
	// written: the reader cannot tell it whole).
	if c.retrans.lost != 3 {
		t.Errorf("%d events lost, want 3", c.retrans.lost)
	}
	// Socket 8 was met mid-life at its total 2: 63.
	if got := retransOf(aggregates(pub.take()), 40003); got != 63 {
		t.Errorf("records carry %d retransmits, want 63", got)
	}
}

func TestARowCopyWhoseHeadWentBackwardsIsNotTrusted(t *testing.T) {
	c, dp, pub := newRetransCollector(t)
	k := tcpKey(40004, 80)
	now := monoNow()
	if err := dp.Flow.Flows.Put(k, bpf.FlowFlowAgg{FirstNs: now, LastNs: now, Packets: 10, Bytes: 1000, FirstTcpFlags: uint32(l4.ACK)}); err != nil {
		t.Fatal(err)
	}
	w := &ringWriter{t: t, dp: dp}
	w.write(slot(k, evRetrans, 7, 1, 1), slot(k, evRetrans, 7, 2, 1))
	c.readRetrans()
	// A head read torn high, as if 300 events had been written: had it
	// been trusted, the next copy's slots 2..299 (stale or empty) would
	// be applied and those events skipped for good.
	c.retrans.rows[0].prevHead = 300
	c.readRetrans()
	if c.retrans.torn != 1 {
		t.Fatalf("%d torn copies counted, want 1", c.retrans.torn)
	}
	if c.retrans.applied != 0 || c.retrans.lost != 0 {
		t.Fatalf("applied %d, lost %d from a copy with a torn head, want none", c.retrans.applied, c.retrans.lost)
	}
	// The events are applied from the next reads.
	w.write(slot(k, evRetrans, 7, 3, 1))
	c.Poll(true)
	if c.retrans.applied != 3 || c.retrans.lost != 0 {
		t.Errorf("applied %d, lost %d after the torn copy, want 3 and 0", c.retrans.applied, c.retrans.lost)
	}
	// Socket 7 is counted from its total before its first event (0): all 3.
	if got := retransOf(aggregates(pub.take()), 40004); got != 3 {
		t.Errorf("records carry %d retransmits, want 3", got)
	}
}
