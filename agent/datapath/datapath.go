// Package datapath loads Trawl's eBPF programs and attaches them to the
// kernel: tcx (or tc clsact) on the selected interfaces, including ones that
// appear later, skb:kfree_skb for drops, and netfilter links for new
// conntrack entries. Close leaves nothing behind: no links, filters, qdiscs
// or pinned objects.
package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/agent/dropreason"
	"github.com/trawl-dev/trawl/internal/dropclass"
)

// DefaultPodInterfaces are the names CNIs give the host side of pod veths.
var DefaultPodInterfaces = []string{"veth*", "cali*", "lxc*", "azv*", "eni*", "gke*", "vnet*"}

// Config of the datapath. The zero value of each field means its default.
type Config struct {
	// Interfaces are globs of interface names to watch. Empty: the
	// DefaultPodInterfaces plus the interfaces of the default routes.
	Interfaces []string
	// AttachMode is "auto" (tcx when the kernel has it, else tc), "tcx" or "tc".
	AttachMode string
	// DropHook is "auto" (tp_btf, else the classic tracepoint), "tp_btf"
	// or "tracepoint".
	DropHook string
	// FlowMapSize is the capacity of the flow aggregation map.
	FlowMapSize uint32
	// DropMapSize is the capacity of the drop aggregation map.
	DropMapSize uint32
	// EventsPerSecond limits instant ring-buffer events per CPU (flow and
	// drop programs each); 0 means the default, 1000.
	EventsPerSecond uint64
	// DNSPorts are the UDP and TCP ports whose messages the flow program
	// copies to user space as DNS (at most MaxDNSPorts). Nil means the
	// default, 53; empty (non-nil) turns DNS capture off.
	DNSPorts []uint16
	// DNSPerSecond limits DNS messages per CPU (burst 2x); 0 means the
	// default, 5000.
	DNSPerSecond uint64
	// DropReasons selects the reported reasons (see dropreason.Table.Select).
	DropReasons string
	// Loopback reports drops of loopback traffic (127.0.0.0/8, ::1), which
	// are left out by default: a node's processes talking to themselves.
	Loopback bool
	// EgressHook counts what the node itself sends: "auto" (netfilter when
	// the kernel has netfilter links, else tcx), "netfilter" (LOCAL_OUT:
	// forwarded packets never pass there, so they pay for one program) or
	// "tcx" (egress of every watched interface, which also counts packets
	// forwarded from interfaces that are not watched, at a second program
	// run per forwarded packet).
	EgressHook string
	// DisableDrops turns the kfree_skb program off.
	DisableDrops bool
	// LocalOutPriority is the netfilter priority of the LOCAL_OUT program:
	// after conntrack (-200), before NAT (-100), so it sees the tuple the
	// socket sent. Default -199.
	LocalOutPriority int32
	Log              *slog.Logger
}

