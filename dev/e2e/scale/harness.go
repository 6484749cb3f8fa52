// Package scale runs Trawl at scale on one machine: ClickHouse as shards
// (embedded servers, the relay's Distributed tables), several trawl-relay
// processes behind one address (a round-robin TCP balancer), and synthetic
// agents (the agent's own shipper). dev/cmd/trawl-load drives it for the
// scale benchmark and the soak; the test beside it checks no loss, no
// duplicates and follow across relays on a small load.
package scale

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/dev/chserver"
	"github.com/trawl-dev/trawl/internal/flowid"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/store"
)

// Cluster is the remote_servers name the shards share; Database holds the
// schema.
const (
	Cluster  = "trawl_scale"
	Database = "trawl"
)

// FreeAddr is a free loopback address for a process the harness may
// restart on it (a relay): chserver.FreePort, outside the kernel's
// ephemeral range, says why.
func FreeAddr() (string, error) {
	p, err := chserver.FreePort()
	return "127.0.0.1:" + strconv.Itoa(p), err
}

// Shards are embedded ClickHouse servers, one shard each, with fixed ports
// and data directories so that one can be stopped and started again.
type Shards struct {
	Servers []*chserver.Server
	dirs    []string
	tcp     []int
	http    []int
	log     io.Writer
}

