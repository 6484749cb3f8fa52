package datapath

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf/btf"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Features says which kernel mechanisms the datapath uses. Each has a
// fallback or is optional; the agent logs them at startup and reports them
// in its heartbeat.
type Features struct {
	BTF bool
	// TCX is true when programs attach with tcx links; false means the
	// tc clsact fallback.
	TCX bool
	// TPBTF is true when drops come from tp_btf; false means the classic
	// tracepoint (or no drops at all when Drops is false).
	TPBTF bool
	// Drops is true when a kfree_skb program is attached.
	Drops bool
	// NetfilterLink is true when the conntrack program is attached.
	NetfilterLink bool
	// TCPRetransmit is true when retransmitted segments are counted
	// (tp_btf on tcp:tcp_retransmit_skb and tcp:tcp_retransmit_synack).
	TCPRetransmit bool
	// Why a feature is off or which fallback is used, by feature name.
	Detail map[string]string
}

// Proto renders the features for the heartbeat and the logs.
func (f Features) Proto() []*flowv1.KernelFeature {
	d := func(name string) string { return f.Detail[name] }
	return []*flowv1.KernelFeature{
		{Name: "btf", Enabled: f.BTF, Detail: d("btf")},
		{Name: "tcx", Enabled: f.TCX, Detail: d("tcx")},
		{Name: "tc", Enabled: !f.TCX, Detail: d("tc")},
		{Name: "tp_btf", Enabled: f.Drops && f.TPBTF, Detail: d("tp_btf")},
		{Name: "tracepoint", Enabled: f.Drops && !f.TPBTF, Detail: d("tracepoint")},
		{Name: "netfilter_link", Enabled: f.NetfilterLink, Detail: d("netfilter_link")},
		{Name: "tcp_retransmit", Enabled: f.TCPRetransmit, Detail: d("tcp_retransmit")},
	}
}

// kernelHasAttachType reports whether the running kernel's enum
// bpf_attach_type has a value: a cheap, side-effect free feature probe.
func kernelHasAttachType(spec *btf.Spec, name string) bool {
	var enum *btf.Enum
	if err := spec.TypeByName("bpf_attach_type", &enum); err != nil {
		return false
	}
	for _, v := range enum.Values {
		if v.Name == name {
			return true
		}
	}
	return false
}

// ErrPrivileges is returned when the process lacks the capabilities to load
// and attach eBPF programs.
var ErrPrivileges = errors.New("needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_ADMIN)")

// ErrNoBTF is returned when the kernel exposes no BTF.
var ErrNoBTF = errors.New("kernel BTF not found at /sys/kernel/btf/vmlinux: needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")

const (
	capNetAdmin = 12
	capSysAdmin = 21
	capBPF      = 39
)

// checkPrivileges reads the effective capabilities of this process, so a
// missing privilege is one clear line instead of an EPERM deep in a load.
func checkPrivileges() error {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return fmt.Errorf("parse CapEff %q: %w", hex, err)
		}
		has := func(c uint) bool { return caps&(1<<c) != 0 }
		if !has(capNetAdmin) || !(has(capBPF) || has(capSysAdmin)) {
			return ErrPrivileges
		}
		return nil
	}
	return fmt.Errorf("no CapEff line in /proc/self/status")
}
