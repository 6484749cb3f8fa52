// Package collect turns what the eBPF programs record into Trawl's records:
// it polls the flow and drop aggregation maps (deltas since the last poll,
// idle entries evicted), reads the instant-event ring buffers, watches the
// programs' loss counters, and publishes Flow and LostEvent records.
//
// Counting once: byte and packet totals come only from AGGREGATE records,
// and the flow program counts a forwarded packet only at the interface it
// entered the node through (see agent/bpf/flow.c). FLOW_NEW/FLOW_CLOSE
// events carry the packet that triggered them but are never totals. Every
// dropped packet is in exactly one DROP record: the instant one for the first
// drop of a (flow, reason), the polled aggregate for the rest.
//
// Verdict = fate: AGGREGATE records count only delivered packets, and instant
// events wait for their packet's fate (see fate.go).
package collect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/agent/datapath"
	"github.com/trawl-dev/trawl/agent/export"
	"github.com/trawl-dev/trawl/agent/metrics"
	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/flowid"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Config of the collector.
type Config struct {
	// NodeName goes into every record.
	NodeName string
	// BootID identifies this agent run; random when empty.
	BootID string
	// FlushInterval is how often the maps are polled. Default 5s.
	FlushInterval time.Duration
	// ActiveTimeout is the longest an aggregate record may span: a busy
	// flow is exported at the poll nearest to its window reaching it.
	// Default and minimum: FlushInterval (every poll exports what changed).
	ActiveTimeout time.Duration
	// IdleTimeout evicts flows without packets for that long. Default 30s.
	IdleTimeout time.Duration
	// FateWait is how long a packet's fate may take to be known: instant
	// events wait up to that long for it, and aggregates report packets
	// seen that long ago as delivered unless dropped. Default 4s: a
	// neighbour that never answers drops its queue after 3 s.
	FateWait time.Duration
	// SYNTimeout is how long a TCP connection attempt (SYNs only) may go
	// unanswered before it is reported as CONNECT_TIMEOUT. Default 3s.
	SYNTimeout time.Duration
	// DNSMatchSize caps the queries waiting for their response. Default
	// 65536.
	DNSMatchSize int
	// DNSMatchExpiry is how long a query waits for its response. Default
	// 10s: resolvers give up and retry within 5 s.
	DNSMatchExpiry time.Duration
	Log            *slog.Logger
}