func (c *Config) setDefaults() {
	if c.AttachMode == "" {
		c.AttachMode = "auto"
	}
	if c.DropHook == "" {
		c.DropHook = "auto"
	}
	if c.FlowMapSize == 0 {
		c.FlowMapSize = 131072
	}
	if c.DropMapSize == 0 {
		c.DropMapSize = 16384
	}
	if c.EventsPerSecond == 0 {
		c.EventsPerSecond = 1000
	}
	if c.EgressHook == "" {
		c.EgressHook = "auto"
	}
	if c.DNSPorts == nil {
		c.DNSPorts = []uint16{53}
	}
	if c.DNSPerSecond == 0 {
		c.DNSPerSecond = 5000
	}
	if c.LocalOutPriority == 0 {
		c.LocalOutPriority = -199
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Validate checks the configuration before anything is loaded.
func (c *Config) Validate() error {
	switch c.AttachMode {
	case "", "auto", "tcx", "tc":
	default:
		return fmt.Errorf("attach mode %q: want auto, tcx or tc", c.AttachMode)
	}
	switch c.DropHook {
	case "", "auto", "tp_btf", "tracepoint":
	default:
		return fmt.Errorf("drop hook %q: want auto, tp_btf or tracepoint", c.DropHook)
	}
	switch c.EgressHook {
	case "", "auto", "netfilter", "tcx":
	default:
		return fmt.Errorf("egress hook %q: want auto, netfilter or tcx", c.EgressHook)
	}
	if len(c.DNSPorts) > MaxDNSPorts {
		return fmt.Errorf("%d DNS ports: at most %d", len(c.DNSPorts), MaxDNSPorts)
	}
	for _, p := range c.DNSPorts {
		if p == 0 {
			return errors.New("DNS port 0")
		}
	}
	for _, g := range c.Interfaces {
		if _, err := filepath.Match(g, "x"); err != nil {
			return fmt.Errorf("interface glob %q: %w", g, err)
		}
	}
	return nil
}

// Datapath owns the loaded programs, maps and attachments.
type Datapath struct {
	cfg Config
	log *slog.Logger

	Features Features
	Reasons  *dropreason.Table
	// Netns is the inode of the network namespace the agent runs in.
	Netns uint64

	Flow bpf.FlowObjects
	Drop *bpf.DropMaps // nil when drops are off
	// TCXEgress is true when the flow program also runs at the tcx (or tc)
	// egress of watched interfaces, false when LOCAL_OUT counts what the
	// node sends.
	TCXEgress bool

	dropProg *ebpf.Program
	links    []link.Link // drop and netfilter links
	// Retrans records retransmitted segments (tcp_retrans.c) for the
	// collector; nil when its tracepoints could not be attached
	// (Features.Detail says why).
	Retrans      *bpf.TcpRetransObjects
	retransLinks []link.Link

	mu     sync.Mutex
	ifaces map[int]*attachment
	closed bool // Close ran: attach nothing more
}

// Open checks privileges and BTF, loads every program and attaches them to
// the interfaces present now. On error everything done so far is undone.
func Open(cfg Config) (_ *Datapath, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if err := checkPrivileges(); err != nil {
		return nil, err
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, ErrNoBTF
	}
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoBTF, err)
	}
	// Memory is charged to the cgroup on kernels >= 5.11; raising the
	// memlock rlimit may fail without CAP_SYS_RESOURCE and is not needed.
	_ = rlimit.RemoveMemlock()

	d := &Datapath{cfg: cfg, log: cfg.Log, ifaces: map[int]*attachment{}}
	d.Features.BTF = true
	d.Features.Detail = map[string]string{}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if st, err := os.Stat("/proc/self/ns/net"); err == nil {
		d.Netns = st.Sys().(*syscall.Stat_t).Ino
	}

	switch cfg.AttachMode {
	case "tcx":
		d.Features.TCX = true
	case "tc":
		d.Features.Detail["tcx"] = "off: --attach-mode tc"
	default:
		d.Features.TCX = kernelHasAttachType(kspec, "BPF_TCX_INGRESS")
		if !d.Features.TCX {
			d.Features.Detail["tcx"] = "kernel has no tcx (needs 6.6): using tc clsact"
		}
	}

	netfilter := kernelHasAttachType(kspec, "BPF_NETFILTER")
	switch {
	case cfg.EgressHook == "tcx":
		d.TCXEgress = true
		d.Features.Detail["netfilter_link"] = "off: --egress-hook tcx"
	case !netfilter && cfg.EgressHook == "netfilter":
		return nil, errors.New("--egress-hook netfilter: the kernel has no netfilter BPF links (needs 6.4)")
	case !netfilter:
		d.TCXEgress = true
		d.Features.Detail["netfilter_link"] = "off: kernel has no netfilter BPF links (needs 6.4): counting what the node sends at tcx egress"
	}
	if err := d.loadFlow(); err != nil {
		return nil, err
	}
	if !d.TCXEgress {
		if err := d.attachLocalOut(); err != nil {
			return nil, err
		}
	}
	if cfg.DisableDrops {
		d.Features.Detail["tp_btf"] = "off: drops disabled"
		d.Features.Detail["tracepoint"] = "off: drops disabled"
	} else if err := d.loadDrops(kspec); err != nil {
		return nil, err
	}

	if err := d.loadRetrans(); err != nil {
		// Optional: the rest of TCP health works without it.
		d.Features.Detail["tcp_retransmit"] = "off: " + err.Error()
		d.log.Warn("TCP retransmits are not counted", "err", err)
	}

	if err := d.Sync(); err != nil {
		return nil, err
	}
	return d, nil
}

