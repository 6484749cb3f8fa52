package collect

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// TCP health (docs/tcp-health.md). The flow program keeps, per direction's
// entry, the handshake's times (in the client's entry: the latest SYN, the
// first SYN-ACK answering it, the first ACK after that; a SYN-ACK sent again
// is timed in the server's entry only, see handshakeSynAck), whether the
// other side answered (a SYN-ACK or a RST), and zero-window advertisements;
// tcp_retrans.c records the segments the node's own sockets retransmitted,
// which retrans.go counts per flow.
// Here they become Flow.tcp_health on AGGREGATE records (as deltas, like
// packets) and FLOW_CLOSE events, and CONNECT_TIMEOUT records.

// tcpState is what a flow's records already carried.
type tcpState struct {
	retransmits, zeroWindows uint32
	handshake                bool // the handshake went out (or cannot be timed)
	reset                    bool // the RST's side went out
	timeout                  bool // the attempt was judged: CONNECT_TIMEOUT sent, or answered, or dropped
}

// pending reports TCP health not yet carried by a record; retrans is the
// flow's retransmits counted so far (retrans.go).
func (s tcpState) pending(v *bpf.FlowFlowAgg, retrans uint32) bool {
	return retrans != s.retransmits || v.ZeroWindows != s.zeroWindows
}

// handshakeSynAck is the SYN-ACK a client entry's handshake is timed from:
// the latest one before the client's ACK. The client's entry holds the first
// (the SYN-ACK's new entry found it, through conntrack under NAT); a SYN-ACK
// sent again only writes its own, the server's, entry, which spares every
// packet of an existing entry a lookup of another in the kernel. That entry
// is the reverse one (not found under NAT: then the first SYN-ACK's time).
// Zero when the entry has no handshake to time yet.
func (c *Collector) handshakeSynAck(k bpf.FlowFlowKey, v *bpf.FlowFlowAgg, s tcpState) uint64 {
	if s.handshake || v.AckNs == 0 {
		return 0
	}
	var rv bpf.FlowFlowAgg
	if c.dp.Flow.Flows.Lookup(reverse(k), &rv) == nil && rv.SynackNs > v.SynackNs && rv.SynackNs <= v.AckNs {
		return rv.SynackNs
	}
	return v.SynackNs
}

// tcpHealth is the TCP health a flow's next AGGREGATE record carries, nil
// when there is nothing new; synack is from handshakeSynAck, retrans the
// flow's retransmits counted so far (retrans.go).
func (c *Collector) tcpHealth(k bpf.FlowFlowKey, v *bpf.FlowFlowAgg, s tcpState, synack uint64, retrans uint32) (*flowv1.TCPHealth, tcpState) {
	h := &flowv1.TCPHealth{
		Retransmits: retrans - s.retransmits,
		ZeroWindows: v.ZeroWindows - s.zeroWindows,
	}
	s.retransmits, s.zeroWindows = retrans, v.ZeroWindows
	if !s.handshake && v.AckNs != 0 {
		s.handshake = true
		// Each half from the latest packet that started it; out of order
		// only if a retransmitted SYN crossed the SYN-ACK: not timed.
		if v.SynNs != 0 && v.SynNs <= synack && synack <= v.AckNs {
			h.HandshakeSynAck = durationpb.New(time.Duration(synack - v.SynNs))
			h.HandshakeAck = durationpb.New(time.Duration(v.AckNs - synack))
		}
	}
	if !s.reset && uint16(v.TcpFlags)&l4.RST != 0 {
		s.reset = true
		h.ResetBy = c.tcpSide(k, v.FirstTcpFlags)
	}
	if h.Retransmits == 0 && h.ZeroWindows == 0 && h.HandshakeSynAck == nil && h.ResetBy == flowv1.TCPSide_TCP_SIDE_UNKNOWN {
		return nil, s
	}
	return h, s
}

// tcpSide says which side of its connection sends a direction's packets:
// the client sent the first SYN. From the direction's first packet (as
// is_reply), else from its reverse entry's (a RST answering a SYN).
func (c *Collector) tcpSide(k bpf.FlowFlowKey, firstFlags uint32) flowv1.TCPSide {
	if r := isReply(l4.TCP, firstFlags); r != nil {
		if r.Value {
			return flowv1.TCPSide_SERVER
		}
		return flowv1.TCPSide_CLIENT
	}
	var rv bpf.FlowFlowAgg
	if c.dp.Flow.Flows.Lookup(reverse(k), &rv) != nil {
		return flowv1.TCPSide_TCP_SIDE_UNKNOWN
	}
	if r := isReply(l4.TCP, rv.FirstTcpFlags); r != nil {
		if r.Value {
			return flowv1.TCPSide_CLIENT
		}
		return flowv1.TCPSide_SERVER
	}
	return flowv1.TCPSide_TCP_SIDE_UNKNOWN
}

// orient sets is_reply from the side that sends a direction's packets when
// the direction's own first packet could not tell (a RST answering a SYN,
// as a closed port sends): the server's packets are the replies. Without
// it the relay, which orients client and server by is_reply, would file a
// refused connection under the swapped pair.
func orient(f *flowv1.Flow, side flowv1.TCPSide) {
	if f.IsReply != nil || side == flowv1.TCPSide_TCP_SIDE_UNKNOWN {
		return
	}
	f.IsReply = wrapperspb.Bool(side == flowv1.TCPSide_SERVER)
}

// synOnly: nothing but SYNs (ECN's setup bits aside).
func synOnly(flags uint32) bool {
	return uint16(flags)&^(l4.ECE|l4.CWR|l4.NS) == l4.SYN
}

// connectTimeout publishes a CONNECT_TIMEOUT record for a client entry of
// SYNs only that nothing answered: no SYN-ACK or RST came back (the flow
// program marks the entry answered, through conntrack under NAT; its
// reverse entry is checked too) and no SYN was dropped on the node (that is
// a DROP record). It is judged once the first SYN is --syn-timeout old and
// the SYNs' fate is known (--fate-wait), once per attempt.
func (c *Collector) connectTimeout(k bpf.FlowFlowKey, v *bpf.FlowFlowAgg, st flowState, clk clock, now uint64) flowState {
	if st.tcp.timeout || k.Tuple.Proto != l4.TCP || !synOnly(v.FirstTcpFlags) {
		return st
	}
	if now < v.FirstNs || now-v.FirstNs < uint64(max(c.cfg.SYNTimeout, c.cfg.FateWait)) {
		return st
	}
	st.tcp.timeout = true
	if !synOnly(v.TcpFlags) || v.Answered != 0 || v.DropPackets > 0 {
		return st // the client went on, was answered, or the kernel dropped a SYN
	}
	var rv bpf.FlowFlowAgg
	if c.dp.Flow.Flows.Lookup(reverse(k), &rv) == nil {
		return st // a packet came back
	}
	f := c.flowRecord(k, v.Ifindex, v.Hook, c.dp.Interfaces(), v.TcpFlags)
	f.EventKind = flowv1.EventKind_CONNECT_TIMEOUT
	f.IsReply = isReply(k.Tuple.Proto, v.FirstTcpFlags)
	f.FirstSeen, f.LastSeen = clk.ts(v.FirstNs), clk.ts(max(v.LastNs, v.FirstNs))
	f.Time = f.LastSeen
	f.Packets, f.Bytes = v.Packets, v.Bytes // the SYNs sent
	c.publishFlow(f, "connect_timeout")
	return st
}
