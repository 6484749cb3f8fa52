package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/testbed"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Verdict = fate, checked against witnesses that do not depend on the agent:
// nftables counters, the kernel's SNMP counters, ping and the receiving
// socket. Every case runs in one routed bed with one agent; the agent is
// stopped before the tally, so every fate is final.

// tally adds up the records of one direction of a flow.
type tally struct {
	fwdPackets, fwdBytes   uint64 // AGGREGATE FORWARDED
	dropPackets, dropBytes uint64 // DROP records of undelivered classes
	dropReasons            map[string]bool
	dropClasses            map[string]bool
	newVerdicts            []flowv1.Verdict // FLOW_NEW events, in order
	newReasons             []string
	lines                  []string // every record, for a failure's message
}

func tallyOf(a *agent, match func(*flowv1.Flow) bool) tally {
	t := tally{dropReasons: map[string]bool{}, dropClasses: map[string]bool{}}
	for _, r := range a.records() {
		f := r.GetFlow()
		if f == nil || !match(f) {
			continue
		}
		t.lines = append(t.lines, fmt.Sprintf("%s %s %s %d pkts %d B %s", f.EventKind, f.Verdict, f.DropReasonKernel, f.Packets, f.Bytes, f.ObservationPoint))
		switch f.EventKind {
		case flowv1.EventKind_AGGREGATE:
			if f.Verdict != flowv1.Verdict_FORWARDED {
				panic("an AGGREGATE record that is not FORWARDED: " + f.String())
			}
			t.fwdPackets += f.Packets
			t.fwdBytes += f.Bytes
		case flowv1.EventKind_DROP:
			if c := dropclass.Class(f.DropClass); c.Undelivered() {
				t.dropPackets += f.Packets
				t.dropBytes += f.Bytes
				t.dropReasons[f.DropReasonKernel] = true
				t.dropClasses[f.DropClass] = true
			}
		case flowv1.EventKind_FLOW_NEW:
			t.newVerdicts = append(t.newVerdicts, f.Verdict)
			t.newReasons = append(t.newReasons, f.DropReasonKernel)
		}
	}
	return t
}

func flowMatch(src, dst string, proto string, dport uint32) func(*flowv1.Flow) bool {
	return func(f *flowv1.Flow) bool {
		if f.GetIP().GetSource() != src || f.GetIP().GetDestination() != dst {
			return false
		}
		l4 := f.GetL4()
		switch proto {
		case "tcp":
			return l4.GetTCP() != nil && l4.GetTCP().DestinationPort == dport
		case "udp":
			return l4.GetUDP() != nil && l4.GetUDP().DestinationPort == dport
		case "icmp":
			return l4.GetICMPv4() != nil && l4.GetICMPv4().Type == 8
		}
		return false
	}
}

// nft applies a ruleset in a namespace and removes its table at cleanup.
func nft(t *testing.T, ns *testbed.Netns, table, rules string) {
	t.Helper()
	cmd := ns.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(fmt.Sprintf("table inet %s {\n%s\n}\n", table, rules))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", ns.Name, err, out)
	}
	t.Cleanup(func() { ns.Run(context.Background(), "nft", "delete", "table", "inet", table) })
}

var counterRE = regexp.MustCompile(`counter packets (\d+) bytes (\d+)`)

// nftCounter reads the counter of the rule carrying the given comment.
func nftCounter(t *testing.T, ns *testbed.Netns, table, comment string) (packets, bytes uint64) {
	t.Helper()
	out, err := ns.Run(context.Background(), "nft", "list", "table", "inet", table)
	if err != nil {
		t.Fatalf("nft list: %v", err)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `comment "`+comment+`"`) {
			m := counterRE.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("rule %q has no counter: %s", comment, line)
			}
			p, _ := strconv.ParseUint(m[1], 10, 64)
			b, _ := strconv.ParseUint(m[2], 10, 64)
			return p, b
		}
	}
	t.Fatalf("no rule %q in:\n%s", comment, out)
	return 0, 0
}