// loadRetrans loads tcp_retrans.c and attaches it to the
// sock:inet_sock_set_state, tcp:tcp_retransmit_skb and
// tcp:tcp_retransmit_synack tracepoints (tp_btf). Its programs write small
// per-CPU rings (retrans_rings, one row per CPU and program) that the
// collector reads; they touch no flow entry.
func (d *Datapath) loadRetrans() error {
	spec, err := bpf.LoadTcpRetrans()
	if err != nil {
		return fmt.Errorf("load tcp_retrans program spec: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("count possible CPUs for the retransmit rings: %w", err)
	}
	spec.Maps[bpf.TcpRetransMapRetransRings].MaxEntries = uint32(cpus) * uint32(bpf.TcpRetransRetransRowRETRANS_ROWS_PER_CPU)
	var objs bpf.TcpRetransObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return fmt.Errorf("load tp_btf/tcp_retransmit_skb (the kernel needs the tcp:tcp_retransmit_skb tracepoint with its err argument, Linux 6.13+): %w", err)
	}
	var links []link.Link
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{
		// State changes first: a socket opened from then on has its count's
		// start marked before it can retransmit.
		{"sock:inet_sock_set_state", objs.TrawlTcpState},
		{"tcp:tcp_retransmit_skb", objs.TrawlTcpRetransmit},
		{"tcp:tcp_retransmit_synack", objs.TrawlTcpRetransmitSynack},
	} {
		l, err := link.AttachTracing(link.TracingOptions{Program: p.prog})
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			objs.Close()
			return fmt.Errorf("attach tp_btf to the %s tracepoint: %w", p.name, err)
		}
		links = append(links, l)
	}
	d.retransLinks = links
	d.Retrans = &objs
	d.Features.TCPRetransmit = true
	return nil
}

func (d *Datapath) loadFlow() error {
	spec, err := bpf.LoadFlow()
	if err != nil {
		return fmt.Errorf("load flow program spec: %w", err)
	}
	spec.Maps[bpf.FlowMapFlows].MaxEntries = d.cfg.FlowMapSize
	if err := setRate(spec, d.cfg.EventsPerSecond); err != nil {
		return err
	}
	if err := setDNS(spec, d.cfg.DNSPorts, d.cfg.DNSPerSecond); err != nil {
		return err
	}
	if d.TCXEgress {
		// The kernel may not know netfilter programs: load the rest.
		delete(spec.Programs, bpf.FlowProgTrawlFlowLocalOut)
		var objs struct {
			bpf.FlowMaps
			Ingress *ebpf.Program `ebpf:"trawl_flow_ingress"`
			Egress  *ebpf.Program `ebpf:"trawl_flow_egress"`
		}
		if err := spec.LoadAndAssign(&objs, nil); err != nil {
			return fmt.Errorf("load flow programs: %w", err)
		}
		d.Flow.FlowMaps = objs.FlowMaps
		d.Flow.TrawlFlowIngress, d.Flow.TrawlFlowEgress = objs.Ingress, objs.Egress
		return nil
	}
	if err := spec.LoadAndAssign(&d.Flow, nil); err != nil {
		return fmt.Errorf("load flow programs: %w", err)
	}
	return nil
}

func setRate(spec *ebpf.CollectionSpec, perSec uint64) error {
	if err := spec.Variables["events_per_sec"].Set(perSec); err != nil {
		return fmt.Errorf("set events_per_sec: %w", err)
	}
	if err := spec.Variables["events_burst"].Set(2 * perSec); err != nil {
		return fmt.Errorf("set events_burst: %w", err)
	}
	return nil
}

