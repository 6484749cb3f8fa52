package datapath

import (
	"testing"

	"github.com/vishvananda/netlink"
)

func TestInterfaceSelectionAndRoles(t *testing.T) {
	veth := func(name string, idx int) netlink.Link {
		return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, Index: idx}}
	}
	dev := func(name string, idx int) netlink.Link {
		return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name, Index: idx}}
	}
	defaults := map[int]bool{2: true, 9: true}
	tests := []struct {
		name     string
		globs    []string
		link     netlink.Link
		want     bool
		wantRole Role
	}{
		{"a pod veth is watched as a pod interface", nil, veth("veth1234", 5), true, RolePod},
		{"a Calico interface is watched as a pod interface", nil, veth("cali0a1b", 6), true, RolePod},
		{"the default-route NIC is watched as a node interface", nil, dev("eth0", 2), true, RoleNode},
		{"a veth carrying the default route is the node's uplink", nil, veth("tbn01", 9), true, RoleNode},
		{"another NIC is not watched by default", nil, dev("eth1", 3), false, RoleNode},
		{"loopback is never watched", []string{"*"}, dev("lo", 1), false, RoleNode},
		{"globs replace the default", []string{"eth*"}, dev("eth1", 3), true, RoleNode},
		{"globs can leave pod veths out", []string{"eth*"}, veth("veth1234", 5), false, RolePod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &Datapath{cfg: Config{Interfaces: tt.globs}}
			role, ok := d.selectLink(tt.link, defaults)
			if ok != tt.want || (ok && role != tt.wantRole) {
				t.Fatalf("selectLink = (%v, %v), want (%v, %v)", role, ok, tt.wantRole, tt.want)
			}
		})
	}
}

func TestConfigValidateNamesTheBadValue(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults are valid", Config{}, true},
		{"tc mode is valid", Config{AttachMode: "tc", DropHook: "tracepoint"}, true},
		{"an unknown attach mode is refused", Config{AttachMode: "xdp"}, false},
		{"an unknown drop hook is refused", Config{DropHook: "kprobe"}, false},
		{"a malformed glob is refused", Config{Interfaces: []string{"veth["}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
