// Package testbed builds a routed, Calico-like node out of network
// namespaces, for tests, benchmarks and the demo.
//
// The node is its own network namespace (the agent runs inside it). Each pod
// is a namespace with eth0 holding a /32 from the bed's pod CIDR
// (10.244.<slot>.0/24), default route via 169.254.1.1; the host side of its
// veth lives in the node namespace with proxy ARP and a /32 route, so
// pod-to-pod traffic is routed through the node. The node reaches the root
// namespace over a veth on 10.250.<slot>.0/30 (root .1, node .2, the node's
// default route), so it can talk to a relay or ClickHouse running there.
//
// Every bed takes a free slot (a flock held for its lifetime), so beds of
// parallel test binaries get distinct names and addresses. Close removes
// everything it created.
package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// StateDir holds the slot and conntrack lock files.
var StateDir = "/run/trawl-testbed"

// Config of a bed.
type Config struct {
	// Pods to create, by name (short, [a-z0-9-]). Default: "a", "b".
	Pods []string
	// NoUplink skips the veth to the root namespace.
	NoUplink bool
}

// Pod is a pod network namespace.
type Pod struct {
	*Netns
	// PodName is the name given in Config.Pods.
	PodName string
	// IP is the pod's address (a /32 on eth0).
	IP netip.Addr
	// HostVeth is the host side of the pod's veth, in the node namespace.
	HostVeth string
}

// Bed is one node with its pods.
type Bed struct {
	// ID is short and unique among live beds; it is part of every name.
	ID string
	// Slot is the x of 10.244.x.0/24 and 10.250.x.0/30.
	Slot    int
	Node    *Netns
	Pods    []*Pod
	PodCIDR netip.Prefix
	// RootAddr is the root namespace's end of the uplink (10.250.x.1);
	// services listening there are reachable from the node and pods.
	RootAddr netip.Addr
	// NodeAddr is the node's end of the uplink (10.250.x.2).
	NodeAddr netip.Addr
	// RootLink and NodeLink are the uplink interface names.
	RootLink, NodeLink string

	slotLock *os.File
	netns    []*Netns
}