// MaxDNSPorts is how many DNS ports the flow program compares with.
const MaxDNSPorts = 4

// setDNS sets the DNS ports (unused slots 0: the verifier, which knows these
// read-only values, removes their comparisons) and rate.
func setDNS(spec *ebpf.CollectionSpec, ports []uint16, perSec uint64) error {
	for i := 0; i < MaxDNSPorts; i++ {
		var p uint16
		if i < len(ports) {
			p = ports[i]
		}
		name := fmt.Sprintf("dns_port_%d", i)
		if err := spec.Variables[name].Set(p); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	if err := spec.Variables["dns_per_sec"].Set(perSec); err != nil {
		return fmt.Errorf("set dns_per_sec: %w", err)
	}
	if err := spec.Variables["dns_burst"].Set(2 * perSec); err != nil {
		return fmt.Errorf("set dns_burst: %w", err)
	}
	return nil
}

type dropBTF struct {
	bpf.DropMaps
	Prog *ebpf.Program `ebpf:"trawl_drop_btf"`
}

type dropTP struct {
	bpf.DropMaps
	Prog *ebpf.Program `ebpf:"trawl_drop_tp"`
}

// loadDrops loads and attaches the kfree_skb program: tp_btf first, the
// classic tracepoint when that fails. Reason names come from kernel BTF.
func (d *Datapath) loadDrops(kspec *btf.Spec) error {
	reasons, err := dropreason.Load(kspec)
	if err != nil {
		return err
	}
	d.Reasons = reasons
	selected, err := reasons.Select(d.cfg.DropReasons)
	if err != nil {
		return fmt.Errorf("--drop-reasons: %w", err)
	}
	spec, err := bpf.LoadDrop()
	if err != nil {
		return fmt.Errorf("load drop program spec: %w", err)
	}
	spec.Maps[bpf.DropMapDrops].MaxEntries = d.cfg.DropMapSize
	spec.Maps[bpf.DropMapFlows].MaxEntries = d.cfg.FlowMapSize
	if err := setRate(spec, d.cfg.EventsPerSecond); err != nil {
		return err
	}
	if err := spec.Variables["report_loopback"].Set(d.cfg.Loopback); err != nil {
		return fmt.Errorf("set report_loopback: %w", err)
	}
	// The drop program takes undelivered packets out of the flow program's
	// entries: one map, shared.
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{bpf.DropMapFlows: d.Flow.Flows}}

	var btfObjs dropBTF
	errBTF := errors.New("--drop-hook tracepoint")
	if d.cfg.DropHook != "tracepoint" {
		errBTF = spec.LoadAndAssign(&btfObjs, opts)
	}
	if errBTF == nil {
		l, err := link.AttachTracing(link.TracingOptions{Program: btfObjs.Prog})
		if err == nil {
			d.Features.TPBTF = true
			d.Drop, d.dropProg = &btfObjs.DropMaps, btfObjs.Prog
			d.links = append(d.links, l)
		} else {
			errBTF = err
			btfObjs.Prog.Close()
			btfObjs.DropMaps.Close()
		}
	}
	if !d.Features.TPBTF && d.cfg.DropHook == "tp_btf" {
		return fmt.Errorf("attach tp_btf/kfree_skb: %w", errBTF)
	}
	if !d.Features.TPBTF {
		d.Features.Detail["tp_btf"] = "off: " + errBTF.Error()
		var tpObjs dropTP
		if err := spec.LoadAndAssign(&tpObjs, opts); err != nil {
			return fmt.Errorf("load kfree_skb tracepoint program (tp_btf failed: %v): %w", errBTF, err)
		}
		var l link.Link
		err := withTracefs(func() (err error) {
			l, err = link.Tracepoint("skb", "kfree_skb", tpObjs.Prog, nil)
			return err
		})
		if err != nil {
			tpObjs.Prog.Close()
			tpObjs.DropMaps.Close()
			return fmt.Errorf("attach skb:kfree_skb tracepoint (tp_btf failed: %v): %w", errBTF, err)
		}
		d.Drop, d.dropProg = &tpObjs.DropMaps, tpObjs.Prog
		d.links = append(d.links, l)
	}
	d.Features.Drops = true
	return d.putReasonFlags(selected)
}

