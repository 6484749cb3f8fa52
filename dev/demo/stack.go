// Package demo runs the whole Trawl system on one machine: the embedded
// ClickHouse, a relay, an agent inside a node network namespace, a demo
// cluster of pod namespaces built from deploy/demo's manifests with its
// NetworkPolicies enforced by iptables, traffic that tells the story, and
// optionally a real Prometheus with Trawl's alert rules. `make run` and the
// end-to-end test both use it.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/trawl-dev/trawl/dev/chserver"
	"github.com/trawl-dev/trawl/internal/kube"
	"github.com/trawl-dev/trawl/internal/testbed"
	"github.com/trawl-dev/trawl/internal/testbed/netpol"
)

// Config of a stack. Zero values pick defaults.
type Config struct {
	// BinDir holds trawl-agent, trawl-relay and trawl.
	BinDir string
	// Manifests is the demo cluster (default deploy/demo).
	Manifests string
	// Rules are Prometheus rule files; Prometheus runs only when set.
	Rules []string
	// WorkDir receives logs and rendered manifests; a temporary directory
	// (removed on Close) when empty.
	WorkDir string
	// ClickHouseDir keeps ClickHouse's data; inside WorkDir when empty.
	ClickHouseDir string
	// ObserverAddr for the relay's observer API (default 127.0.0.1:4245;
	// "127.0.0.1:0" picks a free port).
	ObserverAddr string
	// ConntrackMax is the demo's lowered nf_conntrack_max during bursts
	// (default 2048); restored afterwards.
	ConntrackMax int
	// Log receives progress lines.
	Log io.Writer
}

// Stack is a running demo.
type Stack struct {
	cfg Config
	// ObserverAddr is where `trawl observe --server` connects.
	ObserverAddr string
	// RelayMetrics and AgentMetrics are the /metrics addresses.
	RelayMetrics, AgentMetrics string
	// NodeName of the demo node (as in the manifests).
	NodeName string
	// ClickHouseDSN of the embedded server.
	ClickHouseDSN string

	CH   *chserver.Server
	Bed  *testbed.Bed
	Prom *Prometheus
	// Pods of the demo by "namespace/name".
	Pods map[string]*Pod

	relayIngest string
	dnsMu       sync.Mutex
	dnsLog      []Lookup
	tcpMu       sync.Mutex
	tcpLog      []Connect
	procs       []*proc
	cleanup     []func() error
	tempDir     bool
}

// Pod is a demo pod: its manifest identity and its network namespace.
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	// ManifestIP is the address in deploy/demo; IP the bed's real one.
	ManifestIP, IP netip.Addr
	Netns          *testbed.Pod
}

