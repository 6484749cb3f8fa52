// Package dropclass sorts the kernel's drop reasons into the few classes a
// user acts on. It is the one table of them: the agent uses it to decide
// which drops take packets out of FORWARDED records, and the relay, the CLI,
// the metrics, the dashboards and the alerts filter on the class it gives.
//
// The kernel's reason names (enum skb_drop_reason) grow with every release;
// a name this table does not know gets Other, which is shown and counted
// like an actionable drop: hiding a drop nobody classified would be the
// unsafe default.
package dropclass

import (
	"fmt"
	"sort"
	"strings"
)

// Class is what kind of drop a kernel reason is.
type Class string

const (
	// Policy: a filter decided (netfilter, an LSM, a cgroup or tc program,
	// IPsec policy). The relay tells NetworkPolicy drops apart.
	Policy Class = "policy"
	// NoSocket: nothing listens (closed port, unknown protocol).
	NoSocket Class = "no-socket"
	// Overload: a queue or memory limit was hit (socket buffers, backlogs,
	// qdiscs, CPU backlog, rings, neighbour queue).
	Overload Class = "overload"
	// Malformed: bad checksums, truncated or invalid headers, fragments
	// that cannot be reassembled.
	Malformed Class = "malformed"
	// Routing: no route, a martian or reverse-path-filtered source, a
	// neighbour that did not answer, a device that is down.
	Routing Class = "routing"
	// Teardown: protocol-normal frees of packets that had reached their
	// socket: a receive queue purged at close, old or duplicate TCP segments,
	// segments for a closing or reset connection, packet-socket filters.
	// Counted, never alerted on, hidden from the default DROPPED view.
	Teardown Class = "teardown"
	// Other: a reason this table does not know (a newer kernel).
	Other Class = "other"
)

// All lists every class, in the order they are documented.
var All = []Class{Policy, NoSocket, Overload, Malformed, Routing, Teardown, Other}

// Actionable tells whether drops of this class are worth a person's
// attention: shown by default, on the dashboards' drop panels and in the
// drop alerts.
func (c Class) Actionable() bool { return c != Teardown }

// Undelivered tells whether a packet dropped for a reason of this class
// never reached its destination. Teardown drops free packets that had
// already been delivered to a local socket, so they stay in FORWARDED totals.
func (c Class) Undelivered() bool { return c != Teardown }

