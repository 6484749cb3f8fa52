package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// dnsEvents reads what the flow program sent to the DNS ring buffer.
func (p *flowProgs) dnsEvents(t *testing.T) []FlowDnsEvent {
	t.Helper()
	rd, err := ringbuf.NewReader(p.objs.DnsEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out []FlowDnsEvent
	rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
	for {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var ev FlowDnsEvent
		if _, err := binary.Decode(rec.RawSample, binary.LittleEndian, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

// dnsSettings sets the DNS ports and rate of the flow program.
func dnsSettings(t *testing.T, perSec uint64, ports ...uint16) func(*ebpf.CollectionSpec) {
	return func(spec *ebpf.CollectionSpec) {
		for i := 0; i < 4; i++ {
			var port uint16
			if i < len(ports) {
				port = ports[i]
			}
			if err := spec.Variables["dns_port_"+string(rune('0'+i))].Set(port); err != nil {
				t.Fatal(err)
			}
		}
		if err := spec.Variables["dns_per_sec"].Set(perSec); err != nil {
			t.Fatal(err)
		}
		if err := spec.Variables["dns_burst"].Set(perSec); err != nil {
			t.Fatal(err)
		}
	}
}

// withPayload puts data behind a UDP or TCP header built by udp/tcp.
func withPayload(hdr []byte, hdrLen int, data []byte) []byte {
	out := append([]byte(nil), hdr[:hdrLen]...)
	if hdrLen == 8 {
		binary.BigEndian.PutUint16(out[4:], uint16(8+len(data)))
	}
	return append(out, data...)
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestFlowProgramCopiesDNSPayloadsOnTheConfiguredPorts(t *testing.T) {
	big := payload(700)
	tests := []struct {
		name   string
		ports  []uint16
		data   []byte
		tuple  FlowFlowTuple
		copied []byte // nil: no DNS event
		msgLen uint16
	}{
		{"a UDP query to port 53", []uint16{53}, frame(0x0800, ipv4(17, withPayload(udp(40000, 53, 0), 8, payload(40)))), tuple4(17, 40000, 53), payload(40), 40},
		{"a UDP response from port 53", []uint16{53}, frame(0x0800, ipv4(17, withPayload(udp(53, 40000, 0), 8, payload(60)))), tuple4(17, 53, 40000), payload(60), 60},
		{"a TCP segment to port 53, length prefix included", []uint16{53}, frame(0x0800, ipv4(6, withPayload(tcp(40000, 53, ackFlag|pshFlag, 0), 20, payload(50)))), tuple4(6, 40000, 53), payload(50), 50},
		{"an IPv6 UDP query", []uint16{53}, frame(0x86DD, ipv6(17, withPayload(udp(40000, 53, 0), 8, payload(33)))), tuple6(17, 40000, 53), payload(33), 33},
		{"a long message is cut at 512 bytes", []uint16{53}, frame(0x0800, ipv4(17, withPayload(udp(40000, 53, 0), 8, big))), tuple4(17, 40000, 53), big[:512], 700},
		{"a second configured port", []uint16{53, 5353}, frame(0x0800, ipv4(17, withPayload(udp(40000, 5353, 0), 8, payload(20)))), tuple4(17, 40000, 5353), payload(20), 20},
		{"port 53 when only 5353 is configured: nothing", []uint16{5353}, frame(0x0800, ipv4(17, withPayload(udp(40000, 53, 0), 8, payload(20)))), tuple4(17, 40000, 53), nil, 0},
		{"no ports: nothing", nil, frame(0x0800, ipv4(17, withPayload(udp(40000, 53, 0), 8, payload(20)))), tuple4(17, 40000, 53), nil, 0},
		{"a TCP handshake segment without payload: nothing", []uint16{53}, frame(0x0800, ipv4(6, tcp(40000, 53, synFlag, 0))), tuple4(6, 40000, 53), nil, 0},
		{"other UDP traffic: nothing", []uint16{53}, frame(0x0800, ipv4(17, withPayload(udp(40000, 443, 0), 8, payload(40)))), tuple4(17, 40000, 443), nil, 0},
		{"ICMP whose type and code fields hold 53: nothing", []uint16{53}, frame(0x0800, ipv4(1, icmp(53, 53))), tuple4(1, 53, 53), nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := loadFlow(t, 64, 1000, dnsSettings(t, 1000, tt.ports...))
			p.run(t, p.objs.TrawlFlowIngress, tt.data, nil)
			evs := p.dnsEvents(t)
			c := p.counters(t)
			if tt.copied == nil {
				if len(evs) != 0 || c[FlowCounterCNT_DNS_EVENTS] != 0 {
					t.Fatalf("%d DNS events (counter %d), want none", len(evs), c[FlowCounterCNT_DNS_EVENTS])
				}
				return
			}
			if len(evs) != 1 || c[FlowCounterCNT_DNS_EVENTS] != 1 {
				t.Fatalf("%d DNS events (counter %d), want 1", len(evs), c[FlowCounterCNT_DNS_EVENTS])
			}
			ev := evs[0]
			if ev.Tuple != tt.tuple || ev.Ifindex != 1 || ev.Hook != uint8(FlowHookHOOK_INGRESS) || ev.HasFlow != 1 || ev.TsNs == 0 {
				t.Errorf("event %+v, want tuple %+v at ifindex 1, ingress, with its flow", ev, tt.tuple)
			}
			if ev.MsgLen != tt.msgLen || !bytes.Equal(ev.Data[:ev.Len], tt.copied) {
				t.Errorf("copied %d of %d bytes, want %d of %d, same bytes", ev.Len, ev.MsgLen, len(tt.copied), tt.msgLen)
			}
		})
	}
}

func TestDNSMessagesOverTheRateAreCountedAsLost(t *testing.T) {
	p := loadFlow(t, 64, 1000, dnsSettings(t, 3, 53))
	for port := uint16(1); port <= 10; port++ {
		p.run(t, p.objs.TrawlFlowIngress, frame(0x0800, ipv4(17, withPayload(udp(port, 53, 0), 8, payload(30)))), nil)
	}
	evs := p.dnsEvents(t)
	c := p.counters(t)
	if len(evs) != 3 || c[FlowCounterCNT_DNS_EVENTS] != 3 || c[FlowCounterCNT_DNS_RATE_LIMITED] != 7 {
		t.Errorf("%d events (counter %d), %d rate-limited; want 3 and 7", len(evs), c[FlowCounterCNT_DNS_EVENTS], c[FlowCounterCNT_DNS_RATE_LIMITED])
	}
	// The flows' own events have their own bucket: all ten went out.
	if n := len(p.events(t)); n != 10 {
		t.Errorf("%d new-flow events, want 10", n)
	}
}

func TestADNSMessageCarriesTheDropsItsFlowHadBeforeIt(t *testing.T) {
	p := loadFlow(t, 64, 1000, dnsSettings(t, 1000, 53))
	key := FlowFlowKey{Tuple: tuple4(17, 40000, 53)}
	// The drop program counted 5 undelivered packets of the flow so far.
	if err := p.objs.Flows.Put(key, FlowFlowAgg{Packets: 5, DropPackets: 5}); err != nil {
		t.Fatal(err)
	}
	p.run(t, p.objs.TrawlFlowIngress, frame(0x0800, ipv4(17, withPayload(udp(40000, 53, 0), 8, payload(30)))), nil)
	evs := p.dnsEvents(t)
	if len(evs) != 1 || evs[0].DropsBefore != 5 || evs[0].HasFlow != 1 {
		t.Fatalf("events %+v, want one with 5 drops before it", evs)
	}
}

func TestAFullDNSRingBufferIsCounted(t *testing.T) {
	// No rate limit and nobody reading: the 512 KiB ring fills up.
	p := loadFlow(t, 4096, 1000, dnsSettings(t, 0, 53))
	const n = 1500
	pkt := frame(0x0800, ipv4(17, withPayload(udp(40000, 53, 0), 8, payload(30))))
	for i := 0; i < n; i++ {
		p.run(t, p.objs.TrawlFlowIngress, pkt, nil)
	}
	c := p.counters(t)
	if c[FlowCounterCNT_DNS_RINGBUF_FULL] == 0 || c[FlowCounterCNT_DNS_EVENTS]+c[FlowCounterCNT_DNS_RINGBUF_FULL] != n || c[FlowCounterCNT_DNS_RATE_LIMITED] != 0 {
		t.Errorf("%d sent, %d ring-full, %d rate-limited; want every one of %d sent or counted full, some full",
			c[FlowCounterCNT_DNS_EVENTS], c[FlowCounterCNT_DNS_RINGBUF_FULL], c[FlowCounterCNT_DNS_RATE_LIMITED], n)
	}
}