// Start brings everything up. On error, whatever started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.Manifests == "" {
		cfg.Manifests = "deploy/demo"
	}
	if cfg.ObserverAddr == "" {
		cfg.ObserverAddr = "127.0.0.1:4245"
	}
	if cfg.ConntrackMax == 0 {
		cfg.ConntrackMax = 2048
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	s := &Stack{cfg: cfg, Pods: map[string]*Pod{}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.cfg.WorkDir == "" {
		if s.cfg.WorkDir, err = os.MkdirTemp("", "trawl-demo-"); err != nil {
			return nil, err
		}
		s.tempDir = true
	}
	if s.cfg.ClickHouseDir == "" {
		s.cfg.ClickHouseDir = filepath.Join(s.cfg.WorkDir, "clickhouse")
	}
	if err := os.MkdirAll(s.cfg.ClickHouseDir, 0o755); err != nil {
		return nil, err
	}

	objs, _, err := kube.LoadManifests(cfg.Manifests)
	if err != nil {
		return nil, fmt.Errorf("load demo manifests: %w", err)
	}
	pods := demoPods(objs)
	if len(pods) == 0 {
		return nil, fmt.Errorf("no pods with an IP in %s", cfg.Manifests)
	}

	s.logf("starting the embedded ClickHouse")
	chLog, err := s.logFile("clickhouse.log")
	if err != nil {
		return nil, err
	}
	if s.CH, err = chserver.Start(ctx, chserver.Config{DataDir: s.cfg.ClickHouseDir, Log: chLog}); err != nil {
		return nil, fmt.Errorf("start ClickHouse: %w", err)
	}
	s.ClickHouseDSN = "clickhouse://" + s.CH.Addr

	s.logf("building the demo cluster: %d pods in network namespaces behind one node", len(pods))
	names := make([]string, len(pods))
	for i := range pods {
		names[i] = fmt.Sprintf("p%d", i)
	}
	if s.Bed, err = testbed.New(ctx, testbed.Config{Pods: names}); err != nil {
		return nil, fmt.Errorf("build the demo cluster: %w", err)
	}
	// The manifests are written for slot 1 of the test bed, pods in address
	// order; move them to the slot this bed got.
	for i, p := range pods {
		p.Netns = s.Bed.Pods[i]
		p.IP = p.Netns.IP
		if want := string(netpol.Renumber([]byte(p.ManifestIP.String()), s.Bed.Slot)); want != p.IP.String() {
			return nil, fmt.Errorf("demo pod %s/%s has address %s; the test bed gave its slot %s (manifests must number pods 10.244.1.10, .11, ... in order)",
				p.Namespace, p.Name, p.ManifestIP, p.IP)
		}
		s.Pods[p.Namespace+"/"+p.Name] = p
	}
	rendered := filepath.Join(s.cfg.WorkDir, "manifests")
	if err := renderManifests(cfg.Manifests, rendered, s.Bed.Slot); err != nil {
		return nil, err
	}
	s.NodeName = nodeName(objs)

	s.logf("enforcing the NetworkPolicies with nftables in the node namespace")
	if err := s.enforcePolicies(ctx, rendered); err != nil {
		return nil, err
	}

	if err := s.startRelay(ctx, rendered); err != nil {
		return nil, err
	}
	if err := s.startAgent(ctx); err != nil {
		return nil, err
	}
	if len(cfg.Rules) > 0 {
		promLog, err := s.logFile("prometheus.log")
		if err != nil {
			return nil, err
		}
		s.logf("starting Prometheus with %s", strings.Join(cfg.Rules, ", "))
		s.Prom, err = StartPrometheus(ctx, PrometheusConfig{
			Agents: []string{s.AgentMetrics}, Relays: []string{s.RelayMetrics},
			RuleFiles: cfg.Rules, Interval: 2 * time.Second, Log: promLog,
		})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Stack) startRelay(ctx context.Context, manifests string) error {
	metrics, err := freeAddr("127.0.0.1")
	if err != nil {
		return err
	}
	observer := s.cfg.ObserverAddr
	if strings.HasSuffix(observer, ":0") {
		if observer, err = freeAddr("127.0.0.1"); err != nil {
			return err
		}
	}
	// The agent in the node namespace reaches the relay over the bed's uplink.
	ingest := net.JoinHostPort(s.Bed.RootAddr.String(), "4246")
	if port, err := freePort(s.Bed.RootAddr.String()); err == nil {
		ingest = net.JoinHostPort(s.Bed.RootAddr.String(), strconv.Itoa(port))
	}
	s.ObserverAddr, s.RelayMetrics = observer, metrics
	s.logf("starting trawl-relay: observer %s, ingest %s, metrics %s", observer, ingest, metrics)
	cmd := exec.Command(filepath.Join(s.cfg.BinDir, "trawl-relay"), "serve",
		"--clickhouse-dsn", s.ClickHouseDSN,
		"--listen-address", observer,
		"--ingest-address", ingest,
		"--metrics-address", metrics,
		"--insecure",
		"--manifests", manifests,
		"--insert-interval", "500ms",
	)
	p, err := s.startProc(cmd, "relay.log")
	if err != nil {
		return err
	}
	s.relayIngest = ingest
	return p.waitListening(ctx, observer, 60*time.Second)
}

func (s *Stack) startAgent(ctx context.Context) error {
	s.AgentMetrics = net.JoinHostPort(s.Bed.NodeAddr.String(), "9965")
	s.logf("starting trawl-agent in the node namespace %s (metrics %s)", s.Bed.Node.Name, s.AgentMetrics)
	cmd := s.Bed.Node.Command(context.Background(), filepath.Join(s.cfg.BinDir, "trawl-agent"),
		"--node-name", s.NodeName,
		"--relay", s.relayIngest,
		"--relay-insecure",
		"--metrics-address", s.AgentMetrics,
		"--flush-interval", "1s",
		"--conntrack-interval", "2s",
		"--interfaces", "veth*",
	)
	p, err := s.startProc(cmd, "agent.log")
	if err != nil {
		return err
	}
	return p.waitListening(ctx, s.AgentMetrics, 60*time.Second)
}

// Close stops everything in reverse order and removes what was created.
func (s *Stack) Close() error {
	var errs []error
	if s.Prom != nil {
		s.Prom.Stop()
	}
	for i := len(s.procs) - 1; i >= 0; i-- {
		if err := s.procs[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		if err := s.cleanup[i](); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Bed != nil {
		if err := s.Bed.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.CH != nil {
		if err := s.CH.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.tempDir {
		os.RemoveAll(s.cfg.WorkDir)
	}
	return errors.Join(errs...)
}

// WorkDir holds the logs of the stack's processes.
func (s *Stack) WorkDir() string { return s.cfg.WorkDir }

func (s *Stack) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Log, "trawl-demo: "+format+"\n", args...)
}

func (s *Stack) logFile(name string) (*os.File, error) {
	f, err := os.Create(filepath.Join(s.cfg.WorkDir, name))
	if err != nil {
		return nil, err
	}
	s.cleanup = append(s.cleanup, f.Close)
	return f, nil
}

// proc is a child process of the stack.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

func (s *Stack) startProc(cmd *exec.Cmd, logName string) (*proc, error) {
	f, err := s.logFile(logName)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: Ctrl-C in the terminal reaches only the demo
	// runner, which stops the children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &proc{name: filepath.Base(cmd.Args[0]), cmd: cmd, done: make(chan struct{}), log: f.Name()}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	s.procs = append(s.procs, p)
	return p, nil
}

func (p *proc) waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start (%v); see %s:\n%s", p.name, p.err, p.log, tail(p.log, 15))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not listen on %s after %s; see %s", p.name, addr, timeout, p.log)
		}
	}
}

