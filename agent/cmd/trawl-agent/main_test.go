package main

// Integration tests: the real agent binary in the node namespace of a
// routed test bed, real traffic between pod namespaces, real iptables and
// conntrack. They need root (make test runs as root) and fail without it.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trawl-dev/trawl/internal/testbed"
	"github.com/trawl-dev/trawl/internal/testbed/roottest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

var agentBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test here runs the agent as root; they skip, so no binary.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "trawl-agent-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755) // the privilege test runs the binary as nobody
	agentBin = filepath.Join(dir, "trawl-agent")
	// TRAWL_AGENT_BUILD_FLAGS=-race runs these tests against a race-enabled agent.
	build := append([]string{"build", "-o", agentBin}, strings.Fields(os.Getenv("TRAWL_AGENT_BUILD_FLAGS"))...)
	if out, err := exec.Command("go", append(build, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build trawl-agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agent is a running trawl-agent writing JSON lines.
type agent struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	mu     sync.Mutex
	recs   []*observerv1.GetFlowsResponse
	added  chan struct{}
	done   chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startAgent runs the agent in the bed's node namespace and waits until it
// says it is running.
func startAgent(t *testing.T, bed *testbed.Bed, args ...string) *agent {
	t.Helper()
	args = append([]string{"--node-name", "test-" + bed.ID, "--metrics-address", "", "--flush-interval", "500ms"}, args...)
	a := &agent{stderr: &lockedBuffer{}, added: make(chan struct{}, 1), done: make(chan error, 1)}
	a.cmd = bed.Node.Command(context.Background(), agentBin, args...)
	a.cmd.Stderr = a.stderr
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			r := &observerv1.GetFlowsResponse{}
			if err := protojson.Unmarshal(sc.Bytes(), r); err != nil {
				t.Errorf("agent wrote a line that is not a GetFlowsResponse: %v: %s", err, sc.Bytes())
				continue
			}
			a.mu.Lock()
			a.recs = append(a.recs, r)
			a.mu.Unlock()
			select {
			case a.added <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		<-readDone
		a.done <- a.cmd.Wait()
	}()
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			a.cmd.Process.Kill()
			<-a.done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(a.stderr.String(), "trawl-agent running") {
		if time.Now().After(deadline) {
			t.Fatalf("agent did not start:\n%s", a.stderr.String())
		}
		select {
		case err := <-a.done:
			t.Fatalf("agent exited at start (%v):\n%s", err, a.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return a
}

// stop sends SIGTERM and waits for a clean exit.
func (a *agent) stop(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-a.done:
		if err != nil {
			t.Fatalf("agent exited with %v after SIGTERM:\n%s", err, a.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not exit after SIGTERM:\n%s", a.stderr.String())
	}
}

func (a *agent) records() []*observerv1.GetFlowsResponse {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*observerv1.GetFlowsResponse(nil), a.recs...)
}

// waitFor waits until a record matches; it fails the test after timeout.
func (a *agent) waitFor(t *testing.T, timeout time.Duration, what string, match func(*observerv1.GetFlowsResponse) bool) *observerv1.GetFlowsResponse {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		recs := a.records()
		for _, r := range recs[seen:] {
			if match(r) {
				return r
			}
		}
		seen = len(recs)
		select {
		case <-a.added:
		case <-deadline:
			t.Fatalf("no record with %s within %s; agent stderr:\n%s", what, timeout, a.stderr.String())
		}
	}
}

func tcpPorts(f *flowv1.Flow) (uint32, uint32, bool) {
	tcp := f.GetL4().GetTCP()
	if tcp == nil {
		return 0, 0, false
	}
	return tcp.SourcePort, tcp.DestinationPort, true
}

func TestTCPTransferBetweenPodsIsCountedOnceWithItsTupleDirectionAndSize(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "server"}})
	client, server := bed.Pod("client"), bed.Pod("server")
	a := startAgent(t, bed)

	const size = 2_000_000
	ln, received := tcpSink(t, server, net.JoinHostPort(server.IP.String(), "0"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := client.Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	clientPort := uint32(conn.LocalAddr().(*net.TCPAddr).Port)
	serverPort := uint32(ln.Addr().(*net.TCPAddr).Port)
	if _, err := conn.Write(make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	// Half-close, so that once the server has read to the end every byte
	// was delivered and the client's socket knows what it sent again: on a
	// loaded machine a veth backlog can drop a segment, and its resend
	// passes the hook a second time.
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n := <-received; n != size {
		t.Fatalf("server received %d bytes, want %d", n, size)
	}
	info := tcpInfo(t, conn.(*net.TCPConn))
	conn.Close()
	// The close event proves the FIN went through the node; SIGTERM then
	// makes the agent export every pending count.
	a.waitFor(t, 10*time.Second, "a FLOW_CLOSE of the transfer", func(r *observerv1.GetFlowsResponse) bool {
		f := r.GetFlow()
		sp, dp, ok := tcpPorts(f)
		return ok && f.EventKind == flowv1.EventKind_FLOW_CLOSE && sp == clientPort && dp == serverPort
	})
	a.stop(t)

	type total struct {
		packets, bytes uint64
		points         map[string]bool
	}
	forward, reverse := total{points: map[string]bool{}}, total{points: map[string]bool{}}
	for _, r := range a.records() {
		f := r.GetFlow()
		if f == nil || f.EventKind != flowv1.EventKind_AGGREGATE {
			continue
		}
		sp, dp, ok := tcpPorts(f)
		if !ok {
			continue
		}
		switch {
		case f.IP.Source == client.IP.String() && f.IP.Destination == server.IP.String() && sp == clientPort && dp == serverPort:
			forward.packets += f.Packets
			forward.bytes += f.Bytes
			forward.points[fmt.Sprintf("%s %s %s", f.ObservationPoint, f.Interface.GetName(), f.TrafficDirection)] = true
			if f.NodeName != "test-"+bed.ID || f.Verdict != flowv1.Verdict_FORWARDED || f.IsReply.GetValue() {
				t.Errorf("forward record %v: want node test-%s, FORWARDED, not a reply", f, bed.ID)
			}
		case f.IP.Source == server.IP.String() && sp == serverPort && dp == clientPort:
			reverse.packets += f.Packets
			reverse.points[fmt.Sprintf("%s %s %s", f.ObservationPoint, f.Interface.GetName(), f.TrafficDirection)] = true
			if !f.IsReply.GetValue() {
				t.Errorf("reverse record %v: want is_reply", f)
			}
		}
	}
	// Counted once, where the packets entered the node: the client's
	// host-side veth, which is the client pod's EGRESS.
	wantForward := fmt.Sprintf("tcx-ingress %s EGRESS", client.HostVeth)
	if len(forward.points) != 1 || !forward.points[wantForward] {
		t.Errorf("client->server seen at %v, want only %q", forward.points, wantForward)
	}
	wantReverse := fmt.Sprintf("tcx-ingress %s EGRESS", server.HostVeth)
	if len(reverse.points) != 1 || !reverse.points[wantReverse] {
		t.Errorf("server->client seen at %v, want only %q", reverse.points, wantReverse)
	}
	// Every packet carries at least IPv4 (20) + TCP (20) headers and at
	// most 20 + 60; SYN and FIN carry no data. A resent segment passes the
	// hook again unless it was the first copy that passed and a later hop
	// dropped it, so the socket's resent bytes widen only the upper bound.
	lo := size + 40*forward.packets
	hi := size + info.Bytes_retrans + 80*forward.packets
	if forward.packets < 3 || forward.bytes < lo || forward.bytes > hi {
		t.Errorf("client->server: %d packets, %d bytes (the socket resent %d bytes); want bytes in [%d, %d]",
			forward.packets, forward.bytes, info.Bytes_retrans, lo, hi)
	}
	if reverse.packets == 0 {
		t.Error("no aggregate for the server's ACKs")
	}
}

// tcpInfo reads the kernel's TCP_INFO of c, the socket's own count of what
// it sent.
func tcpInfo(t *testing.T, c *net.TCPConn) *unix.TCPInfo {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var serr error
	if err := raw.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatalf("TCP_INFO: %v", serr)
	}
	return info
}

// tcpSink accepts one connection at addr in the pod and reports how many
// bytes it read to the end (-1 if the accept failed).
func tcpSink(t *testing.T, pod *testbed.Pod, addr string) (net.Listener, <-chan int64) {
	t.Helper()
	ln, err := pod.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	received := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		received <- n
	}()
	return ln, received
}

func dropMatch(src, dst string, dport uint32, reason string) func(*observerv1.GetFlowsResponse) bool {
	return func(r *observerv1.GetFlowsResponse) bool {
		f := r.GetFlow()
		_, dp, ok := tcpPorts(f)
		return ok && f.EventKind == flowv1.EventKind_DROP && f.Verdict == flowv1.Verdict_DROPPED &&
			f.IP.Source == src && f.IP.Destination == dst && dp == dport && f.DropReasonKernel == reason
	}
}

func TestKernelDropsAreReportedWithTheKernelsReason(t *testing.T) {
	for _, hook := range []string{"tp_btf", "tracepoint"} {
		t.Run("from "+hook, func(t *testing.T) { testKernelDrops(t, hook) })
	}
}

func testKernelDrops(t *testing.T, hook string) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "server"}})
	client, server := bed.Pod("client"), bed.Pod("server")
	ctx := context.Background()
	if _, err := bed.Node.Run(ctx, "iptables", "-I", "FORWARD", "-p", "tcp", "-d", server.IP.String(), "--dport", "9999", "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, bed, "--drop-hook", hook)
	if want := "enabled=btf,tcx," + hook; !strings.Contains(a.stderr.String(), want) {
		t.Errorf("startup log lacks %q:\n%s", want, a.stderr.String())
	}

	dial := func(port int) error {
		ctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
		defer cancel()
		c, err := client.Dial(ctx, "tcp", net.JoinHostPort(server.IP.String(), strconv.Itoa(port)))
		if err == nil {
			c.Close()
			return errors.New("connected")
		}
		return nil
	}
	if err := dial(9999); err != nil {
		t.Fatalf("port 9999 behind an iptables DROP: %v", err)
	}
	if err := dial(9); err != nil {
		t.Fatalf("closed port 9: %v", err)
	}

	tests := []struct {
		name, reason string
		port         uint32
		direction    flowv1.TrafficDirection
	}{
		{"iptables DROP in the node is NETFILTER_DROP on the client's way out", "NETFILTER_DROP", 9999, flowv1.TrafficDirection_EGRESS},
		{"a closed port in the server pod is NO_SOCKET on the way in", "NO_SOCKET", 9, flowv1.TrafficDirection_INGRESS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.waitFor(t, 10*time.Second, tt.reason+" drop", dropMatch(client.IP.String(), server.IP.String(), tt.port, tt.reason))
			f := r.GetFlow()
			if f.DropReasonDesc != tt.reason || f.TrafficDirection != tt.direction || f.Packets == 0 || f.ObservationPoint != "kfree_skb" {
				t.Errorf("drop record %v: want desc %s, direction %s, packets > 0", f, tt.reason, tt.direction)
			}
		})
	}
	a.stop(t)
}