// StartShards starts n servers under root (a directory per server) that
// know each other as cluster Cluster.
func StartShards(ctx context.Context, root string, n int, log io.Writer) (*Shards, error) {
	s := &Shards{Servers: make([]*chserver.Server, n), log: log}
	var cfg strings.Builder
	cfg.WriteString("<clickhouse><remote_servers><" + Cluster + ">\n")
	for i := 0; i < n; i++ {
		tp, err := chserver.FreePort()
		if err != nil {
			return nil, err
		}
		hp, err := chserver.FreePort()
		if err != nil {
			return nil, err
		}
		s.tcp, s.http = append(s.tcp, tp), append(s.http, hp)
		fmt.Fprintf(&cfg, "<shard><replica><host>127.0.0.1</host><port>%d</port></replica></shard>\n", tp)
	}
	cfg.WriteString("</" + Cluster + "></remote_servers></clickhouse>\n")
	for i := 0; i < n; i++ {
		dir := filepath.Join(root, fmt.Sprintf("shard%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(cfg.String()), 0o644); err != nil {
			return nil, err
		}
		s.dirs = append(s.dirs, dir)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Start(ctx, i) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Start (re)starts server i on its ports and data directory.
func (s *Shards) Start(ctx context.Context, i int) error {
	srv, err := chserver.Start(ctx, chserver.Config{DataDir: s.dirs[i], TCPPort: s.tcp[i], HTTPPort: s.http[i], Log: s.log})
	if err != nil {
		return fmt.Errorf("start shard %d: %w", i, err)
	}
	s.Servers[i] = srv
	return nil
}

// Stop stops server i (its data stays).
func (s *Shards) Stop(i int) error {
	if s.Servers[i] == nil {
		return nil
	}
	err := s.Servers[i].Stop()
	s.Servers[i] = nil
	return err
}

// Close stops every server.
func (s *Shards) Close() {
	for i := range s.Servers {
		_ = s.Stop(i)
	}
}

// Addr is server i's native protocol address.
func (s *Shards) Addr(i int) string { return "127.0.0.1:" + strconv.Itoa(s.tcp[i]) }

// RelayDSN is the DSN a relay gets to write through server i's Distributed
// tables. insert_distributed_sync makes an insert (and so the relay's ack)
// wait until the shards have the rows, as the relay sets it itself with
// --clickhouse-cluster.
func (s *Shards) RelayDSN(i int) string {
	return "clickhouse://" + s.Addr(i) + "/" + Database + "?insert_distributed_sync=1"
}

// Migrate creates the relay's cluster schema on every shard: its Distributed
// tables over plain MergeTree local tables (store.Config.ShardOnly, the form
// relay/store's cluster test uses: the embedded server has no Keeper, so the
// Replicated ON CLUSTER DDL cannot run here).
func (s *Shards) Migrate(ctx context.Context) error {
	for i := range s.Servers {
		st, err := store.Open(ctx, store.Config{DSN: "clickhouse://" + s.Addr(i) + "/" + Database, Cluster: Cluster, ShardOnly: true,
			Retention: 7 * 24 * time.Hour, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			return fmt.Errorf("open shard %d: %w", i, err)
		}
		err = st.Migrate(ctx)
		st.Close()
		if err != nil {
			return fmt.Errorf("migrate shard %d: %w", i, err)
		}
	}
	return nil
}

// Conn opens a client connection to server i.
func (s *Shards) Conn(i int) (driver.Conn, error) {
	opts, err := clickhouse.ParseDSN("clickhouse://" + s.Addr(i) + "/" + Database)
	if err != nil {
		return nil, err
	}
	return clickhouse.Open(opts)
}

// Relay is one trawl-relay process.
type Relay struct {
	Bin              string
	DSN              string
	Ingest, Observer string
	Peers            []string
	Extra            []string
	Log              io.Writer

	cmd  *exec.Cmd
	done chan struct{}
}

// NewRelay picks free addresses for a relay.
func NewRelay(bin, dsn string, log io.Writer) (*Relay, error) {
	in, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	obs, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	return &Relay{Bin: bin, DSN: dsn, Ingest: in, Observer: obs, Log: log}, nil
}

// Start runs the relay and waits until its ingest and observer ports
// accept connections.
func (r *Relay) Start(ctx context.Context) error {
	args := []string{"serve", "--insecure", "--clickhouse-dsn", r.DSN, "--ingest-address", r.Ingest,
		"--listen-address", r.Observer, "--metrics-address", "", "--log-level", "warn"}
	if len(r.Peers) > 0 {
		args = append(args, "--peers", strings.Join(r.Peers, ","))
	}
	args = append(args, r.Extra...)
	cmd := exec.Command(r.Bin, args...)
	cmd.Stdout, cmd.Stderr = r.Log, r.Log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(r.done) }()
	for _, a := range []string{r.Ingest, r.Observer} {
		if err := waitListen(ctx, a, r.done, 60*time.Second); err != nil {
			r.Kill()
			return fmt.Errorf("relay on %s: %w", r.Ingest, err)
		}
	}
	return nil
}

func waitListen(ctx context.Context, addr string, done <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return errors.New("exited before listening")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %s", addr, timeout)
		}
	}
}

// PID is the running process' id (0 when not running).
func (r *Relay) PID() int {
	if r.cmd == nil || r.Exited() {
		return 0
	}
	return r.cmd.Process.Pid
}

// Exited reports whether the process has ended.
func (r *Relay) Exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Kill ends the relay with SIGKILL (no drain: what a crash looks like).
func (r *Relay) Kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

// Stop ends the relay with SIGTERM.
func (r *Relay) Stop() {
	if r.cmd == nil || r.Exited() {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		r.Kill()
	}
}

// ProcStat returns a process' CPU seconds (utime+stime), current RSS and
// peak RSS in MiB.
func ProcStat(pid int) (cpu, rssMiB, peakMiB float64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+2:])
			if len(f) > 13 {
				u, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				cpu = (u + st) / 100 // USER_HZ
			}
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return cpu, 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		for _, k := range []struct {
			p string
			v *float64
		}{{"VmRSS:", &rssMiB}, {"VmHWM:", &peakMiB}} {
			if strings.HasPrefix(l, k.p) {
				kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
				*k.v = kb / 1024
			}
		}
	}
	return cpu, rssMiB, peakMiB
}

// Balancer is a TCP load balancer: each new connection goes to the next
// backend in turn; a backend that refuses the connection is skipped.
type Balancer struct {
	Addr     string
	ln       net.Listener
	backends []string

	mu    sync.Mutex
	next  int
	conns map[net.Conn]struct{}
	// PerBackend counts connections handed to each backend.
	PerBackend []int
	wg         sync.WaitGroup
}

// NewBalancer listens on a free loopback port.
func NewBalancer(backends ...string) (*Balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Balancer{Addr: ln.Addr().String(), ln: ln, backends: backends, conns: map[net.Conn]struct{}{}, PerBackend: make([]int, len(backends))}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

func (b *Balancer) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() { defer b.wg.Done(); b.proxy(c) }()
	}
}

func (b *Balancer) track(c net.Conn, add bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if add {
		if b.conns == nil {
			return false
		}
		b.conns[c] = struct{}{}
		return true
	}
	delete(b.conns, c)
	return true
}