func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	// `ip netns exec` execs the real program, so the signal reaches it.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within 20s of SIGTERM; killed", p.name)
	}
}

// LogTail returns the last n lines of one of the stack's logs ("relay.log",
// "agent.log"), for a failing test to print.
func (s *Stack) LogTail(name string, n int) string {
	return tail(filepath.Join(s.cfg.WorkDir, name), n)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// demoPods lists the manifests' pods that have an address, sorted by it.
func demoPods(objs []any) []*Pod {
	var pods []*Pod
	for _, o := range objs {
		pod, ok := o.(*corev1.Pod)
		if !ok || pod.Status.PodIP == "" || pod.Spec.HostNetwork {
			continue
		}
		ip, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil {
			continue
		}
		pods = append(pods, &Pod{Namespace: pod.Namespace, Name: pod.Name, Labels: pod.Labels, ManifestIP: ip})
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].ManifestIP.Less(pods[j].ManifestIP) })
	return pods
}

func nodeName(objs []any) string {
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			return n.Name
		}
	}
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return p.Spec.NodeName
		}
	}
	return "trawl-demo-node"
}

// renderManifests copies the demo manifests renumbered for the bed's slot,
// so the relay enriches the addresses the kernel really sees.
func renderManifests(src, dst string, slot int) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(src, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no manifests in %s", src)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), netpol.Renumber(b, slot), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func freeAddr(host string) (string, error) {
	port, err := freePort(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Stack) enforcePolicies(ctx context.Context, manifests string) error {
	objs, _, err := kube.LoadManifests(manifests)
	if err != nil {
		return fmt.Errorf("load rendered manifests: %w", err)
	}
	script, err := netpol.Generate(objs, netpol.Options{})
	if err != nil {
		return fmt.Errorf("generate policy rules: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.cfg.WorkDir, "netpol.nft"), []byte(script), 0o644); err != nil {
		return err
	}
	return netpol.Apply(ctx, s.Bed.Node.Name, script)
}
