package bpf

import (
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/trawl-dev/trawl/internal/testbed/roottest"
)

// Packet builders for BPF_PROG_TEST_RUN. Addresses are fixed; ports and
// flags vary per case.

var (
	src4 = [4]byte{10, 0, 0, 1}
	dst4 = [4]byte{10, 0, 0, 2}
	src6 = [16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	dst6 = [16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}
)

func ethHdr(ethertype uint16, vlan bool) []byte {
	b := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}
	if vlan {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, 42) // VLAN id 42
	}
	return binary.BigEndian.AppendUint16(b, ethertype)
}

func ipv4(proto uint8, payload []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h[8] = 64
	h[9] = proto
	copy(h[12:], src4[:])
	copy(h[16:], dst4[:])
	return append(h, payload...)
}

func ipv6(next uint8, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6] = next
	h[7] = 64
	copy(h[8:], src6[:])
	copy(h[24:], dst6[:])
	return append(h, payload...)
}

func tcp(sport, dport uint16, flags uint8, data int) []byte {
	h := make([]byte, 20+data)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12] = 5 << 4
	h[13] = flags
	binary.BigEndian.PutUint16(h[14:], 502) // an open window (0 would be a zero-window advertisement)
	return h
}

func udp(sport, dport uint16, data int) []byte {
	h := make([]byte, 8+data)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+data))
	return h
}

func icmp(typ, code uint8) []byte { return []byte{typ, code, 0, 0, 0, 1, 0, 1} }

// hopByHop wraps an L4 payload in an 8-byte IPv6 hop-by-hop header.
func hopByHop(next uint8, payload []byte) []byte {
	return append([]byte{next, 0, 1, 4, 0, 0, 0, 0}, payload...)
}

func frame(ethertype uint16, l3 []byte) []byte { return append(ethHdr(ethertype, false), l3...) }

const (
	synFlag = 0x02
	ackFlag = 0x10
	finFlag = 0x01
	pshFlag = 0x08
)

// skbCtx is struct __sk_buff as 32-bit words (192 bytes on this kernel's
// UAPI); only fields test runs may set are used.
type skbCtx [48]uint32

const (
	skbIngressIfindex = 36 / 4
	skbGSOSegs        = 164 / 4
)

type flowProgs struct {
	objs FlowObjects
	rd   *ringbuf.Reader
}

// loadFlow loads the flow objects with a map capacity and event rate, and
// pins the test to one CPU so the per-CPU token bucket and counters are
// predictable.
func loadFlow(t *testing.T, mapSize uint32, perSec uint64, edit ...func(*ebpf.CollectionSpec)) *flowProgs {
	t.Helper()
	roottest.Require(t, "loads BPF programs")
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	var one unix.CPUSet
	one.Set(0)
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.SchedSetaffinity(0, &orig) })

	spec, err := LoadFlow()
	if err != nil {
		t.Fatal(err)
	}
	spec.Maps[FlowMapFlows].MaxEntries = mapSize
	if err := spec.Variables["events_per_sec"].Set(perSec); err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables["events_burst"].Set(perSec); err != nil {
		t.Fatal(err)
	}
	for _, e := range edit {
		e(spec)
	}
	p := &flowProgs{}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		t.Fatalf("load flow objects: %v", err)
	}
	t.Cleanup(func() { p.objs.Close() })
	p.rd, err = ringbuf.NewReader(p.objs.FlowEvents)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.rd.Close() })
	return p
}

func (p *flowProgs) run(t *testing.T, prog *ebpf.Program, data []byte, ctx *skbCtx) {
	t.Helper()
	if ctx == nil {
		ctx = &skbCtx{}
	}
	out := make([]byte, len(data)+256)
	ret, err := prog.Run(&ebpf.RunOptions{Data: data, DataOut: out, Context: ctx[:]})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	if int32(ret) != -1 {
		t.Fatalf("program returned %d, want TC_ACT_UNSPEC/TCX_NEXT (-1): it must never change a packet's fate", int32(ret))
	}
	if string(out[:len(data)]) != string(data) {
		t.Fatal("program changed the packet")
	}
}

