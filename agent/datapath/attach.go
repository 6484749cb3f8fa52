package datapath

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Role says what an interface is to the node, which decides the direction
// of what is seen on it.
type Role int

const (
	// RoleNode is an interface of the node itself (NIC, uplink): packets
	// received are INGRESS, packets sent are EGRESS.
	RoleNode Role = iota
	// RolePod is the host side of a pod's veth: packets the host receives
	// on it leave the pod (the pod's EGRESS); packets the host sends into it
	// enter the pod (INGRESS).
	RolePod
)

// Interface is a watched interface.
type Interface struct {
	Index int
	Name  string
	Role  Role
}

type attachment struct {
	Interface
	links       []link.Link
	filters     []*netlink.BpfFilter
	ownQdisc    *netlink.GenericQdisc // the clsact qdisc we created, if any
	watchedKeys bool
	flowMaps    *ebpf.Map
}

// tcFilterHandle and tcFilterPriority identify Trawl's tc filters.
const (
	tcFilterHandle   = 0x7472 // "tr"
	tcFilterPriority = 1
)

func (a *attachment) detach() error {
	var errs []error
	for _, l := range a.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach tcx from %s: %w", a.Name, err))
		}
	}
	a.links = nil
	for _, f := range a.filters {
		if err := netlink.FilterDel(f); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete tc filter on %s: %w", a.Name, err))
		}
	}
	a.filters = nil
	if a.ownQdisc != nil {
		if err := netlink.QdiscDel(a.ownQdisc); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete clsact qdisc on %s: %w", a.Name, err))
		}
		a.ownQdisc = nil
	}
	if a.watchedKeys && a.flowMaps != nil {
		key := uint32(a.Index)
		if err := a.flowMaps.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("forget %s: %w", a.Name, err))
		}
	}
	return errors.Join(errs...)
}

// isGone tells errors that mean the interface (and so its filters) is gone.
func isGone(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)
}

// Interfaces returns the watched interfaces by index.
func (d *Datapath) Interfaces() map[int]Interface {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[int]Interface, len(d.ifaces))
	for i, a := range d.ifaces {
		out[i] = a.Interface
	}
	return out
}

// defaultRouteLinks returns the indexes of interfaces carrying a default route.
func defaultRouteLinks() map[int]bool {
	out := map[int]bool{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteList(nil, fam)
		if err != nil {
			continue
		}
		for _, r := range routes {
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			if r.LinkIndex > 0 {
				out[r.LinkIndex] = true
			}
			for _, nh := range r.MultiPath {
				out[nh.LinkIndex] = true
			}
		}
	}
	return out
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, name); ok {
			return true
		}
	}
	return false
}

// selectLink decides whether to watch a link and in which role.
func (d *Datapath) selectLink(l netlink.Link, defaults map[int]bool) (Role, bool) {
	attrs := l.Attrs()
	if attrs.Name == "lo" {
		return 0, false
	}
	podLike := l.Type() == "veth" || l.Type() == "netkit" || matchAny(DefaultPodInterfaces, attrs.Name)
	role := RoleNode
	if podLike && !defaults[attrs.Index] {
		role = RolePod
	}
	if len(d.cfg.Interfaces) > 0 {
		return role, matchAny(d.cfg.Interfaces, attrs.Name)
	}
	if defaults[attrs.Index] {
		return RoleNode, true
	}
	return role, matchAny(DefaultPodInterfaces, attrs.Name)
}

// Sync attaches to every matching interface not attached yet.
func (d *Datapath) Sync() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	defaults := defaultRouteLinks()
	var errs []error
	for _, l := range links {
		if err := d.consider(l, defaults); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Datapath) consider(l netlink.Link, defaults map[int]bool) error {
	role, ok := d.selectLink(l, defaults)
	if !ok {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil // an attach now would outlive Close (a tc qdisc does)
	}
	if _, done := d.ifaces[l.Attrs().Index]; done {
		return nil
	}
	a := &attachment{Interface: Interface{Index: l.Attrs().Index, Name: l.Attrs().Name, Role: role}}
	if err := d.attach(a); err != nil {
		a.detach()
		if isGone(err) {
			return nil // vanished while we attached: nothing to watch
		}
		return err
	}
	d.ifaces[a.Index] = a
	d.log.Info("watching interface", "name", a.Name, "index", a.Index, "role", roleName(a.Role))
	return nil
}