func TestConntrackSaturationIsReportedWithDropsAndTheTopCreator(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "server"}})
	client, server := bed.Pod("client"), bed.Pod("server")
	ctx := context.Background()
	// A rule that needs conntrack turns it on in the node namespace.
	if _, err := bed.Node.Run(ctx, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	ln, err := server.Listen("tcp", net.JoinHostPort(server.IP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()

	a := startAgent(t, bed, "--conntrack-interval", "1s")
	lock := testbed.LockConntrackT(t)
	const max = 64
	if err := lock.SetMax(max); err != nil {
		t.Fatal(err)
	}
	// Established connections are assured: conntrack cannot evict them,
	// so once the table is full new SYNs are dropped.
	dial := func(timeout time.Duration) {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if c, err := client.Dial(dctx, "tcp", ln.Addr().String()); err == nil {
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}
	for i := 0; i < max; i++ {
		dial(2 * time.Second)
	}
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); dial(500 * time.Millisecond) }()
	}
	wg.Wait()
	full := a.waitFor(t, 15*time.Second, "a conntrack sample at >= 95 %", func(r *observerv1.GetFlowsResponse) bool {
		return r.GetConntrack().GetUtilization() >= 0.95
	})
	if full.GetConntrack().Max != max {
		t.Errorf("sample max %d, want %d", full.GetConntrack().Max, max)
	}
	a.waitFor(t, 15*time.Second, "a conntrack sample with a drop delta", func(r *observerv1.GetFlowsResponse) bool {
		return r.GetConntrack().GetDeltas().GetDrop() > 0
	})
	lock.Unlock()
	var top *flowv1.ConntrackCreator
	for _, r := range a.records() {
		if cs := r.GetConntrack(); cs != nil && len(cs.TopCreators) > 0 && (top == nil || cs.TopCreators[0].NewEntries > top.NewEntries) {
			top = cs.TopCreators[0]
		}
	}
	if top == nil || top.Ip != client.IP.String() || top.NewEntries < max/2 {
		t.Errorf("top creator %v, want the client pod %s with >= %d new entries", top, client.IP, max/2)
	}
	a.stop(t)
}

