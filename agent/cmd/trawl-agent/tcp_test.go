package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/internal/testbed"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// TCP health against witnesses that do not depend on the agent: the
// kernel's TcpRetransSegs counter in each pod's namespace (what
// `nstat -az TcpRetransSegs` prints), each socket's retransmit total from
// `ss -ti` read before it closes, the handshake RTT measured by the same
// records without the delay line, the client's connect errors.

// echoServer answers each connection's first byte with one byte, then
// closes; a connection that sends more is drained first (a bulk transfer).
func echoServer(t *testing.T, pod *testbed.Pod) *net.TCPAddr {
	t.Helper()
	ln, err := pod.Listen("tcp", net.JoinHostPort(pod.IP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var lenBuf [8]byte
				if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
					return
				}
				n, _ := strconv.ParseInt(strings.TrimSpace(string(lenBuf[:])), 10, 64)
				if _, err := io.CopyN(io.Discard, c, n); err != nil {
					return
				}
				c.Write([]byte{1})
				io.Copy(io.Discard, c) // until the client closes
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr)
}

// exchange connects, sends n bytes, waits for the server's answer; before
// closing it runs inspect (if any) with the connection's local port.
func exchange(ctx context.Context, pod *testbed.Pod, addr string, n int, inspect func(port int)) (int, error) {
	c, err := pod.Dial(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	port := c.LocalAddr().(*net.TCPAddr).Port
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(c, "%-8d", n); err != nil {
		return port, err
	}
	if _, err := c.Write(make([]byte, n)); err != nil {
		return port, err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return port, err
	}
	if inspect != nil {
		inspect(port)
	}
	return port, nil
}

var ssRetrans = regexp.MustCompile(`retrans:\d+/(\d+)`)

// socketRetrans is the total_retrans `ss -ti` shows for the connection from
// port in pod's namespace (no retrans field: none).
func socketRetrans(t *testing.T, pod *testbed.Pod, port int) uint64 {
	out, err := pod.Run(context.Background(), "ss", "-tinH", "state", "established", fmt.Sprintf("( sport = :%d )", port))
	if err != nil {
		t.Errorf("ss: %v", err)
		return 0
	}
	if !strings.Contains(out, fmt.Sprintf(":%d ", port)) {
		t.Errorf("ss shows no connection from port %d:\n%s", port, out)
	}
	m := ssRetrans.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func rtt(h *flowv1.TCPHealth) time.Duration {
	return h.GetHandshakeSynAck().AsDuration() + h.GetHandshakeAck().AsDuration()
}

func TestTCPHealthUnderDelayAndLossAgreesWithTheSocketsAndTheKernelsCounters(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "server", "dark"}})
	client, server, dark := bed.Pod("client"), bed.Pod("server"), bed.Pod("dark")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := echoServer(t, server)
	retransSegs := func(p *testbed.Pod) uint64 { return snmp(t, p.Netns, "Tcp", "RetransSegs") }
	start := map[string]uint64{}
	for _, p := range []*testbed.Pod{client, server, dark} {
		start[p.PodName] = retransSegs(p)
	}
	// A SYN the server pod's nftables drop: a kernel drop, never a timeout.
	const droppedPort = 9001
	nft(t, server.Netns, "trawl_tcp_test", fmt.Sprintf(`chain input {
		type filter hook input priority 0; policy accept;
		tcp dport %d counter drop comment "syn"
	}`, droppedPort))
	a := startAgent(t, bed)

	// A closed port: the server's kernel answers the SYN with a RST.
	closedPort := 9
	if _, err := client.Dial(ctx, "tcp", net.JoinHostPort(server.IP.String(), strconv.Itoa(closedPort))); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial a closed port: %v, want connection refused", err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 3500*time.Millisecond)
	if _, err := client.Dial(dctx, "tcp", net.JoinHostPort(server.IP.String(), strconv.Itoa(droppedPort))); err == nil {
		t.Fatal("a SYN the server pod drops was answered")
	}
	dcancel()

	// The base RTT, with the same records.
	addr := srv.String()
	basePorts := map[uint32]bool{}
	for i := 0; i < 20; i++ {
		port, err := exchange(ctx, client, addr, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		basePorts[uint32(port)] = true
	}

	// A link that delivers nothing: the dark pod's packets are held by a
	// delay line, in user space, so no kernel on the machine drops them (the
	// drop program would see it), and closed before the first is due: the
	// line then discards them.
	hold, err := bed.Delay(ctx, dark, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	var darkPort uint32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		dctx, dcancel := context.WithTimeout(ctx, 3500*time.Millisecond)
		defer dcancel()
		c, err := dark.Dial(dctx, "tcp", addr)
		if err == nil {
			c.Close()
			t.Error("the dark pod's connection was answered")
		}
	}()

	// 20 ms more on every packet the client sends, 5 % of them lost.
	line, err := bed.Delay(ctx, client, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer line.Close()
	removeLoss, err := bed.Loss(ctx, client, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer removeLoss()

	var mu sync.Mutex
	lossyPorts := map[uint32]bool{}
	sem := make(chan struct{}, 5)
	for i := 0; i < 150; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			port, err := exchange(ctx, client, addr, 100, nil)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			lossyPorts[uint32(port)] = true
			mu.Unlock()
		}()
	}
	// A bulk transfer; its socket's retransmits are read before it closes.
	var bulkPort uint32
	var bulkSS uint64
	if port, err := exchange(ctx, client, addr, 1_000_000, func(port int) { bulkSS = socketRetrans(t, client, port) }); err != nil {
		t.Fatal(err)
	} else {
		bulkPort = uint32(port)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	a.waitFor(t, 20*time.Second, "the dark pod's CONNECT_TIMEOUT", func(r *observerv1.GetFlowsResponse) bool {
		return r.GetFlow().GetEventKind() == flowv1.EventKind_CONNECT_TIMEOUT
	})
	hold.Close()
	removeLoss()
	line.Close()

	// Every attempt has had its fate and timeout judged (SYN timeout 3 s,
	// fate wait 4 s) and every socket is closed.
	time.Sleep(6 * time.Second)
	end := map[string]uint64{}
	for _, p := range []*testbed.Pod{client, server, dark} {
		end[p.PodName] = retransSegs(p) - start[p.PodName]
	}
	a.stop(t)

	var handshakes = map[uint32]int{}
	var baseRTT, lossyRTT []time.Duration
	retrans := map[string]uint64{} // by the source pod
	var bulkRetrans uint64
	var resetBy []flowv1.TCPSide
	var timeouts []*flowv1.Flow
	var dropped int
	var droppedSYNs uint64
	podOf := map[string]string{client.IP.String(): "client", server.IP.String(): "server", dark.IP.String(): "dark"}
	for _, r := range a.records() {
		f := r.GetFlow()
		sp, dp, ok := tcpPorts(f)
		if !ok {
			continue
		}
		h := f.GetTcpHealth()
		switch f.EventKind {
		case flowv1.EventKind_AGGREGATE:
			retrans[podOf[f.IP.Source]] += uint64(h.GetRetransmits())
			if f.IP.Source == client.IP.String() && sp == bulkPort {
				bulkRetrans += uint64(h.GetRetransmits())
			}
			if h.GetHandshakeSynAck() != nil {
				if f.IP.Source != client.IP.String() && f.IP.Source != dark.IP.String() || f.GetIsReply().GetValue() {
					t.Errorf("a handshake on a record that is not a client's: %v", f)
				}
				handshakes[sp]++
				switch {
				case basePorts[sp]:
					baseRTT = append(baseRTT, rtt(h))
				case lossyPorts[sp]:
					lossyRTT = append(lossyRTT, rtt(h))
				}
			}
			if h.GetResetBy() != flowv1.TCPSide_TCP_SIDE_UNKNOWN && sp == uint32(closedPort) {
				resetBy = append(resetBy, h.GetResetBy())
			}
		case flowv1.EventKind_FLOW_CLOSE:
			if sp == uint32(closedPort) && h.GetResetBy() != flowv1.TCPSide_SERVER {
				t.Errorf("the closed port's RST event says reset by %v, want SERVER", h.GetResetBy())
			}
		case flowv1.EventKind_CONNECT_TIMEOUT:
			timeouts = append(timeouts, f)
		case flowv1.EventKind_DROP:
			// The drop program sees the whole machine: other test beds'
			// drops to the same port are not this client's.
			if dp == droppedPort && f.IP.Source == client.IP.String() && f.IP.Destination == server.IP.String() {
				dropped++
				droppedSYNs += f.Packets
			}
		}
	}

	// Handshake RTT: one per connection; with the delay, within 10 % of
	// the delay plus the base. The delay is what the line actually held the
	// packets (20 ms asked; more when this machine is loaded and the line's
	// process writes them back late).
	for port := range lossyPorts {
		if handshakes[port] != 1 {
			t.Errorf("connection from port %d: %d records with a handshake, want 1", port, handshakes[port])
		}
	}
	if len(baseRTT) != len(basePorts) {
		t.Fatalf("%d of %d base connections have a handshake RTT", len(baseRTT), len(basePorts))
	}
	base, lossy, held := median(baseRTT), median(lossyRTT), line.MedianHold()
	want := held + base
	t.Logf("handshake RTT: base median %v (%d), with the delay line (20 ms asked, %v held) and 5%% loss median %v (%d), want %v ± 10%%", base, len(baseRTT), held, lossy, len(lossyRTT), want)
	if held < 20*time.Millisecond {
		t.Errorf("the delay line held packets %v (median), less than the 20 ms asked", held)
	}
	if diff := lossy - want; diff > want/10 || -diff > want/10 {
		t.Errorf("handshake RTT with the delay: median %v, want within 10%% of %v (held %v + base %v)", lossy, want, held, base)
	}

	// Retransmits: the records of each pod's direction add up to its
	// kernel's TcpRetransSegs; the bulk socket's to what ss showed before
	// close, plus what it sent again while closing.
	t.Logf("retransmits: records %v, TcpRetransSegs %v; bulk socket %d: records %d, ss -ti %d", retrans, end, bulkPort, bulkRetrans, bulkSS)
	if end["client"] == 0 {
		t.Error("5 % loss made the client retransmit nothing: the witness saw no loss")
	}
	// The client's SYNs that the server pod dropped are in DROP records
	// only (a flow with no delivered packet has no AGGREGATE): all but the
	// first were retransmissions. The records never count more than the
	// kernel and were equal in the final code's runs; a little slack
	// below for what the tracepoint cannot see (docs/flow-records.md).
	recorded := map[string]uint64{"client": retrans["client"] + droppedSYNs - 1, "server": retrans["server"], "dark": retrans["dark"]}
	for _, p := range []string{"client", "server", "dark"} {
		if got, want := recorded[p], end[p]; got > want || want-got > want/10+2 {
			t.Errorf("%s: records carry %d retransmits, its TcpRetransSegs grew by %d", p, got, want)
		}
	}
	if bulkRetrans < bulkSS || bulkRetrans > bulkSS+2 {
		t.Errorf("bulk transfer: records carry %d retransmits, ss -ti showed %d before close (want that, plus at most a FIN sent twice)", bulkRetrans, bulkSS)
	}

	// The closed port: reset by the server, and no timeout.
	if len(resetBy) != 1 || resetBy[0] != flowv1.TCPSide_SERVER {
		t.Errorf("closed port: reset_by %v on its records, want one SERVER", resetBy)
	}
	// The dark pod's attempt is the only timeout; the dropped SYNs are
	// DROP records.
	if len(timeouts) != 1 {
		t.Fatalf("%d CONNECT_TIMEOUT records, want 1 (the dark pod's): %v", len(timeouts), timeouts)
	}
	to := timeouts[0]
	_, tdp, _ := tcpPorts(to)
	if to.IP.Source != dark.IP.String() || to.IP.Destination != server.IP.String() || tdp != uint32(srv.Port) ||
		to.Verdict != flowv1.Verdict_FORWARDED || to.GetIsReply().GetValue() {
		t.Errorf("timeout record %v: want dark -> server:%d, FORWARDED, not a reply", to, srv.Port)
	}
	// Its SYNs: the first and the ones sent again until it was judged.
	if to.Packets != 1+end["dark"] {
		t.Errorf("timeout record: %d SYNs, the dark pod sent 1 + %d retransmitted", to.Packets, end["dark"])
	}
	darkPort = to.GetL4().GetTCP().GetSourcePort()
	if syns, _ := nftCounter(t, server.Netns, "trawl_tcp_test", "syn"); dropped == 0 || droppedSYNs != syns {
		t.Errorf("%d DROP records of %d SYNs to the dropping port, its nftables rule dropped %d", dropped, droppedSYNs, syns)
	}
	t.Logf("dark pod's attempt from port %d: %d SYNs; %d DROP records of the dropped SYNs", darkPort, to.Packets, dropped)
}