func (c *Config) setDefaults() {
	if c.FlushInterval <= 0 {
		c.FlushInterval = 5 * time.Second
	}
	if c.ActiveTimeout < c.FlushInterval {
		c.ActiveTimeout = c.FlushInterval // a window cannot be shorter than a poll
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.FateWait <= 0 {
		c.FateWait = 4 * time.Second
	}
	if c.IdleTimeout < c.FateWait {
		c.IdleTimeout = c.FateWait // an evicted flow's fate must be known
	}
	if c.SYNTimeout <= 0 {
		c.SYNTimeout = 3 * time.Second
	}
	if c.DNSMatchSize <= 0 {
		c.DNSMatchSize = 65536
	}
	if c.DNSMatchExpiry <= 0 {
		c.DNSMatchExpiry = 10 * time.Second
	}
	if c.BootID == "" {
		var b [8]byte
		rand.Read(b[:])
		c.BootID = hex.EncodeToString(b[:])
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

type flowState struct {
	packets, bytes   uint64 // exported as delivered so far
	windowStart      uint64 // monotonic ns of the current window's start
	exported         bool
	settled, pending snapshot  // see age
	same             dropState // drops reported from the entry (like its first, see drop.c)
	tcp              tcpState  // TCP health already carried (tcp.go)
}

type dropState struct {
	packets, bytes uint64
	lastExport     uint64
}

// Collector reads the datapath's maps and ring buffers.
type Collector struct {
	cfg Config
	dp  *datapath.Datapath
	pub export.Publisher
	m   *metrics.Agent

	mu     sync.Mutex // serializes polls (ticker and final flush)
	flows  map[bpf.FlowFlowKey]flowState
	drops  map[bpf.DropDropKey]dropState
	seq    atomic.Uint64
	counts map[string][]uint64 // last counter values per program

	ifnames sync.Map // ifindex (agent netns) -> name, for unwatched interfaces

	local atomic.Pointer[map[netip.Addr]bool] // the node's addresses, see markHost

	pmu     sync.Mutex // guards pending
	pending map[bpf.FlowFlowKey][]*pendingEvent

	skew        time.Duration // added to the poll clock by tests
	flowEntries int           // flow map entries after the last poll

	dns dnsState

	retrans retransState // guarded by mu
}

// New makes a collector; Run starts it.
func New(cfg Config, dp *datapath.Datapath, pub export.Publisher, m *metrics.Agent) *Collector {
	cfg.setDefaults()
	// Series exist from the start, not from the first poll.
	m.ConntrackNew.WithLabelValues(cfg.NodeName)
	m.MapCapacity.WithLabelValues("flows").Set(float64(dp.Flow.Flows.MaxEntries()))
	m.MapEntries.WithLabelValues("flows")
	m.PollDuration.WithLabelValues("flows")
	if dp.Drop != nil {
		m.PollDuration.WithLabelValues("drops")
		m.MapCapacity.WithLabelValues("drops").Set(float64(dp.Drop.Drops.MaxEntries()))
		m.MapEntries.WithLabelValues("drops")
	}
	c := &Collector{
		cfg: cfg, dp: dp, pub: pub, m: m,
		flows:   map[bpf.FlowFlowKey]flowState{},
		drops:   map[bpf.DropDropKey]dropState{},
		counts:  map[string][]uint64{},
		pending: map[bpf.FlowFlowKey][]*pendingEvent{},
	}
	c.refreshLocal()
	c.initDNS()
	c.initRetrans()
	return c
}

// BootID of this run.
func (c *Collector) BootID() string { return c.cfg.BootID }

// Run reads ring buffers and polls maps until ctx is done, then polls one
// last time so nothing counted is left unexported.
func (c *Collector) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 3) // one per ring buffer
	readers := []*ringbuf.Reader{}
	start := func(m *ebpf.Map, handle func([]byte)) error {
		rd, err := ringbuf.NewReader(m)
		if err != nil {
			return fmt.Errorf("open ring buffer: %w", err)
		}
		readers = append(readers, rd)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.readRing(rd, handle); err != nil {
				errs <- err
			}
		}()
		return nil
	}
	stopReaders := func() {
		for _, rd := range readers {
			rd.Close()
		}
		wg.Wait()
	}
	if err := start(c.dp.Flow.FlowEvents, c.handleFlowEvent); err != nil {
		return err
	}
	if err := start(c.dp.Flow.DnsEvents, c.handleDNSEvent); err != nil {
		stopReaders()
		return err
	}
	if c.dp.Drop != nil {
		if err := start(c.dp.Drop.DropEvents, c.handleDropEvent); err != nil {
			stopReaders()
			return err
		}
	}
	defer stopReaders()

	t := time.NewTicker(c.cfg.FlushInterval)
	defer t.Stop()
	fate := time.NewTicker(100 * time.Millisecond)
	defer fate.Stop()
	// The retransmit rings hold 64 events per CPU and program; an event is
	// applied two reads after it was written (retrans.go).
	retrans := time.NewTicker(retransReadInterval)
	defer retrans.Stop()
	for {
		select {
		case <-retrans.C:
			c.mu.Lock()
			c.readRetrans()
			c.mu.Unlock()
		case <-ctx.Done():
			c.releaseDue(time.Now(), true)
			c.Poll(true)
			return nil
		case err := <-errs:
			return err
		case now := <-fate.C:
			c.releaseDue(now, false)
		case <-t.C:
			c.Poll(false)
		}
	}
}

func (c *Collector) readRing(rd *ringbuf.Reader, handle func([]byte)) error {
	var rec ringbuf.Record
	for {
		if err := rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		handle(rec.RawSample)
	}
}

func monoNow() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

func newClock() (clock, uint64) {
	mono := monoNow()
	return clock{offset: time.Duration(time.Now().UnixNano() - int64(mono))}, mono
}

// pollClock is newClock, shifted in tests to age flows without waiting.
func (c *Collector) pollClock() (clock, uint64) {
	clk, now := newClock()
	return clock{offset: clk.offset - c.skew}, now + uint64(c.skew)
}

