package collect

import (
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/agent/datapath"
	"github.com/trawl-dev/trawl/agent/dropreason"
	"github.com/trawl-dev/trawl/agent/metrics"
	"github.com/trawl-dev/trawl/internal/testbed/roottest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// The collector is tested against real kernel maps (loaded, not attached):
// the test writes entries as the programs would and polls.

type capture struct {
	mu   sync.Mutex
	recs []*observerv1.GetFlowsResponse
}

func (c *capture) Publish(r *observerv1.GetFlowsResponse) {
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
}

func (c *capture) take() []*observerv1.GetFlowsResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.recs
	c.recs = nil
	return out
}

func newTestCollector(t *testing.T, cfg Config) (*Collector, *datapath.Datapath, *capture) {
	return newTestCollectorSized(t, cfg, 1024)
}

func newTestCollectorSized(t *testing.T, cfg Config, flowMapSize uint32) (*Collector, *datapath.Datapath, *capture) {
	t.Helper()
	roottest.Require(t, "loads BPF programs")
	dp := &datapath.Datapath{Netns: 1}
	flowSpec, err := bpf.LoadFlow()
	if err != nil {
		t.Fatal(err)
	}
	flowSpec.Maps[bpf.FlowMapFlows].MaxEntries = flowMapSize
	if err := flowSpec.LoadAndAssign(&dp.Flow, nil); err != nil {
		t.Fatalf("load flow objects: %v", err)
	}
	var drop bpf.DropMaps
	spec, err := bpf.LoadDrop()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.LoadAndAssign(&drop, nil); err != nil {
		t.Fatalf("load drop maps: %v", err)
	}
	dp.Drop = &drop
	t.Cleanup(func() { dp.Flow.Close(); drop.Close() })
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("kernel BTF: %v", err)
	}
	tab, err := dropreason.Load(kspec)
	if err != nil {
		t.Fatalf("drop reasons: %v", err)
	}
	dp.Reasons = tab
	pub := &capture{}
	cfg.NodeName = "n1"
	return New(cfg, dp, pub, metrics.New(prometheus.NewRegistry())), dp, pub
}

func flowKey(sport uint16) bpf.FlowFlowKey {
	k := bpf.FlowFlowKey{}
	k.Tuple = bpf.FlowFlowTuple{Family: 4, Proto: 17, Sport: sport, Dport: 53}
	copy(k.Tuple.Saddr[:], []byte{10, 0, 0, 1})
	copy(k.Tuple.Daddr[:], []byte{10, 0, 0, 2})
	return k
}

func aggregates(recs []*observerv1.GetFlowsResponse) []*flowv1.Flow {
	var out []*flowv1.Flow
	for _, r := range recs {
		if f := r.GetFlow(); f.GetEventKind() == flowv1.EventKind_AGGREGATE || f.GetEventKind() == flowv1.EventKind_DROP {
			out = append(out, f)
		}
	}
	return out
}

func TestPollsExportDeltasAndEvictIdleFlows(t *testing.T) {
	// A fate wait of 1 ns: every packet's fate is known at once (fate_test.go
	// tests the wait).
	c, dp, pub := newTestCollector(t, Config{IdleTimeout: 10 * time.Second, FateWait: time.Nanosecond})
	now := monoNow()
	busy, idle := flowKey(1000), flowKey(2000)
	put := func(k bpf.FlowFlowKey, first, last, packets, bytes uint64) {
		t.Helper()
		if err := dp.Flow.Flows.Put(k, bpf.FlowFlowAgg{FirstNs: first, LastNs: last, Packets: packets, Bytes: bytes}); err != nil {
			t.Fatal(err)
		}
	}
	put(busy, now-uint64(6*time.Second), now, 10, 1000)
	put(idle, now-uint64(time.Minute), now-uint64(20*time.Second), 3, 300)

	c.Poll(false)
	got := aggregates(pub.take())
	if len(got) != 2 {
		t.Fatalf("first poll: %d records, want 2", len(got))
	}
	for _, f := range got {
		switch f.L4.GetUDP().SourcePort {
		case 1000:
			if f.Packets != 10 || f.Bytes != 1000 {
				t.Errorf("busy flow first record %d packets %d bytes, want 10, 1000", f.Packets, f.Bytes)
			}
		case 2000:
			if f.Packets != 3 || f.Bytes != 300 {
				t.Errorf("idle flow record %d packets %d bytes, want 3, 300", f.Packets, f.Bytes)
			}
		}
	}
	var v bpf.FlowFlowAgg
	if err := dp.Flow.Flows.Lookup(idle, &v); err == nil {
		t.Error("the idle flow is still in the map after its last export")
	}

	// Only what changed goes out, as a delta, one poll interval later.
	put(busy, now-uint64(6*time.Second), now+uint64(time.Millisecond), 15, 1600)
	c.skew = 5 * time.Second
	c.Poll(false)
	got = aggregates(pub.take())
	if len(got) != 1 || got[0].Packets != 5 || got[0].Bytes != 600 {
		t.Fatalf("second poll: %v, want one record of 5 packets and 600 bytes", got)
	}
	if !got[0].FirstSeen.AsTime().After(got[0].LastSeen.AsTime().Add(-time.Second)) {
		t.Errorf("second window starts at %v, want after the first window's end", got[0].FirstSeen.AsTime())
	}
	c.Poll(false)
	if got := aggregates(pub.take()); len(got) != 0 {
		t.Errorf("poll without changes exported %v", got)
	}
}