func (b *Balancer) proxy(c net.Conn) {
	defer c.Close()
	if !b.track(c, true) {
		return
	}
	defer b.track(c, false)
	b.mu.Lock()
	start := b.next
	b.next = (b.next + 1) % len(b.backends)
	b.mu.Unlock()
	var up net.Conn
	for i := 0; i < len(b.backends); i++ {
		k := (start + i) % len(b.backends)
		u, err := net.DialTimeout("tcp", b.backends[k], time.Second)
		if err == nil {
			up = u
			b.mu.Lock()
			b.PerBackend[k]++
			b.mu.Unlock()
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	if !b.track(up, true) {
		return
	}
	defer b.track(up, false)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done // either side ended: end both
}

// Close stops accepting and closes every proxied connection.
func (b *Balancer) Close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.conns = nil
	b.mu.Unlock()
	b.wg.Wait()
}

// Agent is a synthetic agent: the agent's own shipper, fed with records
// shaped like the collector's (addresses, ports, interface, no pods: the
// relay enriches), each with an id derived from (node, boot, chunk, index).
type Agent struct {
	Node, Boot string
	Sh         *shipper.Shipper
	reg        *prometheus.Registry
	cancel     context.CancelFunc
	done       chan struct{}

	mu        sync.Mutex
	chunk     uint64
	published uint64
}

// ChunkRecords is the number of records an agent publishes at once: exactly
// one shipper batch.
const ChunkRecords = shipper.DefaultBatchRecords

// StartAgent runs a shipper to addr. bufferBytes 0 is the shipper's default.
func StartAgent(addr, node, boot string, bufferBytes int) (*Agent, error) {
	reg := prometheus.NewRegistry()
	sh, err := shipper.New(shipper.Config{Addr: addr, NodeName: node, BootID: boot, Insecure: true, BufferBytes: bufferBytes,
		FlushInterval: 200 * time.Millisecond, HeartbeatInterval: time.Second, Log: slog.New(slog.DiscardHandler)}, reg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{Node: node, Boot: boot, Sh: sh, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() { _ = sh.Run(ctx); close(a.done) }()
	return a, nil
}

// PublishChunk publishes ChunkRecords records timed now.
func (a *Agent) PublishChunk(now time.Time) {
	a.mu.Lock()
	a.chunk++
	c := a.chunk
	a.published += ChunkRecords
	a.mu.Unlock()
	ts := timestamppb.New(now)
	for j := 0; j < ChunkRecords; j++ {
		k := int(c)*7 + j
		f := &flowv1.Flow{Time: ts, LastSeen: ts, FirstSeen: timestamppb.New(now.Add(-time.Duration(k%3000) * time.Millisecond)),
			Verdict: flowv1.Verdict_FORWARDED, Type: flowv1.FlowType_L3_L4, EventKind: flowv1.EventKind_AGGREGATE,
			IP:               &flowv1.IP{Source: fmt.Sprintf("10.1.%d.%d", k%4, 2+k%200), Destination: fmt.Sprintf("10.2.%d.%d", k%3, 2+(k*7)%200), IpVersion: flowv1.IPVersion_IPv4},
			L4:               &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: uint32(32768 + k%20000), DestinationPort: []uint32{80, 443, 5432, 8080}[k%4]}}},
			TrafficDirection: flowv1.TrafficDirection_EGRESS, Interface: &flowv1.NetworkInterface{Index: uint32(10 + k%50), Name: fmt.Sprintf("veth%04x", k%50)},
			ObservationPoint: "tcx-ingress", Netns: 4026532000 + uint64(k%50), IsReply: wrapperspb.Bool(false),
			Packets: uint64(1 + k%100), Bytes: uint64(60 + (k*37)%90000), NodeName: a.Node,
			Uuid: flowid.Derive(a.Node, a.Boot, c, j)}
		a.Sh.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}})
	}
}

// Published is the number of records published.
func (a *Agent) Published() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.published
}

// Lost is what the shipper counted lost (trawl_agent_lost_events_total,
// every cause): records it dropped or the relay rejected.
func (a *Agent) Lost() uint64 { return uint64(a.Metric("trawl_agent_lost_events_total")) }