func (c *Collector) publishFlow(f *flowv1.Flow, kind string) {
	f.NodeName = c.cfg.NodeName
	// The id is set here, where the record is made, so --output jsonl and
	// the relay (the shipper keeps it) show the same one.
	f.Uuid = flowid.Derive(c.cfg.NodeName, c.cfg.BootID, c.seq.Add(1), 0)
	c.m.Events.WithLabelValues(kind).Inc()
	c.pub.Publish(&observerv1.GetFlowsResponse{
		ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f},
		NodeName:      c.cfg.NodeName,
		Time:          f.Time,
	})
}

func (c *Collector) observationPoint(hook uint8) string {
	mech := "tc"
	if c.dp.Features.TCX {
		mech = "tcx"
	}
	if hook == uint8(bpf.FlowHookHOOK_EGRESS) {
		if !c.dp.TCXEgress {
			return "netfilter-local-out" // what the node sends
		}
		return mech + "-egress"
	}
	return mech + "-ingress"
}

// flowRecord builds the common part of a record seen by the flow program:
// the flow's tuple, and the interface and hook that counted it.
func (c *Collector) flowRecord(key bpf.FlowFlowKey, ifindex uint32, hook uint8, ifaces map[int]datapath.Interface, flags uint32) *flowv1.Flow {
	f := &flowv1.Flow{
		Verdict:          flowv1.Verdict_FORWARDED,
		Type:             flowv1.FlowType_L3_L4,
		Netns:            c.dp.Netns,
		ObservationPoint: c.observationPoint(hook),
	}
	fillTuple(f, key.Tuple, flags)
	c.markHost(f, key.Tuple)
	iface, known := ifaces[int(ifindex)]
	f.Interface = &flowv1.NetworkInterface{Index: ifindex, Name: iface.Name}
	f.TrafficDirection = direction(iface.Role, known, hook)
	return f
}

func (c *Collector) handleFlowEvent(raw []byte) {
	if len(raw) < int(unsafe.Sizeof(bpf.FlowFlowEvent{})) {
		return
	}
	ev := (*bpf.FlowFlowEvent)(unsafe.Pointer(&raw[0]))
	clk, _ := newClock()
	f := c.flowRecord(ev.Key, ev.Ifindex, ev.Hook, c.dp.Interfaces(), uint32(ev.TcpFlags))
	ts := clk.ts(ev.TsNs)
	f.Time, f.FirstSeen, f.LastSeen = ts, ts, ts
	f.Packets, f.Bytes = 1, uint64(ev.Bytes)
	p := &pendingEvent{f: f, kind: "flow_new", newFlow: true, deadline: time.Now().Add(c.cfg.FateWait)}
	f.EventKind = flowv1.EventKind_FLOW_NEW
	if ev.Kind == uint8(bpf.FlowEventKindEV_FLOW_CLOSE) {
		f.EventKind = flowv1.EventKind_FLOW_CLOSE
		p.kind, p.newFlow = "flow_close", false
		if ev.Key.Tuple.Proto == l4.TCP && ev.TcpFlags&l4.SYN != 0 {
			p.newFlow = true // the flow's first packet: a SYN with FIN or RST
		}
	} else {
		f.IsReply = isReply(ev.Key.Tuple.Proto, uint32(ev.TcpFlags))
	}
	c.hold(ev.Key, p)
}

// dropDirection: a drop on a pod's host-side veth in the node's namespace
// happened to a packet the pod sent (EGRESS); elsewhere, a packet owned by a
// local socket was being sent (EGRESS) and one without was being received
// (INGRESS).
func (c *Collector) dropDirection(key *bpf.DropDropKey, ifaces map[int]datapath.Interface) flowv1.TrafficDirection {
	if uint64(key.Netns) == c.dp.Netns {
		if iface, ok := ifaces[int(key.Ifindex)]; ok && iface.Role == datapath.RolePod {
			return flowv1.TrafficDirection_EGRESS
		}
	}
	if key.HasSk != 0 {
		return flowv1.TrafficDirection_EGRESS
	}
	return flowv1.TrafficDirection_INGRESS
}

func (c *Collector) ifName(key *bpf.DropDropKey, ifaces map[int]datapath.Interface) string {
	if uint64(key.Netns) != c.dp.Netns || key.Ifindex == 0 {
		return "" // another namespace's index: no name we can vouch for
	}
	if iface, ok := ifaces[int(key.Ifindex)]; ok {
		return iface.Name
	}
	if n, ok := c.ifnames.Load(key.Ifindex); ok {
		return n.(string)
	}
	name := ""
	if i, err := net.InterfaceByIndex(int(key.Ifindex)); err == nil {
		name = i.Name
	}
	c.ifnames.Store(key.Ifindex, name)
	return name
}

