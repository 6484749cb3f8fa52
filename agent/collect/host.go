package collect

import (
	"net"
	"net/netip"

	"github.com/trawl-dev/trawl/agent/bpf"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Hubble's reserved identity of the node itself (its own network namespace).
const identityHost = 1

// refreshLocal re-reads the addresses of the agent's network namespace (the
// node's): records to or from them are the host, never the world.
func (c *Collector) refreshLocal() {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		c.cfg.Log.Warn("read the node's addresses", "err", err)
		return
	}
	set := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(p.IP); ok {
				set[ip.Unmap()] = true
			}
		}
	}
	c.local.Store(&set)
}

// markHost labels the endpoints of a record that are the node's own
// addresses as reserved:host; the relay keeps that label.
func (c *Collector) markHost(f *flowv1.Flow, t bpf.FlowFlowTuple) {
	set := c.local.Load()
	if set == nil {
		return
	}
	if (*set)[addrOf(t.Family, t.Saddr)] {
		f.Source = &flowv1.Endpoint{Identity: identityHost, Labels: []string{"reserved:host"}}
	}
	if (*set)[addrOf(t.Family, t.Daddr)] {
		f.Destination = &flowv1.Endpoint{Identity: identityHost, Labels: []string{"reserved:host"}}
	}
}