// New builds a bed. On error, whatever was created is removed.
func New(ctx context.Context, cfg Config) (_ *Bed, err error) {
	if len(cfg.Pods) == 0 {
		cfg.Pods = []string{"a", "b"}
	}
	if len(cfg.Pods) > 200 {
		return nil, fmt.Errorf("testbed: %d pods: at most 200", len(cfg.Pods))
	}
	for _, p := range cfg.Pods {
		if p == "" || p == "node" || strings.ContainsAny(p, " /") || len(p) > 20 {
			return nil, fmt.Errorf("testbed: bad pod name %q", p)
		}
	}
	b := &Bed{}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if err := b.takeSlot(); err != nil {
		return nil, err
	}
	var rnd [2]byte
	rand.Read(rnd[:])
	b.ID = fmt.Sprintf("%02x%s", b.Slot, hex.EncodeToString(rnd[:]))
	b.PodCIDR = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(b.Slot), 0}), 24)
	b.RootAddr = netip.AddrFrom4([4]byte{10, 250, byte(b.Slot), 1})
	b.NodeAddr = netip.AddrFrom4([4]byte{10, 250, byte(b.Slot), 2})

	b.Node, err = b.addNetns(ctx, "trawl-"+b.ID+"-node")
	if err != nil {
		return nil, err
	}
	node := b.Node.Name
	steps := [][]string{
		{"ip", "-n", node, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	if !cfg.NoUplink {
		b.RootLink, b.NodeLink = "tbr"+b.ID, "tbn"+b.ID
		steps = append(steps,
			[]string{"ip", "link", "add", b.RootLink, "type", "veth", "peer", "name", b.NodeLink, "netns", node},
			[]string{"ip", "addr", "add", b.RootAddr.String() + "/30", "dev", b.RootLink},
			[]string{"ip", "link", "set", b.RootLink, "up"},
			[]string{"ip", "-n", node, "addr", "add", b.NodeAddr.String() + "/30", "dev", b.NodeLink},
			[]string{"ip", "-n", node, "link", "set", b.NodeLink, "up"},
			[]string{"ip", "-n", node, "route", "add", "default", "via", b.RootAddr.String()},
			[]string{"ip", "route", "add", b.PodCIDR.String(), "via", b.NodeAddr.String()},
		)
	}
	if err := runAll(ctx, steps); err != nil {
		return nil, err
	}
	for _, name := range cfg.Pods {
		if _, err := b.AddPod(ctx, name); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// AddPod adds a pod to a running bed, e.g. to test that an agent attaches
// to interfaces that appear after it started.
func (b *Bed) AddPod(ctx context.Context, name string) (*Pod, error) {
	if name == "" || name == "node" || strings.ContainsAny(name, " /") || len(name) > 20 || b.Pod(name) != nil {
		return nil, fmt.Errorf("testbed: bad or duplicate pod name %q", name)
	}
	if len(b.Pods) >= 200 {
		return nil, errors.New("testbed: at most 200 pods")
	}
	p, err := b.addPod(ctx, len(b.Pods), name)
	if err != nil {
		return nil, err
	}
	b.Pods = append(b.Pods, p)
	return p, nil
}

func (b *Bed) addPod(ctx context.Context, i int, name string) (*Pod, error) {
	ns, err := b.addNetns(ctx, "trawl-"+b.ID+"-"+name)
	if err != nil {
		return nil, err
	}
	p := &Pod{
		Netns:    ns,
		PodName:  name,
		IP:       netip.AddrFrom4([4]byte{10, 244, byte(b.Slot), byte(10 + i)}),
		HostVeth: fmt.Sprintf("veth%s%d", b.ID, i),
	}
	node, pod, ip := b.Node.Name, ns.Name, p.IP.String()
	err = runAll(ctx, [][]string{
		{"ip", "-n", pod, "link", "set", "lo", "up"},
		{"ip", "link", "add", p.HostVeth, "netns", node, "type", "veth", "peer", "name", "eth0", "netns", pod},
		{"ip", "-n", pod, "addr", "add", ip + "/32", "dev", "eth0"},
		{"ip", "-n", pod, "link", "set", "eth0", "up"},
		{"ip", "-n", pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"},
		{"ip", "-n", pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"},
		{"ip", "netns", "exec", node, "sysctl", "-qw",
			"net.ipv4.conf." + p.HostVeth + ".proxy_arp=1",
			// Without this the first packet of each pod waits ~0.8 s for ARP.
			"net.ipv4.neigh." + p.HostVeth + ".proxy_delay=0"},
		{"ip", "-n", node, "link", "set", p.HostVeth, "up"},
		{"ip", "-n", node, "route", "add", ip + "/32", "dev", p.HostVeth, "scope", "link"},
	})
	return p, err
}

// Pod returns a pod by name, or nil.
func (b *Bed) Pod(name string) *Pod {
	for _, p := range b.Pods {
		if p.PodName == name {
			return p
		}
	}
	return nil
}

// Close removes the namespaces (which removes their veths and routes) and
// frees the slot. It is safe to call more than once.
func (b *Bed) Close() error {
	var errs []error
	if b.RootLink != "" {
		// Deleting one end deletes the pair at once; deleting the node
		// namespace would remove it too, but asynchronously.
		if out, err := exec.Command("ip", "link", "del", b.RootLink).CombinedOutput(); err != nil &&
			!strings.Contains(string(out), "Cannot find device") {
			errs = append(errs, fmt.Errorf("delete %s: %v: %s", b.RootLink, err, out))
		}
		b.RootLink = ""
	}
	for i := len(b.netns) - 1; i >= 0; i-- {
		if err := b.netns[i].remove(); err != nil {
			errs = append(errs, err)
		}
	}
	b.netns = nil
	if b.slotLock != nil {
		b.slotLock.Close() // releases the flock
		b.slotLock = nil
	}
	return errors.Join(errs...)
}

func (b *Bed) addNetns(ctx context.Context, name string) (*Netns, error) {
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return nil, err
	}
	ns := &Netns{Name: name, Path: "/run/netns/" + name}
	b.netns = append(b.netns, ns)
	return ns, nil
}

// takeSlot locks a free slot file; the kernel drops the lock if the process
// dies, so crashed tests never leak slots.
func (b *Bed) takeSlot() error {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return fmt.Errorf("testbed state dir: %w", err)
	}
	const slots = 250
	startN, _ := rand.Int(rand.Reader, big.NewInt(slots))
	start := int(startN.Int64())
	for i := 0; i < slots; i++ {
		slot := 1 + (start+i)%slots
		f, err := os.OpenFile(filepath.Join(StateDir, fmt.Sprintf("slot-%d", slot)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return fmt.Errorf("testbed slot: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		if leftovers(slot) {
			// A crashed bed left namespaces behind on this slot's
			// addresses; skip it rather than collide.
			f.Close()
			continue
		}
		b.Slot, b.slotLock = slot, f
		return nil
	}
	return errors.New("testbed: no free slot (250 beds in use?)")
}

// leftovers reports whether the root namespace still routes the slot's pod
// CIDR (a bed that was not closed).
func leftovers(slot int) bool {
	out, err := exec.Command("ip", "route", "show", fmt.Sprintf("10.244.%d.0/24", slot)).Output()
	return err == nil && len(strings.TrimSpace(string(out))) > 0
}

func run(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func runAll(ctx context.Context, steps [][]string) error {
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}