func (c *Collector) dropRecord(key *bpf.DropDropKey, ifaces map[int]datapath.Interface) *flowv1.Flow {
	reason := c.dp.Reasons.Name(key.Reason)
	f := &flowv1.Flow{
		Verdict:          flowv1.Verdict_DROPPED,
		Type:             flowv1.FlowType_L3_L4,
		EventKind:        flowv1.EventKind_DROP,
		DropReasonKernel: reason,
		DropReasonDesc:   reason, // the relay may replace it with POLICY_DENIED
		DropClass:        string(dropclass.Of(reason)),
		Netns:            uint64(key.Netns),
		ObservationPoint: "kfree_skb",
		Interface:        &flowv1.NetworkInterface{Index: key.Ifindex, Name: c.ifName(key, ifaces)},
		TrafficDirection: c.dropDirection(key, ifaces),
	}
	fillTuple(f, bpf.FlowFlowTuple(key.Tuple), 0)
	c.markHost(f, bpf.FlowFlowTuple(key.Tuple))
	return f
}

func (c *Collector) handleDropEvent(raw []byte) {
	if len(raw) < int(unsafe.Sizeof(bpf.DropDropEvent{})) {
		return
	}
	ev := (*bpf.DropDropEvent)(unsafe.Pointer(&raw[0]))
	clk, _ := newClock()
	f := c.dropRecord(&ev.Key, c.dp.Interfaces())
	ts := clk.ts(ev.TsNs)
	f.Time, f.FirstSeen, f.LastSeen = ts, ts, ts
	f.Packets, f.Bytes = uint64(max(ev.Packets, 1)), uint64(ev.Bytes)
	c.m.Drops.WithLabelValues(f.DropReasonKernel, f.DropClass).Add(float64(f.Packets))
	c.publishFlow(f, "drop")
	// The flow's waiting events can learn their fate now.
	c.settleKey(bpf.FlowFlowKey{Tuple: bpf.FlowFlowTuple(ev.Key.Tuple)})
}

// Poll exports what changed in the maps since the last poll and evicts idle
// entries; final exports every pending delta regardless of timeouts.
func (c *Collector) Poll(final bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshLocal()
	if final {
		c.flushRetrans()
	} else {
		c.readRetrans()
	}
	c.pollFlows(final)
	if c.dp.Drop != nil {
		c.pollDrops()
	}
	c.pollCounters()
}

func (c *Collector) pollFlows(final bool) {
	start := time.Now()
	defer func() { c.m.PollDuration.WithLabelValues("flows").Observe(time.Since(start).Seconds()) }()
	clk, now := c.pollClock()
	ifaces := c.dp.Interfaces()
	idle := uint64(c.cfg.IdleTimeout)
	if capacity := c.dp.Flow.Flows.MaxEntries(); c.flowEntries > int(capacity)*9/10 {
		// Nearly full: evict sooner rather than lose new flows.
		idle = max(idle/4, uint64(c.cfg.FlushInterval))
	}
	// Polls are FlushInterval apart: a window goes out at the poll nearest
	// to its active timeout (with the default, at every poll), never a
	// whole interval late because of ticker jitter.
	active := uint64(c.cfg.ActiveTimeout - c.cfg.FlushInterval/2)
	type idleFlow struct {
		k  bpf.FlowFlowKey
		st flowState
	}
	var evict []idleFlow
	seen := 0
	wait := uint64(c.cfg.FateWait)
	err := readMap(c.dp.Flow.Flows, func(k bpf.FlowFlowKey, v bpf.FlowFlowAgg) {
		seen++
		st, ok := c.flows[k]
		if !ok {
			st.windowStart = v.FirstNs
			st.pending = snapshot{at: now, packets: v.Packets, bytes: v.Bytes}
		}
		st.age(&v, now, wait)
		st = c.exportSameDrops(k, &v, st, clk, ifaces)
		st = c.connectTimeout(k, &v, st, clk, now)
		isIdle := now > v.LastNs && now-v.LastNs >= idle
		if final || isIdle || now-st.windowStart >= active {
			st = c.exportFlow(k, &v, st, clk, ifaces, now, final)
		}
		if isIdle {
			evict = append(evict, idleFlow{k, st})
			delete(c.flows, k)
			return
		}
		c.flows[k] = st
	})
	if err != nil {
		c.cfg.Log.Warn("poll flow map", "err", err)
	}
	// Delete and read in one step: a packet that arrived since the read
	// above is exported, not lost with the entry.
	for _, e := range evict {
		var v bpf.FlowFlowAgg
		if err := c.dp.Flow.Flows.LookupAndDelete(e.k, &v); err != nil {
			if !errors.Is(err, ebpf.ErrKeyNotExist) {
				c.dp.Flow.Flows.Delete(e.k) // kernels before 5.14
			}
			continue
		}
		st := c.exportSameDrops(e.k, &v, e.st, clk, ifaces)
		c.exportFlow(e.k, &v, st, clk, ifaces, now, true)
		c.forgetRetrans(e.k)
	}
	c.flowEntries = seen - len(evict)
	c.m.MapEntries.WithLabelValues("flows").Set(float64(c.flowEntries))
	c.m.MapCapacity.WithLabelValues("flows").Set(float64(c.dp.Flow.Flows.MaxEntries()))
}