func roleName(r Role) string {
	if r == RolePod {
		return "pod"
	}
	return "node"
}

// hook is where the flow program runs on a watched interface, as tcx
// attach type or tc clsact parent.
type hook struct {
	prog   *ebpf.Program
	tcx    ebpf.AttachType
	parent uint32
	name   string
}

// hooks are ingress, and egress only when it counts what the node sends.
func (d *Datapath) hooks() []hook {
	hs := []hook{{d.Flow.TrawlFlowIngress, ebpf.AttachTCXIngress, netlink.HANDLE_MIN_INGRESS, "trawl_ingress"}}
	if d.TCXEgress {
		hs = append(hs, hook{d.Flow.TrawlFlowEgress, ebpf.AttachTCXEgress, netlink.HANDLE_MIN_EGRESS, "trawl_egress"})
	}
	return hs
}

func (d *Datapath) attach(a *attachment) error {
	key, one := uint32(a.Index), uint8(1)
	if err := d.Flow.Watched.Put(key, one); err != nil {
		return fmt.Errorf("mark %s watched: %w", a.Name, err)
	}
	a.watchedKeys, a.flowMaps = true, d.Flow.Watched
	if d.Features.TCX {
		for _, h := range d.hooks() {
			// Head: see packets before other programs can redirect them.
			l, err := link.AttachTCX(link.TCXOptions{Interface: a.Index, Program: h.prog, Attach: h.tcx, Anchor: link.Head()})
			if err != nil {
				return fmt.Errorf("attach tcx to %s: %w", a.Name, err)
			}
			a.links = append(a.links, l)
		}
		return nil
	}
	return d.attachTC(a)
}

// attachTC is the fallback for kernels without tcx: a clsact qdisc (created
// only when missing, and then removed on detach) with direct-action filters.
func (d *Datapath) attachTC(a *attachment) error {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: a.Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	switch err := netlink.QdiscAdd(qdisc); {
	case err == nil:
		a.ownQdisc = qdisc
	case errors.Is(err, unix.EEXIST):
	default:
		return fmt.Errorf("add clsact qdisc to %s: %w", a.Name, err)
	}
	for _, p := range d.hooks() {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: a.Index,
				Parent:    p.parent,
				Handle:    tcFilterHandle,
				Protocol:  unix.ETH_P_ALL,
				Priority:  tcFilterPriority,
			},
			Fd:           p.prog.FD(),
			Name:         p.name,
			DirectAction: true,
		}
		if err := netlink.FilterAdd(f); err != nil {
			return fmt.Errorf("add tc filter to %s: %w", a.Name, err)
		}
		a.filters = append(a.filters, f)
	}
	return nil
}

// watchLinks attaches to interfaces as they appear and forgets the ones
// that go away.
func (d *Datapath) watchLinks(ctx context.Context) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	subErr := make(chan error, 1)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case subErr <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("subscribe to link events: %w", err)
	}
	// Catch links created between Open and the subscription.
	if err := d.Sync(); err != nil {
		d.log.Warn("attach to interfaces", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-subErr:
			return fmt.Errorf("link events: %w", err)
		case u, ok := <-updates:
			if !ok {
				return errors.New("link event subscription closed")
			}
			idx := int(u.Index)
			if u.Header.Type == unix.RTM_DELLINK {
				d.mu.Lock()
				if a, ok := d.ifaces[idx]; ok {
					delete(d.ifaces, idx)
					a.detach()
					d.log.Info("interface gone", "name", a.Name, "index", idx)
				}
				d.mu.Unlock()
				continue
			}
			if u.Link == nil {
				continue
			}
			if err := d.consider(u.Link, defaultRouteLinks()); err != nil {
				d.log.Warn("attach to new interface", "name", u.Link.Attrs().Name, "err", err)
			}
		}
	}
}
