package collect

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

func TestTCPHealthCarriesTheHandshakeOnceAndRetransmitsAsDeltas(t *testing.T) {
	c := &Collector{}
	k := bpf.FlowFlowKey{Tuple: bpf.FlowFlowTuple{Proto: l4.TCP, Family: 4, Sport: 40000, Dport: 80}}
	v := bpf.FlowFlowAgg{FirstTcpFlags: uint32(l4.SYN), TcpFlags: uint32(l4.SYN | l4.ACK),
		SynNs: 1_000_000, SynackNs: 21_000_000, AckNs: 21_100_000, ZeroWindows: 1}
	h, s := c.tcpHealth(k, &v, tcpState{}, v.SynackNs, 3)
	if h.GetHandshakeSynAck().AsDuration() != 20*time.Millisecond || h.GetHandshakeAck().AsDuration() != 100*time.Microsecond {
		t.Errorf("handshake halves %v + %v, want 20ms + 100µs", h.GetHandshakeSynAck().AsDuration(), h.GetHandshakeAck().AsDuration())
	}
	if h.Retransmits != 3 || h.ZeroWindows != 1 || h.ResetBy != flowv1.TCPSide_TCP_SIDE_UNKNOWN {
		t.Errorf("first record %v: want 3 retransmits, 1 zero window, no reset", h)
	}
	v.TcpFlags |= uint32(l4.RST)
	h, s = c.tcpHealth(k, &v, s, v.SynackNs, 5)
	if h.GetHandshakeSynAck() != nil || h.Retransmits != 2 || h.ZeroWindows != 0 || h.ResetBy != flowv1.TCPSide_CLIENT {
		t.Errorf("second record %v: want no handshake, 2 retransmits, no zero window, reset by the client", h)
	}
	if h, _ := c.tcpHealth(k, &v, s, v.SynackNs, 5); h != nil {
		t.Errorf("nothing new, yet %v", h)
	}
}

func TestAHandshakeWhoseSYNCrossedItsSYNACKIsNotTimed(t *testing.T) {
	c := &Collector{}
	k := bpf.FlowFlowKey{Tuple: bpf.FlowFlowTuple{Proto: l4.TCP, Family: 4}}
	v := bpf.FlowFlowAgg{FirstTcpFlags: uint32(l4.SYN), SynNs: 30, SynackNs: 20, AckNs: 40}
	h, s := c.tcpHealth(k, &v, tcpState{}, v.SynackNs, 0)
	if h != nil || !s.handshake {
		t.Errorf("record %v, handshake done %v: want no halves, and never again", h, s.handshake)
	}
}

func TestAHandshakeIsTimedFromTheLatestSYNACKBeforeTheACKWhicheverEntryHoldsIt(t *testing.T) {
	c, dp, _ := newTestCollector(t, Config{})
	client := bpf.FlowFlowKey{Tuple: bpf.FlowFlowTuple{Proto: l4.TCP, Family: 4, Sport: 40000, Dport: 80,
		Saddr: [16]byte{10, 0, 0, 1}, Daddr: [16]byte{10, 0, 0, 2}}}
	v := bpf.FlowFlowAgg{FirstTcpFlags: uint32(l4.SYN), SynNs: 1_000, SynackNs: 2_000, AckNs: 5_000}
	for _, tc := range []struct {
		name   string
		server *uint64 // the server entry's SYN-ACK time; nil: no server entry (NAT)
		done   bool    // the handshake went out already
		want   uint64
	}{
		{"no server entry (under NAT): the client's first SYN-ACK", nil, false, 2_000},
		{"the server's SYN-ACK is the same one", ptr[uint64](2_000), false, 2_000},
		{"the server sent it again before the ACK: the later one", ptr[uint64](4_000), false, 4_000},
		{"the server sent it again after the ACK: not the one the client answered", ptr[uint64](6_000), false, 2_000},
		{"the handshake went out already: nothing to time", ptr[uint64](4_000), true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp.Flow.Flows.Delete(reverse(client))
			if tc.server != nil {
				sv := bpf.FlowFlowAgg{FirstTcpFlags: uint32(l4.SYN | l4.ACK), SynackNs: *tc.server}
				if err := dp.Flow.Flows.Put(reverse(client), &sv); err != nil {
					t.Fatal(err)
				}
			}
			if got := c.handshakeSynAck(client, &v, tcpState{handshake: tc.done}); got != tc.want {
				t.Errorf("SYN-ACK time %d, want %d", got, tc.want)
			}
		})
	}
}

func TestOnlySYNsAreAConnectionAttempt(t *testing.T) {
	for flags, want := range map[uint16]bool{
		l4.SYN:                   true,
		l4.SYN | l4.ECE | l4.CWR: true,
		l4.SYN | l4.ACK:          false,
		l4.SYN | l4.RST:          false,
		l4.ACK:                   false,
	} {
		if got := synOnly(uint32(flags)); got != want {
			t.Errorf("synOnly(%#x) = %v, want %v", flags, got, want)
		}
	}
}

func TestARSTAnsweringASYNMakesItsDirectionTheReply(t *testing.T) {
	for _, tc := range []struct {
		name      string
		isReply   *wrapperspb.BoolValue
		side      flowv1.TCPSide
		wantReply *bool
	}{
		{"the server's RST (a closed port) is a reply", nil, flowv1.TCPSide_SERVER, ptr(true)},
		{"the client's RST is not", nil, flowv1.TCPSide_CLIENT, ptr(false)},
		{"an unknown side leaves it unknown", nil, flowv1.TCPSide_TCP_SIDE_UNKNOWN, nil},
		{"the first packet's answer is kept", wrapperspb.Bool(false), flowv1.TCPSide_SERVER, ptr(false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &flowv1.Flow{IsReply: tc.isReply}
			orient(f, tc.side)
			switch {
			case tc.wantReply == nil && f.IsReply != nil:
				t.Errorf("is_reply %v, want unset", f.IsReply.GetValue())
			case tc.wantReply != nil && (f.IsReply == nil || f.IsReply.GetValue() != *tc.wantReply):
				t.Errorf("is_reply %v, want %v", f.IsReply, *tc.wantReply)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