// exportFlow publishes the delivered packets a flow gained since its last
// export, if any; exact when the caller knows every packet's fate.
func (c *Collector) exportFlow(k bpf.FlowFlowKey, v *bpf.FlowFlowAgg, st flowState, clk clock, ifaces map[int]datapath.Interface, now uint64, exact bool) flowState {
	pkts, bytes := deliveredTarget(v, &st, now, uint64(c.cfg.FateWait), exact)
	tcp := k.Tuple.Proto == l4.TCP
	retrans := c.retransmits(k)
	// A flow's last record also carries TCP health that came after its
	// last delivered packet (a retransmission lost before the hook), with
	// no packet of its own; a flow with no delivered packet has no
	// AGGREGATE record (its DROP records count its packets).
	if pkts <= st.packets && !(exact && tcp && st.exported && st.tcp.pending(v, retrans)) {
		return st // nothing newly known delivered; a late drop is not un-sent
	}
	pkts = max(pkts, st.packets)
	f := c.flowRecord(k, v.Ifindex, v.Hook, ifaces, v.TcpFlags)
	f.EventKind = flowv1.EventKind_AGGREGATE
	f.IsReply = isReply(k.Tuple.Proto, v.FirstTcpFlags)
	first := v.FirstNs
	if st.exported && st.windowStart > first {
		first = st.windowStart
	}
	// Updates store the coarse clock, which may lag the precise time of
	// the entry's first packet by a tick.
	f.FirstSeen, f.LastSeen = clk.ts(first), clk.ts(max(v.LastNs, first))
	f.Time = f.LastSeen
	f.Packets = pkts - st.packets
	if bytes > st.bytes {
		f.Bytes = bytes - st.bytes
	}
	if tcp {
		f.TcpHealth, st.tcp = c.tcpHealth(k, v, st.tcp, c.handshakeSynAck(k, v, st.tcp), retrans)
		orient(f, f.GetTcpHealth().GetResetBy())
	}
	dir, verdict := f.TrafficDirection.String(), f.Verdict.String()
	c.m.Flows.WithLabelValues(dir, verdict).Inc()
	c.m.Packets.WithLabelValues(dir, verdict).Add(float64(f.Packets))
	c.m.Bytes.WithLabelValues(dir, verdict).Add(float64(f.Bytes))
	c.publishFlow(f, "aggregate")
	st.packets, st.bytes, st.exported = pkts, max(bytes, st.bytes), true
	st.windowStart = v.LastNs + 1
	return st
}

// exportSameDrops publishes the drops the kernel reported from a flow's
// entry (later drops exactly like the flow's first, see agent/bpf/drop.c) as
// a DROP record. Their time is the flow's window: such drops happen as their
// packets pass.
func (c *Collector) exportSameDrops(k bpf.FlowFlowKey, v *bpf.FlowFlowAgg, st flowState, clk clock, ifaces map[int]datapath.Interface) flowState {
	if v.SamePackets <= st.same.packets {
		return st
	}
	dk := bpf.DropDropKey{Reason: v.DropReason, Ifindex: v.DropIfindex, Netns: v.DropNetns, HasSk: v.DropHasSk}
	dk.Tuple = k.Tuple
	agg := bpf.DropDropAgg{FirstNs: v.FirstNs, LastNs: v.LastNs, Packets: v.SamePackets, Bytes: v.SameBytes}
	st.same = c.exportDrop(dk, agg, st.same, clk, ifaces)
	return st
}