// snmp reads one counter of /proc/net/snmp as a namespace sees it.
func snmp(t *testing.T, ns *testbed.Netns, proto, field string) uint64 {
	t.Helper()
	out, err := ns.Run(context.Background(), "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, n := range names {
			if n == field {
				v, _ := strconv.ParseUint(f[i+1], 10, 64)
				return v
			}
		}
	}
	t.Fatalf("no %s %s in /proc/net/snmp", proto, field)
	return 0
}

func sendUDP(t *testing.T, p *testbed.Pod, dst string, n int, gap time.Duration) {
	t.Helper()
	c, err := p.Dial(context.Background(), "udp", dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 100)
	for i := 0; i < n; i++ {
		c.Write(msg) // ICMP errors from earlier datagrams may fail a write; the packet count is the witness's
		time.Sleep(gap)
	}
}

func TestVerdictsAreThePacketsFate(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "server"}})
	client, server := bed.Pod("client"), bed.Pod("server")
	ctx := context.Background()
	C, S := client.IP.String(), server.IP.String()
	// One segment per packet, so a packet counter is a segment counter.
	if _, err := client.Run(ctx, "ip", "link", "set", "dev", "eth0", "gso_max_segs", "1"); err != nil {
		t.Fatal(err)
	}
	// An address routed to the server's veth that nobody owns: ARP fails.
	unreachable := fmt.Sprintf("10.244.%d.250", bed.Slot)
	if _, err := bed.Node.Run(ctx, "ip", "route", "add", unreachable+"/32", "dev", server.HostVeth); err != nil {
		t.Fatal(err)
	}
	nft(t, bed.Node, "trawltest", fmt.Sprintf(`
	chain forward_filter {
		type filter hook forward priority 0;
		ip daddr %[1]s tcp dport 7002 counter drop comment "denied"
		ip daddr %[1]s udp dport 7004 limit rate over 100/second burst 10 packets counter drop comment "limited"
	}`, S))
	nft(t, server.Netns, "witness", fmt.Sprintf(`
	chain input_filter {
		type filter hook input priority 0;
		ip saddr %[1]s tcp dport 7001 counter comment "tcp in"
		ip saddr %[1]s udp dport 7004 counter comment "udp in"
	}`, C))

	a := startAgent(t, bed)

	// Allowed TCP: 200 kB across, read to the end.
	_, received := tcpSink(t, server, net.JoinHostPort(S, "7001"))
	conn, err := client.Dial(ctx, "tcp", net.JoinHostPort(S, "7001"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(make([]byte, 200_000)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if n := <-received; n != 200_000 {
		t.Fatalf("server read %d bytes, want 200000", n)
	}

	// Denied TCP: the SYN and one retransmission meet the drop rule.
	dctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	if c, err := client.Dial(dctx, "tcp", net.JoinHostPort(S, "7002")); err == nil {
		c.Close()
		t.Fatal("connected through the drop rule")
	}
	cancel()

	// UDP to a closed port: every datagram is NO_SOCKET in the server.
	noPorts := snmp(t, server.Netns, "Udp", "NoPorts")
	sendUDP(t, client, net.JoinHostPort(S, "7003"), 300, time.Millisecond)

	// Half a UDP flow over the node's rate limit.
	sink, err := server.ListenPacket("udp", net.JoinHostPort(S, "7004"))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	got := make(chan int, 1)
	go func() {
		n, buf := 0, make([]byte, 2048)
		for {
			sink.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, _, err := sink.ReadFrom(buf); err != nil {
				got <- n
				return
			}
			n++
		}
	}()
	sendUDP(t, client, net.JoinHostPort(S, "7004"), 400, 5*time.Millisecond)

	// ICMP to a host that never answers ARP: the node drops the queued
	// echo requests when resolution fails, seconds later.
	out, _ := client.Run(ctx, "ping", "-n", "-c", "3", "-i", "0.3", "-W", "1", unreachable)
	if !strings.Contains(out, "3 packets transmitted, 0 received") {
		t.Fatalf("ping %s: %s", unreachable, out)
	}

	time.Sleep(5 * time.Second) // every fate known, the ARP failure included
	sunk := <-got
	noPorts = snmp(t, server.Netns, "Udp", "NoPorts") - noPorts
	a.stop(t)

	t.Run("allowed TCP: every packet FORWARDED, as the server's input counter saw them", func(t *testing.T) {
		wp, wb := nftCounter(t, server.Netns, "witness", "tcp in")
		tl := tallyOf(a, flowMatch(C, S, "tcp", 7001))
		if tl.fwdPackets != wp || tl.fwdBytes != wb || tl.dropPackets != 0 {
			t.Errorf("FORWARDED %d packets %d bytes, dropped %d; the server's input saw %d packets %d bytes", tl.fwdPackets, tl.fwdBytes, tl.dropPackets, wp, wb)
		}
		if len(tl.newVerdicts) != 1 || tl.newVerdicts[0] != flowv1.Verdict_FORWARDED {
			t.Errorf("new-flow events %v, want one FORWARDED", tl.newVerdicts)
		}
	})
	t.Run("denied TCP: nothing FORWARDED, every SYN a NETFILTER_DROP", func(t *testing.T) {
		wp, wb := nftCounter(t, bed.Node, "trawltest", "denied")
		tl := tallyOf(a, flowMatch(C, S, "tcp", 7002))
		if wp == 0 || tl.fwdPackets != 0 || tl.dropPackets != wp || tl.dropBytes != wb || !tl.dropReasons["NETFILTER_DROP"] || len(tl.dropReasons) != 1 {
			t.Errorf("FORWARDED %d, dropped %d packets %d bytes for %v; the drop rule counted %d packets %d bytes", tl.fwdPackets, tl.dropPackets, tl.dropBytes, tl.dropReasons, wp, wb)
		}
		if len(tl.newVerdicts) != 1 || tl.newVerdicts[0] != flowv1.Verdict_DROPPED || tl.newReasons[0] != "NETFILTER_DROP" {
			t.Errorf("new-flow events %v %v, want one DROPPED NETFILTER_DROP", tl.newVerdicts, tl.newReasons)
		}
	})
	t.Run("UDP to a closed port: nothing FORWARDED, every datagram NO_SOCKET", func(t *testing.T) {
		tl := tallyOf(a, flowMatch(C, S, "udp", 7003))
		if noPorts < 250 || tl.fwdPackets != 0 || tl.dropPackets != noPorts || tl.dropBytes != 128*noPorts || !tl.dropReasons["NO_SOCKET"] {
			t.Errorf("FORWARDED %d, dropped %d packets %d bytes %v; the server counted %d UdpNoPorts (300 written; ICMP errors fail a few writes); records:\n%s", tl.fwdPackets, tl.dropPackets, tl.dropBytes, tl.dropReasons, noPorts, strings.Join(tl.lines, "\n"))
		}
		if len(tl.newVerdicts) != 1 || tl.newVerdicts[0] != flowv1.Verdict_DROPPED || tl.newReasons[0] != "NO_SOCKET" {
			t.Errorf("new-flow events %v %v, want one DROPPED NO_SOCKET", tl.newVerdicts, tl.newReasons)
		}
	})
	t.Run("UDP over a rate limit: the delivered part FORWARDED, the rest NETFILTER_DROP", func(t *testing.T) {
		dp, _ := nftCounter(t, bed.Node, "trawltest", "limited")
		ip, ib := nftCounter(t, server.Netns, "witness", "udp in")
		tl := tallyOf(a, flowMatch(C, S, "udp", 7004))
		if dp == 0 || ip == 0 || ip+dp != 400 || uint64(sunk) != ip {
			t.Fatalf("witnesses disagree: %d dropped + %d arrived != 400 sent, or the socket read %d", dp, ip, sunk)
		}
		if tl.fwdPackets != ip || tl.fwdBytes != ib || tl.dropPackets != dp {
			t.Errorf("FORWARDED %d packets %d bytes, dropped %d; witnesses: %d packets %d bytes arrived, %d dropped", tl.fwdPackets, tl.fwdBytes, tl.dropPackets, ip, ib, dp)
		}
		if len(tl.newVerdicts) != 1 || tl.newVerdicts[0] != flowv1.Verdict_FORWARDED {
			t.Errorf("new-flow events %v, want one FORWARDED (the first datagrams are within the burst)", tl.newVerdicts)
		}
	})
	t.Run("ICMP to a host that never answers: nothing FORWARDED, every echo request a routing drop", func(t *testing.T) {
		tl := tallyOf(a, flowMatch(C, unreachable, "icmp", 0))
		if tl.fwdPackets != 0 || tl.dropPackets != 3 || !tl.dropClasses[string(dropclass.Routing)] {
			t.Errorf("FORWARDED %d, dropped %d (%v, %v); ping sent 3 and got none back", tl.fwdPackets, tl.dropPackets, tl.dropReasons, tl.dropClasses)
		}
		if len(tl.newVerdicts) != 1 || tl.newVerdicts[0] != flowv1.Verdict_DROPPED {
			t.Errorf("new-flow events %v %v, want one DROPPED", tl.newVerdicts, tl.newReasons)
		}
	})
}

func TestWhatTheNodeSendsIsCountedOnceAtEitherEgressHook(t *testing.T) {
	tests := []struct {
		hook, point string
	}{
		{"netfilter", "netfilter-local-out"},
		{"tcx", "tcx-egress"},
	}
	for _, tt := range tests {
		t.Run(tt.hook, func(t *testing.T) {
			bed := testbed.NewT(t, testbed.Config{Pods: []string{"server"}})
			server := bed.Pod("server")
			ctx := context.Background()
			nft(t, server.Netns, "witness", `
	chain input_filter {
		type filter hook input priority 0;
		udp dport 7010 counter comment "from node"
	}`)
			sink, err := server.ListenPacket("udp", net.JoinHostPort(server.IP.String(), "7010"))
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			a := startAgent(t, bed, "--egress-hook", tt.hook)
			c, err := bed.Node.Dial(ctx, "udp", net.JoinHostPort(server.IP.String(), "7010"))
			if err != nil {
				t.Fatal(err)
			}
			src := c.LocalAddr().(*net.UDPAddr).IP.String()
			for i := 0; i < 50; i++ {
				c.Write(make([]byte, 200))
			}
			c.Close()
			time.Sleep(300 * time.Millisecond)
			a.stop(t)

			wp, wb := nftCounter(t, server.Netns, "witness", "from node")
			tl := tallyOf(a, flowMatch(src, server.IP.String(), "udp", 7010))
			if wp != 50 || tl.fwdPackets != wp || tl.fwdBytes != wb {
				t.Errorf("FORWARDED %d packets %d bytes; the server's input counted %d packets %d bytes of 50 sent", tl.fwdPackets, tl.fwdBytes, wp, wb)
			}
			for _, r := range a.records() {
				if f := r.GetFlow(); f != nil && f.EventKind == flowv1.EventKind_AGGREGATE && flowMatch(src, server.IP.String(), "udp", 7010)(f) {
					if f.ObservationPoint != tt.point || f.Interface.GetName() != server.HostVeth || f.TrafficDirection != flowv1.TrafficDirection_INGRESS {
						t.Errorf("counted at %s on %q as %s, want %s on %s as the pod's INGRESS", f.ObservationPoint, f.Interface.GetName(), f.TrafficDirection, tt.point, server.HostVeth)
					}
					if f.Source.GetIdentity() != 1 {
						t.Errorf("source %v: the node's own address, want reserved:host", f.Source)
					}
				}
			}
		})
	}
}
