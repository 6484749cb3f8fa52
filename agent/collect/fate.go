package collect

import (
	"time"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Verdict = fate. The flow program counts a packet where it enters the node,
// before netfilter, routing or a socket decide what becomes of it; the drop
// program adds the packets the kernel then drops (for a reason that means
// they never arrived, see internal/dropclass) to the same flow entry. So:
//
//   - AGGREGATE records are FORWARDED and carry only delivered packets:
//     seen minus dropped. Dropped packets are in DROP records, with the
//     kernel's reason. A flow whose every packet was dropped has no
//     AGGREGATE record at all.
//   - A drop lands a little after its packet was counted: microseconds for
//     netfilter or a closed port, up to seconds for a neighbour that never
//     answers. A poll therefore reports as delivered only packets whose fate
//     is known: all of them once the flow has been quiet for FateWait,
//     otherwise those seen at least FateWait ago minus every drop so far (a
//     lower bound; later polls catch up, the totals end exact).
//   - Instant FLOW_NEW and FLOW_CLOSE events wait for their packet's fate:
//     they go out when a packet in the other direction shows the first one
//     arrived, when a drop of the flow is seen, or after FateWait. A new flow
//     whose first packet was dropped is a DROPPED event with the reason.
//   - L7 (DNS) records wait the same way; see dns.go.

// snapshot is a flow's seen counters at one poll.
type snapshot struct{ at, packets, bytes uint64 }

// deliveredTarget is how many packets and bytes of a flow are known
// delivered at monotonic time now.
func deliveredTarget(v *bpf.FlowFlowAgg, st *flowState, now, wait uint64, exact bool) (pkts, bytes uint64) {
	sub := func(a, b uint64) uint64 {
		if a > b {
			return a - b
		}
		return 0
	}
	if exact || now-v.LastNs >= wait {
		return sub(v.Packets, v.DropPackets), sub(v.Bytes, v.DropBytes)
	}
	return sub(st.settled.packets, v.DropPackets), sub(st.settled.bytes, v.DropBytes)
}

// age moves a flow's snapshots along: settled is the newest one at least
// wait old.
func (st *flowState) age(v *bpf.FlowFlowAgg, now, wait uint64) {
	if now-st.pending.at >= wait {
		st.settled = st.pending
		st.pending = snapshot{at: now, packets: v.Packets, bytes: v.Bytes}
	}
}

// pendingEvent is an instant event waiting for its packet's fate.
type pendingEvent struct {
	f        *flowv1.Flow
	kind     string // metric label
	newFlow  bool   // FLOW_NEW (else FLOW_CLOSE)
	deadline time.Time
	// L7 records (dns.go): the flow's undelivered packets when the
	// program saw the message, and whether the flow had an entry.
	l7          bool
	dropsBefore uint64
	hasFlow     bool
}

func reverse(k bpf.FlowFlowKey) bpf.FlowFlowKey {
	r := k
	r.Tuple.Saddr, r.Tuple.Daddr = k.Tuple.Daddr, k.Tuple.Saddr
	r.Tuple.Sport, r.Tuple.Dport = k.Tuple.Dport, k.Tuple.Sport
	if k.Tuple.Proto == l4.ICMPv4 || k.Tuple.Proto == l4.ICMPv6 {
		// ICMP keeps type/code in the port fields: an echo reply answers
		// an echo request (IPv4 8 -> 0, IPv6 128 -> 129).
		r.Tuple.Sport, r.Tuple.Dport = icmpReply(k.Tuple.Proto, k.Tuple.Sport), k.Tuple.Dport
	}
	return r
}

func icmpReply(proto uint8, typ uint16) uint16 {
	switch {
	case proto == l4.ICMPv4 && typ == 8:
		return 0
	case proto == l4.ICMPv4 && typ == 0:
		return 8
	case proto == l4.ICMPv6 && typ == 128:
		return 129
	case proto == l4.ICMPv6 && typ == 129:
		return 128
	}
	return typ
}

// hold queues an instant event until its fate is known. A packet in the
// other direction releases the events waiting there: it answers them.
func (c *Collector) hold(k bpf.FlowFlowKey, p *pendingEvent) {
	c.pmu.Lock()
	c.pending[k] = append(c.pending[k], p)
	answered := c.pending[reverse(k)]
	delete(c.pending, reverse(k))
	c.pmu.Unlock()
	for _, q := range answered {
		c.release(reverse(k), q)
	}
}

// settleKey releases the events of a flow at once (a drop of it was seen).
func (c *Collector) settleKey(k bpf.FlowFlowKey) {
	c.pmu.Lock()
	evs := c.pending[k]
	delete(c.pending, k)
	c.pmu.Unlock()
	for _, p := range evs {
		c.release(k, p)
	}
}

// releaseDue releases events whose wait is over; all of them when final.
func (c *Collector) releaseDue(now time.Time, final bool) {
	type due struct {
		k bpf.FlowFlowKey
		p *pendingEvent
	}
	var out []due
	c.pmu.Lock()
	for k, evs := range c.pending {
		keep := evs[:0]
		for _, p := range evs {
			if final || !now.Before(p.deadline) {
				out = append(out, due{k, p})
			} else {
				keep = append(keep, p)
			}
		}
		if len(keep) == 0 {
			delete(c.pending, k)
		} else {
			c.pending[k] = keep
		}
	}
	c.pmu.Unlock()
	for _, d := range out {
		c.release(d.k, d.p)
	}
}

// release decides an event's verdict from the flow's entry and publishes it.
func (c *Collector) release(k bpf.FlowFlowKey, p *pendingEvent) {
	var v bpf.FlowFlowAgg
	err := c.dp.Flow.Flows.Lookup(k, &v)
	if p.l7 {
		switch {
		case err != nil || !p.hasFlow:
			p.f.Verdict = flowv1.Verdict_VERDICT_UNKNOWN // no entry: drops not counted
		case v.DropPackets > p.dropsBefore:
			c.markDropped(p.f, v.DropReason)
		}
		c.publishFlow(p.f, p.kind)
		return
	}
	if err == nil {
		dropped := v.FirstDropped != 0
		if !p.newFlow {
			dropped = v.DropPackets > 0 && v.DropPackets >= v.Packets
		}
		if dropped {
			c.markDropped(p.f, v.DropReason)
		}
		if p.f.EventKind == flowv1.EventKind_FLOW_CLOSE && l4.FlagBits(p.f.GetL4().GetTCP().GetFlags())&l4.RST != 0 {
			if side := c.tcpSide(k, v.FirstTcpFlags); side != flowv1.TCPSide_TCP_SIDE_UNKNOWN {
				p.f.TcpHealth = &flowv1.TCPHealth{ResetBy: side}
				orient(p.f, side)
			}
		}
	}
	c.publishFlow(p.f, p.kind)
}

// markDropped turns a record into a DROPPED one with the kernel's reason.
func (c *Collector) markDropped(f *flowv1.Flow, reason uint32) {
	f.Verdict = flowv1.Verdict_DROPPED
	if c.dp.Reasons == nil {
		return
	}
	name := c.dp.Reasons.Name(reason)
	f.DropReasonKernel, f.DropReasonDesc = name, name
	f.DropClass = string(dropclass.Of(name))
}