func (c *Collector) pollDrops() {
	start := time.Now()
	defer func() { c.m.PollDuration.WithLabelValues("drops").Observe(time.Since(start).Seconds()) }()
	clk, now := c.pollClock()
	ifaces := c.dp.Interfaces()
	idle := uint64(c.cfg.IdleTimeout)
	type idleDrop struct {
		k  bpf.DropDropKey
		st dropState
	}
	var evict []idleDrop
	seen := 0
	err := readMap(c.dp.Drop.Drops, func(k bpf.DropDropKey, v bpf.DropDropAgg) {
		seen++
		st := c.drops[k]
		if v.Packets > st.packets {
			st = c.exportDrop(k, v, st, clk, ifaces)
		}
		if now > v.LastNs && now-v.LastNs >= idle {
			evict = append(evict, idleDrop{k, st})
			delete(c.drops, k)
			return
		}
		c.drops[k] = st
	})
	if err != nil {
		c.cfg.Log.Warn("poll drop map", "err", err)
	}
	for _, e := range evict {
		var v bpf.DropDropAgg
		if err := c.dp.Drop.Drops.LookupAndDelete(e.k, &v); err != nil {
			if !errors.Is(err, ebpf.ErrKeyNotExist) {
				c.dp.Drop.Drops.Delete(e.k)
			}
			continue
		}
		if v.Packets > e.st.packets {
			c.exportDrop(e.k, v, e.st, clk, ifaces)
		}
	}
	c.m.MapEntries.WithLabelValues("drops").Set(float64(seen - len(evict)))
	c.m.MapCapacity.WithLabelValues("drops").Set(float64(c.dp.Drop.Drops.MaxEntries()))
}

// exportDrop publishes the drops a key gained since its last export.
func (c *Collector) exportDrop(k bpf.DropDropKey, v bpf.DropDropAgg, st dropState, clk clock, ifaces map[int]datapath.Interface) dropState {
	f := c.dropRecord(&k, ifaces)
	first := v.FirstNs
	if st.lastExport > first {
		first = st.lastExport
	}
	f.FirstSeen, f.LastSeen = clk.ts(first), clk.ts(max(v.LastNs, first))
	f.Time = f.LastSeen
	f.Packets, f.Bytes = v.Packets-st.packets, v.Bytes-st.bytes
	c.m.Drops.WithLabelValues(f.DropReasonKernel, f.DropClass).Add(float64(f.Packets))
	c.publishFlow(f, "drop")
	st.packets, st.bytes, st.lastExport = v.Packets, v.Bytes, v.LastNs+1
	return st
}

// lossCounters maps counter slots to the lost-event source they report.
var lossCounters = []struct {
	slot   bpf.FlowCounter
	source flowv1.LostEventSource
	cause  string
}{
	{bpf.FlowCounterCNT_MAP_FULL, flowv1.LostEventSource_MAP_FULL, metrics.CauseMapFull},
	{bpf.FlowCounterCNT_RINGBUF_FULL, flowv1.LostEventSource_RINGBUF_RESERVE_FAILED, metrics.CauseRingbuf},
	{bpf.FlowCounterCNT_RATE_LIMITED, flowv1.LostEventSource_RATE_LIMITED, metrics.CauseRateLimited},
	{bpf.FlowCounterCNT_MALFORMED, flowv1.LostEventSource_MALFORMED_PACKET, metrics.CauseMalformed},
	{bpf.FlowCounterCNT_TRUNCATED, flowv1.LostEventSource_MALFORMED_PACKET, metrics.CauseMalformed},
	{bpf.FlowCounterCNT_DNS_RINGBUF_FULL, flowv1.LostEventSource_RINGBUF_RESERVE_FAILED, metrics.CauseRingbuf},
	{bpf.FlowCounterCNT_DNS_RATE_LIMITED, flowv1.LostEventSource_RATE_LIMITED, metrics.CauseRateLimited},
}