// bpfIDs lists the program and map ids a process holds, from its fdinfo.
func bpfIDs(t *testing.T, pid int) (progs, maps []uint32) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			for prefix, dst := range map[string]*[]uint32{"prog_id:": &progs, "map_id:": &maps} {
				if v, ok := strings.CutPrefix(line, prefix); ok {
					n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
					*dst = append(*dst, uint32(n))
				}
			}
		}
	}
	return progs, maps
}

// loadedIDs returns the programs and maps of the lists that still exist.
func loadedIDs(progs, maps []uint32) []string {
	var left []string
	for _, id := range progs {
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
			info, _ := p.Info()
			p.Close()
			left = append(left, fmt.Sprintf("program %d %s", id, info.Name))
		}
	}
	for _, id := range maps {
		if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
			m.Close()
			left = append(left, fmt.Sprintf("map %d", id))
		}
	}
	return left
}

// tcxPrograms counts programs attached with tcx to an interface of a netns.
func tcxPrograms(t *testing.T, ns *testbed.Netns, ifname string) int {
	t.Helper()
	n := 0
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: ifc.Index, Attach: at})
			if err != nil {
				return err
			}
			n += len(res.Programs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func qdiscs(t *testing.T, ns *testbed.Netns, ifname string) string {
	t.Helper()
	out, err := ns.Run(context.Background(), "tc", "qdisc", "show", "dev", ifname)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAgentLeavesNothingBehind(t *testing.T) {
	t.Run("after SIGTERM, with the preferred hooks and with the fallbacks", func(t *testing.T) {
		for _, mode := range []string{"tcx", "tc"} {
			t.Run(mode, func(t *testing.T) {
				bed := testbed.NewT(t, testbed.Config{Pods: []string{"a"}})
				pod := bed.Pod("a")
				dropHook := "tp_btf"
				if mode == "tc" {
					dropHook = "tracepoint"
				}
				a := startAgent(t, bed, "--attach-mode", mode, "--drop-hook", dropHook)
				progs, maps := bpfIDs(t, a.cmd.Process.Pid)
				if len(progs) < 3 || len(maps) < 3 {
					t.Fatalf("agent holds programs %v and maps %v, want the flow and drop objects", progs, maps)
				}
				// Ingress only: netfilter LOCAL_OUT counts what the node sends.
				if mode == "tcx" && tcxPrograms(t, bed.Node, pod.HostVeth) != 1 {
					t.Fatalf("want 1 tcx program on %s while running", pod.HostVeth)
				}
				if mode == "tc" && !strings.Contains(qdiscs(t, bed.Node, pod.HostVeth), "clsact") {
					t.Fatalf("want a clsact qdisc on %s while running", pod.HostVeth)
				}
				a.stop(t)
				// The kernel frees programs and maps after the last
				// reference goes, asynchronously: wait for it.
				deadline := time.Now().Add(10 * time.Second)
				for {
					left := loadedIDs(progs, maps)
					if len(left) == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("still loaded after the agent exited: %v", left)
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if n := tcxPrograms(t, bed.Node, pod.HostVeth); n != 0 {
					t.Errorf("%d tcx programs left on %s", n, pod.HostVeth)
				}
				if q := qdiscs(t, bed.Node, pod.HostVeth); strings.Contains(q, "clsact") {
					t.Errorf("qdisc left on %s: %s", pod.HostVeth, q)
				}
			})
		}
	})
	t.Run("after a failed start", func(t *testing.T) {
		bed := testbed.NewT(t, testbed.Config{Pods: []string{"a"}})
		pod := bed.Pod("a")
		// The metrics port is taken, which fails the start after the
		// programs were attached.
		busy, err := bed.Node.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		for _, mode := range []string{"tcx", "tc"} {
			out, err := bed.Node.Run(context.Background(), agentBin, "--attach-mode", mode, "--metrics-address", busy.Addr().String())
			if err == nil || !strings.Contains(out, "metrics listener") {
				t.Fatalf("%s: agent with a busy metrics port: %v\n%s", mode, err, out)
			}
			if n := tcxPrograms(t, bed.Node, pod.HostVeth); n != 0 {
				t.Errorf("%s: %d tcx programs left on %s", mode, n, pod.HostVeth)
			}
			if q := qdiscs(t, bed.Node, pod.HostVeth); strings.Contains(q, "clsact") {
				t.Errorf("%s: qdisc left on %s: %s", mode, pod.HostVeth, q)
			}
		}
	})
}

// agentMetricNames reads the Agent section of docs/metrics.md, leaving out
// the relay stream client's metrics (present only with --relay).
func agentMetricNames(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	sec := string(data)
	start := strings.Index(sec, "## Agent")
	if start < 0 {
		t.Fatal("docs/metrics.md has no Agent section")
	}
	sec = sec[start+len("## Agent"):]
	if end := strings.Index(sec, "\n## "); end >= 0 {
		sec = sec[:end]
	}
	var names []string
	for _, line := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		name := strings.Trim(strings.Fields(line)[1], "`")
		if strings.Contains(name, "relay_") || strings.Contains(name, "buffer_") || strings.Contains(name, "batches_") {
			continue
		}
		names = append(names, name)
	}
	if len(names) < 10 {
		t.Fatalf("found only %v in the Agent section", names)
	}
	return names
}

func TestAgentServesEveryDocumentedMetric(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "server"}})
	client, server := bed.Pod("client"), bed.Pod("server")
	ctx := context.Background()
	if _, err := bed.Node.Run(ctx, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(bed.NodeAddr.String(), "9965")
	a := startAgent(t, bed, "--metrics-address", addr, "--conntrack-interval", "1s")
	// A refused connection makes flows, a drop and a conntrack entry.
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	if c, err := client.Dial(dctx, "tcp", net.JoinHostPort(server.IP.String(), "9")); err == nil {
		c.Close()
	}
	cancel()
	a.waitFor(t, 10*time.Second, "an aggregate record", func(r *observerv1.GetFlowsResponse) bool {
		return r.GetFlow().GetEventKind() == flowv1.EventKind_AGGREGATE
	})
	a.waitFor(t, 10*time.Second, "a NO_SOCKET drop", dropMatch(client.IP.String(), server.IP.String(), 9, "NO_SOCKET"))
	a.waitFor(t, 10*time.Second, "a conntrack sample", func(r *observerv1.GetFlowsResponse) bool { return r.GetConntrack() != nil })

	resp, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(resp, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
	body, _ := io.ReadAll(resp)
	resp.Close()
	for _, name := range agentMetricNames(t) {
		if !regexp.MustCompile(`(?m)^` + name + `(_bucket|_sum|_count)?[{ ]`).Match(body) {
			t.Errorf("metric %s missing from /metrics", name)
		}
	}
	if !strings.Contains(string(body), `trawl_agent_drops_total{drop_class="no-socket",reason="NO_SOCKET"}`) {
		t.Error("trawl_agent_drops_total has no NO_SOCKET series of class no-socket after a NO_SOCKET drop")
	}
	a.stop(t)
}

func TestAgentAttachesToPodInterfacesThatAppearLater(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"server"}})
	server := bed.Pod("server")
	a := startAgent(t, bed)
	late, err := bed.AddPod(context.Background(), "late")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := server.Listen("tcp", net.JoinHostPort(server.IP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// The agent may still be attaching when the first connection goes:
	// keep connecting until it reports one from the new pod's veth.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if c, err := late.Dial(ctx, "tcp", ln.Addr().String()); err == nil {
				c.Close()
			}
			cancel()
		}
	}()
	r := a.waitFor(t, 15*time.Second, "a flow from the pod added after start", func(r *observerv1.GetFlowsResponse) bool {
		f := r.GetFlow()
		return f.GetIP().GetSource() == late.IP.String() && f.GetInterface().GetName() == late.HostVeth
	})
	if f := r.GetFlow(); f.TrafficDirection != flowv1.TrafficDirection_EGRESS {
		t.Errorf("flow %v: want EGRESS of the new pod", f)
	}
	a.stop(t)
}