// Metric sums a counter or gauge of the shipper's over its labels.
func (a *Agent) Metric(name string) float64 {
	mfs, err := a.reg.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return n
}

// Drain closes the open batch and waits until every batch is acknowledged
// (or dropped and counted), at most timeout. It returns the batches still
// unacknowledged.
func (a *Agent) Drain(timeout time.Duration) int {
	n, _ := a.Sh.Drain(timeout)
	return n
}

// Stop ends the shipper (unacknowledged batches are abandoned, as when an
// agent process ends).
func (a *Agent) Stop() {
	a.cancel()
	<-a.done
}

// Counts are what ClickHouse holds for a set of nodes.
type Counts struct {
	Rows, Distinct uint64
	// LostEvents is sum(num_events_lost) of the nodes' lost-event records.
	LostEvents uint64
}

// Duplicates is rows stored more than once.
func (c Counts) Duplicates() uint64 { return c.Rows - c.Distinct }

// Count reads the flows and lost events of nodes through the Distributed
// tables.
func Count(ctx context.Context, conn driver.Conn, nodes []string) (Counts, error) {
	var c Counts
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(id_hi, id_lo) FROM "+Database+".flows WHERE node IN ?", nodes).Scan(&c.Rows, &c.Distinct); err != nil {
		return c, fmt.Errorf("count flows: %w", err)
	}
	if err := conn.QueryRow(ctx, "SELECT sum(num_events_lost) FROM "+Database+".lost_events WHERE node IN ?", nodes).Scan(&c.LostEvents); err != nil {
		return c, fmt.Errorf("count lost events: %w", err)
	}
	return c, nil
}

// DupBatch is an agent batch whose flows are stored more than once.
type DupBatch struct {
	Batch uint64
	Node  string
	// First is its oldest flow's time: when the agent made the batch,
	// which places the duplicate among a load's events.
	First time.Time
	Extra uint64 // rows beyond one per flow
}

// DuplicateBatches returns the batches of nodes with flows stored more than
// once, oldest first, at most limit of them, and how many there are.
func DuplicateBatches(ctx context.Context, conn driver.Conn, nodes []string, limit int) ([]DupBatch, uint64, error) {
	const dups = "SELECT batch, any(node) AS some_node, min(time) AS first, toUInt64(count() - uniqExact(id_hi, id_lo)) AS extra FROM " + Database + ".flows WHERE node IN ? GROUP BY batch HAVING extra > 0"
	var total uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM ("+dups+")", nodes).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count duplicated batches: %w", err)
	}
	rows, err := conn.Query(ctx, dups+" ORDER BY first LIMIT ?", nodes, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("list duplicated batches: %w", err)
	}
	defer rows.Close()
	var out []DupBatch
	for rows.Next() {
		var d DupBatch
		if err := rows.Scan(&d.Batch, &d.Node, &d.First, &d.Extra); err != nil {
			return nil, 0, err
		}
		out = append(out, d)
	}
	return out, total, rows.Err()
}

// Follower follows one relay's observer API and records the node names of
// the flows it sees.
type Follower struct {
	mu    sync.Mutex
	nodes map[string]uint64
	err   error
	done  chan struct{}
	conn  *grpc.ClientConn
	stop  context.CancelFunc
}

// Follow starts `trawl observe --follow` against addr, as a gRPC client.
func Follow(addr string) (*Follower, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Follower{nodes: map[string]uint64{}, done: make(chan struct{}), conn: conn, stop: cancel}
	stream, err := observerv1.NewObserverClient(conn).GetFlows(ctx, &observerv1.GetFlowsRequest{Follow: true})
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	go func() {
		defer close(f.done)
		for {
			r, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					f.mu.Lock()
					f.err = err
					f.mu.Unlock()
				}
				return
			}
			if fl := r.GetFlow(); fl != nil {
				f.mu.Lock()
				f.nodes[fl.GetNodeName()]++
				f.mu.Unlock()
			}
		}
	}()
	return f, nil
}

// Nodes returns flows seen per node so far, and the stream's error if it
// ended.
func (f *Follower) Nodes() (map[string]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]uint64, len(f.nodes))
	for k, v := range f.nodes {
		out[k] = v
	}
	return out, f.err
}

// Close ends the follow.
func (f *Follower) Close() {
	f.stop()
	<-f.done
	f.conn.Close()
}