func TestANearlyFullMapEvictsIdleFlowsSooner(t *testing.T) {
	c, dp, pub := newTestCollectorSized(t, Config{FlushInterval: time.Second, IdleTimeout: 30 * time.Second}, 10)
	now := monoNow()
	for port := uint16(1); port <= 10; port++ {
		last := now - uint64(10*time.Second) // idle, but not for 30 s
		if err := dp.Flow.Flows.Put(flowKey(port), bpf.FlowFlowAgg{FirstNs: last, LastNs: last, Packets: 1, Bytes: 100}); err != nil {
			t.Fatal(err)
		}
	}
	c.Poll(false)
	if got := len(aggregates(pub.take())); got != 10 {
		t.Fatalf("first poll exported %d flows, want 10", got)
	}
	if c.flowEntries != 10 {
		t.Fatalf("%d entries kept, want 10 (idle for less than the timeout)", c.flowEntries)
	}
	// The map is full: the next poll evicts flows idle for a quarter of
	// the timeout.
	c.Poll(false)
	if c.flowEntries != 0 {
		t.Fatalf("%d entries left in a full map, want the idle ones evicted", c.flowEntries)
	}
}

func TestActiveTimeoutHoldsBusyFlowsUntilTheFinalPoll(t *testing.T) {
	c, dp, pub := newTestCollector(t, Config{FlushInterval: time.Second, ActiveTimeout: time.Hour})
	now := monoNow()
	if err := dp.Flow.Flows.Put(flowKey(1), bpf.FlowFlowAgg{FirstNs: now, LastNs: now, Packets: 4, Bytes: 400}); err != nil {
		t.Fatal(err)
	}
	c.Poll(false)
	if got := aggregates(pub.take()); len(got) != 0 {
		t.Fatalf("exported %v before the active timeout", got)
	}
	c.Poll(true)
	if got := aggregates(pub.take()); len(got) != 1 || got[0].Packets != 4 {
		t.Fatalf("final poll exported %v, want the 4 packets", got)
	}
}

func TestDropsAlreadySentAtOnceAreNotCountedAgain(t *testing.T) {
	c, dp, pub := newTestCollector(t, Config{})
	noSocket, _ := dp.Reasons.Number("NO_SOCKET")
	k := bpf.DropDropKey{Reason: noSocket, Netns: 99}
	k.Tuple = flowKey(5).Tuple
	now := monoNow()
	// The first drop went out through the ring buffer: the kernel leaves
	// the entry at zero packets.
	if err := dp.Drop.Drops.Put(k, bpf.DropDropAgg{FirstNs: now, LastNs: now}); err != nil {
		t.Fatal(err)
	}
	c.Poll(false)
	if got := aggregates(pub.take()); len(got) != 0 {
		t.Fatalf("exported %v for a drop already sent", got)
	}
	if err := dp.Drop.Drops.Put(k, bpf.DropDropAgg{FirstNs: now, LastNs: now + 1, Packets: 2, Bytes: 120}); err != nil {
		t.Fatal(err)
	}
	c.Poll(false)
	got := aggregates(pub.take())
	if len(got) != 1 || got[0].Packets != 2 || got[0].DropReasonKernel != "NO_SOCKET" || got[0].Verdict != flowv1.Verdict_DROPPED {
		t.Fatalf("exported %v, want one NO_SOCKET drop of 2 packets", got)
	}
}

func TestProgramLossCountersBecomeLostEvents(t *testing.T) {
	c, dp, pub := newTestCollector(t, Config{})
	perCPU := func(total uint64) []uint64 {
		v := make([]uint64, ebpf.MustPossibleCPU())
		v[0] = total
		return v
	}
	c.Poll(false) // baseline
	pub.take()
	for slot, n := range map[bpf.FlowCounter]uint64{
		bpf.FlowCounterCNT_MAP_FULL:     3,
		bpf.FlowCounterCNT_RATE_LIMITED: 7,
		bpf.FlowCounterCNT_MALFORMED:    1,
	} {
		if err := dp.Flow.Counters.Put(uint32(slot), perCPU(n)); err != nil {
			t.Fatal(err)
		}
	}
	c.Poll(false)
	got := map[flowv1.LostEventSource]uint64{}
	for _, r := range pub.take() {
		if le := r.GetLostEvents(); le != nil {
			got[le.Source] += le.NumEventsLost
			if le.NodeName != "n1" || r.NodeName != "n1" {
				t.Errorf("lost event without the node name: %v", r)
			}
		}
	}
	want := map[flowv1.LostEventSource]uint64{
		flowv1.LostEventSource_MAP_FULL:         3,
		flowv1.LostEventSource_RATE_LIMITED:     7,
		flowv1.LostEventSource_MALFORMED_PACKET: 1,
	}
	for src, n := range want {
		if got[src] != n {
			t.Errorf("%s: %d lost, want %d", src, got[src], n)
		}
	}
	c.Poll(false)
	for _, r := range pub.take() {
		if r.GetLostEvents() != nil {
			t.Errorf("unchanged counters reported again: %v", r)
		}
	}
	if tot := c.Totals(); tot["flow_map_full"] != 3 || tot["flow_rate_limited"] != 7 {
		t.Errorf("heartbeat counters %v, want flow_map_full 3 and flow_rate_limited 7", tot)
	}
}