func TestAgentRefusesToStartWithoutPrivileges(t *testing.T) {
	roottest.Require(t, "runs the agent as nobody")
	cmd := exec.Command(agentBin, "--metrics-address", "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("agent started as nobody:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "needs root") {
		t.Fatalf("last line %q (%v), want one clear line saying it needs root", last, err)
	}
}

func TestDropReasonsFilterLeavesOutUnselectedReasons(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "server"}})
	client, server := bed.Pod("client"), bed.Pod("server")
	ctx := context.Background()
	if _, err := bed.Node.Run(ctx, "iptables", "-I", "FORWARD", "-p", "tcp", "-d", server.IP.String(), "--dport", "9999", "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, bed, "--drop-reasons", "NETFILTER_DROP")
	for _, port := range []string{"9", "9999"} {
		dctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
		if c, err := client.Dial(dctx, "tcp", net.JoinHostPort(server.IP.String(), port)); err == nil {
			c.Close()
		}
		cancel()
	}
	a.waitFor(t, 10*time.Second, "the selected NETFILTER_DROP", dropMatch(client.IP.String(), server.IP.String(), 9999, "NETFILTER_DROP"))
	a.stop(t) // the final poll exports every drop counted so far
	for _, r := range a.records() {
		if f := r.GetFlow(); f.GetEventKind() == flowv1.EventKind_DROP && f.DropReasonKernel != "NETFILTER_DROP" {
			t.Errorf("drop with unselected reason %s: %v", f.DropReasonKernel, f)
		}
	}
}