// Counters sums a program's per-CPU counters.
func Counters(m *ebpf.Map) ([]uint64, error) {
	out := make([]uint64, bpf.FlowCounterCNT_MAX)
	var perCPU []uint64
	for i := range out {
		if err := m.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			out[i] += v
		}
	}
	return out, nil
}

func (c *Collector) pollCounters() {
	c.publishRetransLost()
	progs := map[string]*ebpf.Map{"flow": c.dp.Flow.Counters}
	if c.dp.Drop != nil {
		progs["drop"] = c.dp.Drop.Counters
	}
	now := timestamppb.Now()
	for prog, m := range progs {
		cur, err := Counters(m)
		if err != nil {
			c.cfg.Log.Warn("read counters", "program", prog, "err", err)
			continue
		}
		prev := c.counts[prog]
		c.counts[prog] = cur
		if prev == nil {
			prev = make([]uint64, len(cur))
		}
		if prog == "flow" {
			c.m.ConntrackNew.WithLabelValues(c.cfg.NodeName).Add(float64(cur[bpf.FlowCounterCNT_NEW_CONNTRACK] - prev[bpf.FlowCounterCNT_NEW_CONNTRACK]))
		}
		for _, lc := range lossCounters {
			d := cur[lc.slot] - prev[lc.slot]
			if d == 0 {
				continue
			}
			c.publishLost(lc.source, lc.cause, d, now, fmt.Sprintf("%s program: %s", prog, counterName(lc.slot)))
		}
	}
}

// publishLost counts n lost events in the lost-events metric and publishes
// them as a lost-events record.
func (c *Collector) publishLost(source flowv1.LostEventSource, cause string, n uint64, now *timestamppb.Timestamp, detail string) {
	c.m.LostEvents.WithLabelValues(cause).Add(float64(n))
	c.pub.Publish(&observerv1.GetFlowsResponse{
		ResponseTypes: &observerv1.GetFlowsResponse_LostEvents{LostEvents: &flowv1.LostEvent{
			Source:        source,
			NumEventsLost: n,
			NodeName:      c.cfg.NodeName,
			Time:          now,
			Detail:        detail,
		}},
		NodeName: c.cfg.NodeName,
		Time:     now,
	})
}

func counterName(s bpf.FlowCounter) string {
	switch s {
	case bpf.FlowCounterCNT_MAP_FULL:
		return "aggregation map full"
	case bpf.FlowCounterCNT_RINGBUF_FULL:
		return "ring buffer full"
	case bpf.FlowCounterCNT_RATE_LIMITED:
		return "instant events over the rate limit"
	case bpf.FlowCounterCNT_MALFORMED:
		return "malformed headers"
	case bpf.FlowCounterCNT_TRUNCATED:
		return "truncated headers"
	case bpf.FlowCounterCNT_DNS_RINGBUF_FULL:
		return "DNS ring buffer full"
	case bpf.FlowCounterCNT_DNS_RATE_LIMITED:
		return "DNS messages over the rate limit"
	}
	return fmt.Sprintf("counter %d", s)
}

// readMap calls fn for every entry, in batches where the kernel supports
// them.
func readMap[K comparable, V any](m *ebpf.Map, fn func(K, V)) error {
	const batch = 4096
	keys := make([]K, batch)
	vals := make([]V, batch)
	var cursor ebpf.MapBatchCursor
	total := 0
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < n; i++ {
			fn(keys[i], vals[i])
		}
		total += n
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			if total == 0 && errors.Is(err, ebpf.ErrNotSupported) {
				break
			}
			return err
		}
	}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		fn(k, v)
	}
	return it.Err()
}

// Totals reports counters for the heartbeat: records exported and the
// programs' loss counters.
func (c *Collector) Totals() map[string]uint64 {
	out := map[string]uint64{"records": c.seq.Load()}
	c.mu.Lock()
	defer c.mu.Unlock()
	for prog, cur := range c.counts {
		for _, lc := range lossCounters {
			out[prog+"_"+lc.cause] += cur[lc.slot]
		}
	}
	out["tcp_retrans_"+causeRetransOverrun] = c.retrans.lost
	out["tcp_retrans_no_flow"] = c.retrans.noFlow
	out["tcp_retrans_torn_reads"] = c.retrans.torn
	return out
}