// putReasonFlags fills the drop program's reason table: which reasons are
// reported (--drop-reasons) and which mean the packet never arrived (every
// class but teardown, see internal/dropclass), whether reported or not.
func (d *Datapath) putReasonFlags(reported []uint32) error {
	flags := map[uint32]uint8{}
	for _, name := range d.Reasons.Names() {
		n, _ := d.Reasons.Number(name)
		if c := dropclass.Of(name); c.Undelivered() && name != "NOT_DROPPED_YET" {
			flags[n] |= uint8(bpf.DropReasonFlagREASON_UNDELIVERED)
		}
	}
	for _, r := range reported {
		flags[r] |= uint8(bpf.DropReasonFlagREASON_REPORT)
	}
	for r, f := range flags {
		if r >= d.Drop.Reasons.MaxEntries() {
			continue // the program reports and counts these itself
		}
		if err := d.Drop.Reasons.Put(r, f); err != nil {
			return fmt.Errorf("set flags of drop reason %s: %w", d.Reasons.Name(r), err)
		}
	}
	return nil
}

// withTracefs runs fn with tracefs reachable: `ip netns exec` and many
// containers mount a fresh /sys without it. A tracefs mounted here is
// unmounted again when fn returns (an attached tracepoint does not need it).
func withTracefs(fn func() error) error {
	for _, p := range []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"} {
		if _, err := os.Stat(p); err == nil {
			return fn()
		}
	}
	const mnt = "/sys/kernel/tracing"
	if err := unix.Mount("tracefs", mnt, "tracefs", 0, ""); err != nil {
		return fn() // let the library say what is missing
	}
	defer unix.Unmount(mnt, 0)
	return fn()
}

// attachLocalOut counts what the node sends at netfilter LOCAL_OUT, IPv4
// and IPv6.
func (d *Datapath) attachLocalOut() error {
	for _, fam := range []link.NetfilterProtocolFamily{link.NetfilterProtoIPv4, link.NetfilterProtoIPv6} {
		l, err := link.AttachNetfilter(link.NetfilterOptions{
			Program:        d.Flow.TrawlFlowLocalOut,
			ProtocolFamily: fam,
			Hook:           link.NetfilterInetLocalOut,
			Priority:       d.cfg.LocalOutPriority,
		})
		if err != nil {
			return fmt.Errorf("attach netfilter LOCAL_OUT link (family %d): %w", fam, err)
		}
		d.links = append(d.links, l)
	}
	d.Features.NetfilterLink = true
	return nil
}

// DNSPorts are the ports whose DNS messages the flow program copies (empty:
// DNS capture is off).
func (d *Datapath) DNSPorts() []uint16 { return d.cfg.DNSPorts }

// Run follows link events and attaches to matching interfaces that appear,
// until ctx is done.
func (d *Datapath) Run(ctx context.Context) error {
	return d.watchLinks(ctx)
}

// Close detaches everything and frees the programs and maps.
func (d *Datapath) Close() error {
	var errs []error
	d.mu.Lock()
	d.closed = true
	for idx, a := range d.ifaces {
		if err := a.detach(); err != nil {
			errs = append(errs, err)
		}
		delete(d.ifaces, idx)
	}
	d.mu.Unlock()
	for _, l := range d.links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	d.links = nil
	for _, l := range d.retransLinks {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	d.retransLinks = nil
	if d.dropProg != nil {
		d.dropProg.Close()
		d.Drop.Close()
		d.dropProg = nil
	}
	if d.Retrans != nil {
		d.Retrans.Close()
		d.Retrans = nil
	}
	d.Flow.Close()
	return errors.Join(errs...)
}