func (p *flowProgs) entries(t *testing.T) map[FlowFlowKey]FlowFlowAgg {
	t.Helper()
	out := map[FlowFlowKey]FlowFlowAgg{}
	var k FlowFlowKey
	var v FlowFlowAgg
	it := p.objs.Flows.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (p *flowProgs) counters(t *testing.T) []uint64 {
	t.Helper()
	out := make([]uint64, FlowCounterCNT_MAX)
	var per []uint64
	for i := range out {
		if err := p.objs.Counters.Lookup(uint32(i), &per); err != nil {
			t.Fatal(err)
		}
		for _, v := range per {
			out[i] += v
		}
	}
	return out
}

func (p *flowProgs) events(t *testing.T) []FlowFlowEvent {
	t.Helper()
	var out []FlowFlowEvent
	p.rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
	for {
		rec, err := p.rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var ev FlowFlowEvent
		if _, err := binary.Decode(rec.RawSample, binary.LittleEndian, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

func tuple4(proto uint8, sport, dport uint16) FlowFlowTuple {
	t := FlowFlowTuple{Proto: proto, Family: 4, Sport: sport, Dport: dport}
	copy(t.Saddr[:], src4[:])
	copy(t.Daddr[:], dst4[:])
	return t
}

func tuple6(proto uint8, sport, dport uint16) FlowFlowTuple {
	return FlowFlowTuple{Proto: proto, Family: 6, Sport: sport, Dport: dport, Saddr: src6, Daddr: dst6}
}

func TestFlowProgramAggregatesWellFormedPackets(t *testing.T) {
	tests := []struct {
		name  string
		data  []byte
		tuple FlowFlowTuple
		bytes uint64 // L3 length
		flags uint32
	}{
		{"IPv4 TCP SYN", frame(0x0800, ipv4(6, tcp(40000, 80, synFlag, 0))), tuple4(6, 40000, 80), 40, synFlag},
		{"IPv4 UDP with payload", frame(0x0800, ipv4(17, udp(5353, 53, 100))), tuple4(17, 5353, 53), 128, 0},
		{"IPv4 ICMP echo request keeps type and code", frame(0x0800, ipv4(1, icmp(8, 0))), tuple4(1, 8, 0), 28, 0},
		{"IPv6 TCP SYN-ACK", frame(0x86DD, ipv6(6, tcp(443, 50000, synFlag|ackFlag, 0))), tuple6(6, 443, 50000), 60, synFlag | ackFlag},
		{"IPv6 UDP", frame(0x86DD, ipv6(17, udp(1000, 2000, 10))), tuple6(17, 1000, 2000), 58, 0},
		{"IPv6 ICMPv6 echo", frame(0x86DD, ipv6(58, icmp(128, 0))), tuple6(58, 128, 0), 48, 0},
		{"IPv6 UDP behind a hop-by-hop header", frame(0x86DD, ipv6(0, hopByHop(17, udp(7, 9, 0)))), tuple6(17, 7, 9), 56, 0},
		{"VLAN-tagged IPv4 UDP", append(ethHdr(0x0800, true), ipv4(17, udp(1111, 2222, 0))...), tuple4(17, 1111, 2222), 28, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := loadFlow(t, 64, 1000)
			p.run(t, p.objs.TrawlFlowIngress, tt.data, nil)
			got := p.entries(t)
			key := FlowFlowKey{Tuple: tt.tuple}
			v, ok := got[key]
			if !ok || len(got) != 1 {
				t.Fatalf("map holds %v, want one entry for %+v", got, key)
			}
			if v.Ifindex != 1 || v.Hook != uint8(FlowHookHOOK_INGRESS) {
				t.Errorf("entry counted at ifindex %d hook %d, want 1 and ingress", v.Ifindex, v.Hook)
			}
			if v.Packets != 1 || v.Bytes != tt.bytes || v.TcpFlags != tt.flags || v.FirstTcpFlags != tt.flags {
				t.Errorf("entry %+v, want 1 packet, %d bytes, flags %#x", v, tt.bytes, tt.flags)
			}
			evs := p.events(t)
			if len(evs) != 1 || evs[0].Kind != uint8(FlowEventKindEV_FLOW_NEW) || evs[0].Key != key || uint64(evs[0].Bytes) != tt.bytes ||
				evs[0].Ifindex != 1 || evs[0].Hook != uint8(FlowHookHOOK_INGRESS) {
				t.Errorf("events %+v, want one FLOW_NEW for the key", evs)
			}
		})
	}
}

func TestFlowProgramCountsBrokenPacketsWithoutRecordingThem(t *testing.T) {
	shortIHL := frame(0x0800, ipv4(6, tcp(1, 2, synFlag, 0)))
	shortIHL[14] = 0x44 // IHL 4: 16 bytes, below the minimum
	totLenTooSmall := frame(0x0800, ipv4(17, udp(1, 2, 0)))
	binary.BigEndian.PutUint16(totLenTooSmall[16:], 12)
	totLenTooBig := frame(0x0800, ipv4(17, udp(1, 2, 0)))
	binary.BigEndian.PutUint16(totLenTooBig[16:], 1400)
	tcpShortOffset := frame(0x0800, ipv4(6, tcp(1, 2, synFlag, 0)))
	tcpShortOffset[14+20+12] = 4 << 4
	udpBadLength := frame(0x0800, ipv4(17, udp(1, 2, 0)))
	binary.BigEndian.PutUint16(udpBadLength[14+20+4:], 4)
	v6PayloadTooBig := frame(0x86DD, ipv6(17, udp(1, 2, 0)))
	binary.BigEndian.PutUint16(v6PayloadTooBig[14+4:], 900)
	arp := frame(0x0806, make([]byte, 28))

	tests := []struct {
		name    string
		data    []byte
		counter FlowCounter
	}{
		// The kernel's test run refuses IP frames shorter than an IP
		// header, so truncated L3 headers sit behind a VLAN tag.
		{"VLAN tag cut short", append(ethHdr(0x8100, false), 0, 42), FlowCounterCNT_TRUNCATED},
		{"IPv4 header cut short", append(ethHdr(0x0800, true), ipv4(6, nil)[:12]...), FlowCounterCNT_TRUNCATED},
		{"IPv4 IHL below 5", shortIHL, FlowCounterCNT_MALFORMED},
		{"IPv4 total length below the header", totLenTooSmall, FlowCounterCNT_MALFORMED},
		{"IPv4 total length beyond the packet", totLenTooBig, FlowCounterCNT_TRUNCATED},
		{"TCP header cut short", frame(0x0800, ipv4(6, tcp(1, 2, 0, 0)))[:14+20+10], FlowCounterCNT_TRUNCATED},
		{"TCP data offset below 5", tcpShortOffset, FlowCounterCNT_MALFORMED},
		{"UDP length below its header", udpBadLength, FlowCounterCNT_MALFORMED},
		{"IPv6 payload length beyond the packet", v6PayloadTooBig, FlowCounterCNT_TRUNCATED},
		{"IPv6 header cut short", append(ethHdr(0x86DD, true), ipv6(17, nil)[:30]...), FlowCounterCNT_TRUNCATED},
		{"ARP is not IP", arp, FlowCounterCNT_NOT_IP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := loadFlow(t, 64, 1000)
			p.run(t, p.objs.TrawlFlowIngress, tt.data, nil)
			if got := p.entries(t); len(got) != 0 {
				t.Errorf("map holds %v, want nothing recorded", got)
			}
			c := p.counters(t)
			for i, v := range c {
				want := uint64(0)
				if FlowCounter(i) == tt.counter {
					want = 1
				}
				if v != want {
					t.Errorf("counter %d = %d, want %d (expected counter %d)", i, v, want, tt.counter)
				}
			}
		})
	}
}

func TestFlowProgramAddsUpAFlowAndReportsItsClose(t *testing.T) {
	p := loadFlow(t, 64, 1000)
	p.run(t, p.objs.TrawlFlowIngress, frame(0x0800, ipv4(6, tcp(40000, 80, synFlag, 0))), nil)
	p.run(t, p.objs.TrawlFlowIngress, frame(0x0800, ipv4(6, tcp(40000, 80, ackFlag|pshFlag, 1000))), nil)
	p.run(t, p.objs.TrawlFlowIngress, frame(0x0800, ipv4(6, tcp(40000, 80, ackFlag|finFlag, 0))), nil)
	key := FlowFlowKey{Tuple: tuple4(6, 40000, 80)}
	v := p.entries(t)[key]
	if v.Packets != 3 || v.Bytes != 40+1040+40 || v.TcpFlags != synFlag|ackFlag|pshFlag|finFlag || v.FirstTcpFlags != synFlag {
		t.Errorf("entry %+v, want 3 packets, 1120 bytes, flags OR'd, first flags SYN", v)
	}
	if v.LastNs < v.FirstNs {
		t.Errorf("last seen %d before first seen %d", v.LastNs, v.FirstNs)
	}
	evs := p.events(t)
	if len(evs) != 2 || evs[0].Kind != uint8(FlowEventKindEV_FLOW_NEW) || evs[1].Kind != uint8(FlowEventKindEV_FLOW_CLOSE) {
		t.Fatalf("events %+v, want FLOW_NEW then FLOW_CLOSE", evs)
	}
}

func TestFlowProgramCountsGSOPacketsPerSegment(t *testing.T) {
	p := loadFlow(t, 64, 1000)
	ctx := &skbCtx{}
	ctx[skbGSOSegs] = 3
	p.run(t, p.objs.TrawlFlowIngress, frame(0x0800, ipv4(6, tcp(1, 2, ackFlag, 3000))), ctx)
	v := p.entries(t)[FlowFlowKey{Tuple: tuple4(6, 1, 2)}]
	// One super-packet of 3 segments: 3 packets, and every segment but the
	// first adds its own IPv4 + TCP header.
	if v.Packets != 3 || v.Bytes != 3040+2*40 {
		t.Errorf("entry %+v, want 3 packets and %d bytes", v, 3040+2*40)
	}
}

func TestEgressHookSkipsPacketsThatEnteredThroughAWatchedInterface(t *testing.T) {
	tests := []struct {
		name      string
		watched   bool
		ingressIf uint32
		want      int
	}{
		{"forwarded from a watched interface: counted at its ingress", true, 1, 0},
		{"forwarded from an unwatched interface: counted at egress", false, 1, 1},
		{"sent by the node itself: counted at egress", true, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := loadFlow(t, 64, 1000)
			if tt.watched {
				if err := p.objs.Watched.Put(uint32(1), uint8(1)); err != nil {
					t.Fatal(err)
				}
			}
			ctx := &skbCtx{}
			ctx[skbIngressIfindex] = tt.ingressIf
			p.run(t, p.objs.TrawlFlowEgress, frame(0x0800, ipv4(17, udp(1, 2, 0))), ctx)
			got := p.entries(t)
			if len(got) != tt.want {
				t.Fatalf("map holds %d entries, want %d", len(got), tt.want)
			}
			for _, v := range got {
				if v.Hook != uint8(FlowHookHOOK_EGRESS) {
					t.Errorf("hook %d, want egress", v.Hook)
				}
			}
		})
	}
}

func TestInstantEventsAreRateLimitedAndAFullMapIsCounted(t *testing.T) {
	// Two tokens, no refill within the test; a map with room for 3 flows.
	p := loadFlow(t, 3, 2)
	for port := uint16(1); port <= 10; port++ {
		p.run(t, p.objs.TrawlFlowIngress, frame(0x0800, ipv4(17, udp(port, 53, 0))), nil)
	}
	if n := len(p.entries(t)); n != 3 {
		t.Errorf("map holds %d flows, want 3 (its capacity)", n)
	}
	evs := p.events(t)
	c := p.counters(t)
	if len(evs) != 2 || c[FlowCounterCNT_EVENTS] != 2 {
		t.Errorf("%d events (counter %d), want 2", len(evs), c[FlowCounterCNT_EVENTS])
	}
	// Three flows got an entry: two events passed, one was suppressed. The
	// seven without an entry send no event (they would look new on every
	// packet); they are counted as map-full.
	if c[FlowCounterCNT_RATE_LIMITED] != 1 {
		t.Errorf("rate-limited counter %d, want 1", c[FlowCounterCNT_RATE_LIMITED])
	}
	if c[FlowCounterCNT_MAP_FULL] != 7 {
		t.Errorf("map-full counter %d, want 7", c[FlowCounterCNT_MAP_FULL])
	}
}

// BenchmarkFlowProgram measures the in-kernel cost of one run with
// BPF_PROG_TEST_RUN (bench/datapath.sh reports it): a data packet of an
// existing flow, the common case (neither is DNS: DNS capture costs them
// one port check), and TCP handshake packets.
// TRAWL_FLOW_OBJECT=path runs another build of flow.c instead of the
// embedded one (e.g. `git show REV:agent/bpf/flow_bpfel.o`), to compare
// before and after a change (docs/benchmarks/dns.md).
func BenchmarkFlowProgram(b *testing.B) {
	roottest.Require(b, "loads BPF programs")
	objs := loadFlowBench(b)
	pkts := map[string][]byte{
		"IPv4 TCP": frame(0x0800, ipv4(6, tcp(40000, 80, ackFlag, 1000))),
		"IPv6 UDP": frame(0x86DD, ipv6(17, udp(1000, 2000, 64))),
		// Handshake packets, the TCP health's costliest (tcp.h): a SYN
		// sent again (the precise clock) and a SYN-ACK sent again (the
		// reverse entry's lookup, then conntrack's, both missing here).
		"IPv4 TCP SYN":     frame(0x0800, ipv4(6, tcp(40000, 80, synFlag, 0))),
		"IPv4 TCP SYN-ACK": frame(0x0800, ipv4(6, tcp(40000, 80, synFlag|ackFlag, 0))),
		// ... and one that finds its client's entry (the common case):
		// it stores the SYN-ACK's time there on every run.
		"IPv4 TCP SYN-ACK to a SYN": frame(0x0800, ipv4(6, tcp(40001, 81, synFlag|ackFlag, 0))),
	}
	// The client's SYN of the last one.
	if _, err := objs.TrawlFlowIngress.Run(&ebpf.RunOptions{Data: frame(0x0800, reply(ipv4(6, tcp(40001, 81, synFlag, 0))))}); err != nil {
		b.Fatal(err)
	}
	for name, pkt := range pkts {
		b.Run(name, func(b *testing.B) {
			_, perRun, err := objs.TrawlFlowIngress.Benchmark(pkt, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			// The kernel's own timing of the program runs, without the
			// syscall and test-run setup around them.
			b.ReportMetric(float64(perRun.Nanoseconds()), "kernel-ns/run")
		})
	}
	// A connection's first SYN-ACK creates its entry and (since TCP
	// health) finds the client's: each run a new connection, so one test
	// run per packet (the kernel's time of that one run), and the SYN
	// before it untimed. Without a SYN the client's entry is missed, then
	// conntrack is asked (a connection through a translation). Both entries
	// are deleted after the run, so the map never fills.
	for _, c := range []struct {
		name string
		syn  bool
	}{{"IPv4 TCP new SYN-ACK to a SYN", true}, {"IPv4 TCP new SYN-ACK, no client entry", false}} {
		b.Run(c.name, func(b *testing.B) {
			synack := frame(0x0800, ipv4(6, tcp(40002, 82, synFlag|ackFlag, 0)))
			syn := frame(0x0800, reply(ipv4(6, tcp(40002, 82, synFlag, 0))))
			server := FlowFlowKey{Tuple: tuple4(6, 40002, 82)}
			client := FlowFlowKey{Tuple: FlowFlowTuple{Proto: 6, Family: 4, Sport: 82, Dport: 40002}}
			copy(client.Tuple.Saddr[:], dst4[:])
			copy(client.Tuple.Daddr[:], src4[:])
			var total time.Duration
			for range b.N {
				if c.syn {
					if _, err := objs.TrawlFlowIngress.Run(&ebpf.RunOptions{Data: syn}); err != nil {
						b.Fatal(err)
					}
				}
				_, perRun, err := objs.TrawlFlowIngress.Benchmark(synack, 1, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += perRun
				if err := objs.Flows.Delete(server); err != nil {
					b.Fatalf("the SYN-ACK made no entry: %v", err)
				}
				objs.Flows.Delete(client)
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "kernel-ns/run")
		})
	}
}

// benchFlow is the flow program and its map, as the benchmarks load them.
type benchFlow struct {
	TrawlFlowIngress *ebpf.Program `ebpf:"trawl_flow_ingress"`
	Flows            *ebpf.Map     `ebpf:"flows"`
}

// loadFlowBench loads the embedded flow object, or the one TRAWL_FLOW_OBJECT
// names, closed when the benchmark ends.
func loadFlowBench(b *testing.B) *benchFlow {
	b.Helper()
	spec, err := LoadFlow()
	if path := os.Getenv("TRAWL_FLOW_OBJECT"); path != "" {
		spec, err = ebpf.LoadCollectionSpec(path)
	}
	if err != nil {
		b.Fatal(err)
	}
	var objs benchFlow
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		objs.TrawlFlowIngress.Close()
		objs.Flows.Close()
	})
	return &objs
}
