package bpf

import (
	"encoding/binary"
	"testing"
)

const rstFlag = 0x04

// reply swaps an IPv4 packet's addresses (and the TCP ports behind a
// 20-byte header): the same connection's other direction.
func reply(l3 []byte) []byte {
	out := append([]byte(nil), l3...)
	copy(out[12:16], l3[16:20])
	copy(out[16:20], l3[12:16])
	copy(out[20:22], l3[22:24])
	copy(out[22:24], l3[20:22])
	return out
}

func window(seg []byte, w uint16) []byte {
	binary.BigEndian.PutUint16(seg[14:], w)
	return seg
}

func TestFlowProgramTimesTheHandshakeInTheClientsEntryOnce(t *testing.T) {
	p := loadFlow(t, 64, 1000)
	in := p.objs.TrawlFlowIngress
	p.run(t, in, frame(0x0800, ipv4(6, tcp(40000, 80, synFlag, 0))), nil)
	p.run(t, in, frame(0x0800, ipv4(6, tcp(40000, 80, synFlag, 0))), nil) // sent again
	p.run(t, in, frame(0x0800, reply(ipv4(6, tcp(40000, 80, synFlag|ackFlag, 0)))), nil)
	p.run(t, in, frame(0x0800, ipv4(6, tcp(40000, 80, ackFlag, 0))), nil)
	client := FlowFlowKey{Tuple: tuple4(6, 40000, 80)}
	server := FlowFlowKey{Tuple: FlowFlowTuple{Proto: 6, Family: 4, Sport: 80, Dport: 40000}}
	copy(server.Tuple.Saddr[:], dst4[:])
	copy(server.Tuple.Daddr[:], src4[:])
	e := p.entries(t)
	c, s := e[client], e[server]
	if c.SynNs == 0 || c.SynackNs == 0 || c.AckNs == 0 {
		t.Fatalf("client entry SYN %d, SYN-ACK %d, ACK %d: want all three times", c.SynNs, c.SynackNs, c.AckNs)
	}
	if c.SynNs <= c.FirstNs || c.SynackNs < c.SynNs || c.AckNs < c.SynackNs {
		t.Errorf("first %d, SYN %d, SYN-ACK %d, ACK %d: want the latest SYN after the first, then in order", c.FirstNs, c.SynNs, c.SynackNs, c.AckNs)
	}
	if c.Answered != 1 || c.HsWait != 0 {
		t.Errorf("client entry answered %d, waiting %d: want answered, not waiting", c.Answered, c.HsWait)
	}
	if s.SynNs != 0 || s.AckNs != 0 || s.Packets != 1 || s.SynackNs != c.SynackNs {
		t.Errorf("server entry %+v: want one packet, its SYN-ACK's time as in the client's entry (%d), no SYN or ACK time", s, c.SynackNs)
	}
	if got := p.counters(t)[FlowCounterCNT_HANDSHAKES]; got != 1 {
		t.Errorf("handshakes counted %d, want 1", got)
	}
	ack := c.AckNs
	p.run(t, in, frame(0x0800, reply(ipv4(6, tcp(40000, 80, synFlag|ackFlag, 0)))), nil) // SYN-ACK again
	p.run(t, in, frame(0x0800, ipv4(6, tcp(40000, 80, ackFlag|pshFlag, 100))), nil)
	e = p.entries(t)
	if got := e[client]; got.AckNs != ack || got.HsWait != 0 || got.SynackNs != c.SynackNs {
		t.Errorf("after the handshake: ACK time %d -> %d, waiting %d, SYN-ACK time %d -> %d: want the handshake timed once, from the first SYN-ACK",
			ack, got.AckNs, got.HsWait, c.SynackNs, got.SynackNs)
	}
	// The SYN-ACK sent again is timed in its own entry only (user space
	// takes the later one when it came before the client's ACK).
	if got := e[server].SynackNs; got <= s.SynackNs {
		t.Errorf("server entry's SYN-ACK time %d -> %d: want the one sent again, later", s.SynackNs, got)
	}
}

func TestARSTAnsweringASYNMarksTheClientsEntryAnsweredWithoutTimingIt(t *testing.T) {
	p := loadFlow(t, 64, 1000)
	in := p.objs.TrawlFlowIngress
	p.run(t, in, frame(0x0800, ipv4(6, tcp(40001, 81, synFlag, 0))), nil)
	c := p.entries(t)[FlowFlowKey{Tuple: tuple4(6, 40001, 81)}]
	if c.Answered != 0 {
		t.Fatal("a lone SYN's entry is answered")
	}
	p.run(t, in, frame(0x0800, reply(ipv4(6, window(tcp(40001, 81, rstFlag|ackFlag, 0), 0)))), nil)
	c = p.entries(t)[FlowFlowKey{Tuple: tuple4(6, 40001, 81)}]
	if c.Answered != 1 || c.SynackNs != 0 || c.HsWait != 0 {
		t.Errorf("client entry answered %d, SYN-ACK %d, waiting %d: want answered by the RST, no SYN-ACK", c.Answered, c.SynackNs, c.HsWait)
	}
}

func TestZeroWindowAdvertisementsAreCountedPerDirectionButNotOnRSTOrSYN(t *testing.T) {
	p := loadFlow(t, 64, 1000)
	in := p.objs.TrawlFlowIngress
	p.run(t, in, frame(0x0800, ipv4(6, window(tcp(40002, 82, synFlag, 0), 0))), nil)
	p.run(t, in, frame(0x0800, ipv4(6, window(tcp(40002, 82, ackFlag, 0), 0))), nil)
	p.run(t, in, frame(0x0800, ipv4(6, window(tcp(40002, 82, ackFlag, 0), 0))), nil)
	p.run(t, in, frame(0x0800, ipv4(6, tcp(40002, 82, ackFlag, 10))), nil)
	p.run(t, in, frame(0x0800, ipv4(6, window(tcp(40002, 82, rstFlag, 0), 0))), nil)
	p.run(t, in, frame(0x0800, reply(ipv4(6, window(tcp(40002, 82, ackFlag, 0), 0)))), nil) // new entry
	c := p.entries(t)[FlowFlowKey{Tuple: tuple4(6, 40002, 82)}]
	if c.ZeroWindows != 2 {
		t.Errorf("client direction: %d zero windows, want 2 (not the SYN's, not the RST's)", c.ZeroWindows)
	}
	server := FlowFlowKey{Tuple: FlowFlowTuple{Proto: 6, Family: 4, Sport: 82, Dport: 40002}}
	copy(server.Tuple.Saddr[:], dst4[:])
	copy(server.Tuple.Daddr[:], src4[:])
	if s := p.entries(t)[server]; s.ZeroWindows != 1 {
		t.Errorf("server direction: %d zero windows, want 1 (its first packet)", s.ZeroWindows)
	}
}