// reasons maps kernel reason names (without the SKB_DROP_REASON_ prefix, as
// agent/dropreason names them) to their class.
var reasons = map[string]Class{
	// policy
	"NETFILTER_DROP": Policy, "SECURITY_HOOK": Policy, "BPF_CGROUP_EGRESS": Policy,
	"XFRM_POLICY": Policy, "TC_INGRESS": Policy, "TC_EGRESS": Policy, "XDP": Policy,
	"TCP_MINTTL": Policy, "PSP_INPUT": Policy, "PSP_OUTPUT": Policy,

	// no-socket
	"NO_SOCKET": NoSocket, "IP_NOPROTO": NoSocket, "SOCKET_CLOSE": NoSocket,

	// overload
	"SOCKET_RCVBUFF": Overload, "SOCKET_BACKLOG": Overload, "PROTO_MEM": Overload,
	"TCP_LISTEN_OVERFLOW": Overload, "TCP_ZEROWINDOW": Overload, "TCP_OFO_QUEUE_PRUNE": Overload,
	"QDISC_DROP": Overload, "QDISC_OVERLIMIT": Overload, "QDISC_CONGESTED": Overload,
	"CAKE_FLOOD": Overload, "FQ_BAND_LIMIT": Overload, "FQ_HORIZON_LIMIT": Overload,
	"FQ_FLOW_LIMIT": Overload, "DUALPI2_STEP_DROP": Overload, "CPU_BACKLOG": Overload,
	"FULL_RING": Overload, "NOMEM": Overload, "NEIGH_QUEUEFULL": Overload,
	"PFMEMALLOC": Overload, "SKB_UCOPY_FAULT": Overload, "SKB_GSO_SEG": Overload,
	"SKB_RX_HEADROOM": Overload,

	// malformed
	"PKT_TOO_SMALL": Malformed, "TCP_CSUM": Malformed, "UDP_CSUM": Malformed,
	"IP_CSUM": Malformed, "ICMP_CSUM": Malformed, "SKB_CSUM": Malformed,
	"IP_INHDR": Malformed, "HDR_TRUNC": Malformed, "INVALID_PROTO": Malformed,
	"DEV_HDR": Malformed, "TCP_FLAGS": Malformed, "TCP_INVALID_SYN": Malformed,
	"TCP_AUTH_HDR": Malformed, "TCP_MD5NOTFOUND": Malformed, "TCP_MD5UNEXPECTED": Malformed,
	"TCP_MD5FAILURE": Malformed, "TCP_AONOTFOUND": Malformed, "TCP_AOUNEXPECTED": Malformed,
	"TCP_AOKEYNOTFOUND": Malformed, "TCP_AOFAILURE": Malformed,
	"UNICAST_IN_L2_MULTICAST": Malformed, "MAC_INVALID_SOURCE": Malformed,
	"MAC_IEEE_MAC_CONTROL": Malformed, "PKT_TOO_BIG": Malformed, "DUP_FRAG": Malformed,
	"FRAG_REASM_TIMEOUT": Malformed, "FRAG_TOO_FAR": Malformed,
	"IPV6_BAD_EXTHDR": Malformed, "IPV6_TOO_MANY_EXTHDRS": Malformed,
	"IPV6_NDISC_FRAG": Malformed, "IPV6_NDISC_HOP_LIMIT": Malformed,
	"IPV6_NDISC_BAD_CODE": Malformed, "IPV6_NDISC_BAD_OPTIONS": Malformed,
	"VXLAN_INVALID_HDR": Malformed, "CAN_RX_INVALID_FRAME": Malformed,
	"CANFD_RX_INVALID_FRAME": Malformed, "CANXL_RX_INVALID_FRAME": Malformed,
	"TC_COOKIE_ERROR": Malformed,

	// routing
	"OTHERHOST": Routing, "IP_RPFILTER": Routing, "IP_OUTNOROUTES": Routing,
	"IP_INNOROUTES": Routing, "IP_INADDRERRORS": Routing, "IP_LOCAL_SOURCE": Routing,
	"IP_INVALID_SOURCE": Routing, "IP_LOCALNET": Routing, "IP_INVALID_DEST": Routing,
	"IPV6DISABLED": Routing, "NEIGH_CREATEFAIL": Routing, "NEIGH_FAILED": Routing,
	"NEIGH_DEAD": Routing, "NEIGH_HH_FILLFAIL": Routing, "UNHANDLED_PROTO": Routing,
	"DEV_READY": Routing, "NO_TX_TARGET": Routing, "VXLAN_VNI_NOT_FOUND": Routing,
	"VXLAN_ENTRY_EXISTS": Routing, "TUNNEL_TXINFO": Routing, "IP_TUNNEL_ECN": Routing,
	"LOCAL_MAC": Routing, "ARP_PVLAN_DISABLE": Routing, "BRIDGE_INGRESS_STP_STATE": Routing,
	"IPV6_NDISC_NS_OTHERHOST": Routing, "RECURSION_LIMIT": Routing,
	"TC_CHAIN_NOTFOUND": Routing, "TC_RECLASSIFY_LOOP": Routing,

	// teardown and protocol-normal
	"QUEUE_PURGE": Teardown, "TCP_CLOSE": Teardown, "TCP_RESET": Teardown,
	"TCP_ABORT_ON_DATA": Teardown, "TCP_OLD_DATA": Teardown, "TCP_OLD_SEQUENCE": Teardown,
	"TCP_OLD_ACK": Teardown, "TCP_TOO_OLD_ACK": Teardown, "TCP_ACK_UNSENT_DATA": Teardown,
	"TCP_INVALID_SEQUENCE": Teardown, "TCP_INVALID_END_SEQUENCE": Teardown,
	"TCP_INVALID_ACK_SEQUENCE": Teardown, "TCP_OVERWINDOW": Teardown,
	"TCP_OFOMERGE": Teardown, "TCP_OFO_DROP": Teardown, "TCP_FASTOPEN": Teardown,
	"TCP_RFC7323_PAWS": Teardown, "TCP_RFC7323_PAWS_ACK": Teardown,
	"TCP_RFC7323_TW_PAWS": Teardown, "TCP_RFC7323_TSECR": Teardown,
	"UNIX_DISCONNECT": Teardown, "UNIX_SKIP_OOB": Teardown, "SOCKET_FILTER": Teardown,
	"TAP_FILTER": Teardown, "TAP_TXFILTER": Teardown, "PACKET_SOCK_ERROR": Teardown,
	"NOT_SPECIFIED": Teardown, "CONSUMED": Teardown, "NOT_DROPPED_YET": Teardown,
}

// Of returns the class of a kernel reason name (case-insensitive, with or
// without the SKB_DROP_REASON_ prefix). Unknown names are Other.
func Of(reason string) Class {
	name := strings.TrimPrefix(strings.ToUpper(reason), "SKB_DROP_REASON_")
	if c, ok := reasons[name]; ok {
		return c
	}
	return Other
}

// Parse reads a class name as users type it ("no-socket", "NO_SOCKET",
// "noSocket" all work).
func Parse(s string) (Class, error) {
	norm := strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(strings.TrimSpace(s)))
	for _, c := range All {
		if strings.ReplaceAll(string(c), "-", "") == norm {
			return c, nil
		}
	}
	names := make([]string, len(All))
	for i, c := range All {
		names[i] = string(c)
	}
	return "", fmt.Errorf("unknown drop class %q (one of %s)", s, strings.Join(names, ", "))
}

// Reasons returns the reason names the table puts in class c, sorted.
func Reasons(c Class) []string {
	var out []string
	for name, cl := range reasons {
		if cl == c {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