func TestSuppressedInstantEventsAreReportedAsLostEvents(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "server"}})
	client, server := bed.Pod("client"), bed.Pod("server")
	// One event per second per CPU (burst 2): 200 new flows must
	// overflow it.
	a := startAgent(t, bed, "--event-rate", "1", "--disable-drops")
	pc, err := client.ListenPacket("udp", net.JoinHostPort(client.IP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for port := 2000; port < 2200; port++ {
		pc.WriteTo([]byte("x"), &net.UDPAddr{IP: server.IP.AsSlice(), Port: port})
	}
	a.waitFor(t, 10*time.Second, "a RATE_LIMITED lost-events record", func(r *observerv1.GetFlowsResponse) bool {
		return r.GetLostEvents().GetSource() == flowv1.LostEventSource_RATE_LIMITED
	})
	a.stop(t)
	var lost uint64
	for _, r := range a.records() {
		if le := r.GetLostEvents(); le.GetSource() == flowv1.LostEventSource_RATE_LIMITED {
			lost += le.NumEventsLost
		}
	}
	// At most a burst of 2 per CPU passes; other new flows (ICMP errors
	// coming back) may add to the suppressed count.
	if lost < 200-2*uint64(runtime.NumCPU())-2 {
		t.Errorf("lost events %d, want nearly all of the 200 new-flow events", lost)
	}
	// Suppressed events are only the instant ones: every flow is still
	// in the aggregates.
	flows := map[uint32]bool{}
	for _, r := range a.records() {
		f := r.GetFlow()
		if f.GetEventKind() == flowv1.EventKind_AGGREGATE && f.IP.Source == client.IP.String() && f.GetL4().GetUDP() != nil {
			flows[f.L4.GetUDP().DestinationPort] = true
		}
	}
	if len(flows) != 200 {
		t.Errorf("%d UDP flows in aggregates, want all 200", len(flows))
	}
}

func TestAFullFlowMapIsReportedAsLostEvents(t *testing.T) {
	bed := testbed.NewT(t, testbed.Config{Pods: []string{"client", "server"}})
	client, server := bed.Pod("client"), bed.Pod("server")
	a := startAgent(t, bed, "--flow-map-size", "16", "--disable-drops")
	pc, err := client.ListenPacket("udp", net.JoinHostPort(client.IP.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for port := 3000; port < 3100; port++ {
		pc.WriteTo([]byte("x"), &net.UDPAddr{IP: server.IP.AsSlice(), Port: port})
	}
	r := a.waitFor(t, 10*time.Second, "a MAP_FULL lost-events record", func(r *observerv1.GetFlowsResponse) bool {
		return r.GetLostEvents().GetSource() == flowv1.LostEventSource_MAP_FULL
	})
	if le := r.GetLostEvents(); le.NumEventsLost == 0 || !strings.Contains(le.Detail, "flow") {
		t.Errorf("lost event %v: want a count and the flow program named", le)
	}
	a.stop(t)
}
