/* Shared definitions of Trawl's eBPF programs: the flow tuple, the counter
 * indexes and a small token bucket. Each program has its own maps; only the
 * layouts are shared, so user space decodes them with one set of generated
 * types per object (bpf2go -type). */
#ifndef TRAWL_COMMON_H
#define TRAWL_COMMON_H

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_AH_ 51
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_DSTOPTS_ 60
#define IPPROTO_SCTP_ 132

#define TCP_FLAG_FIN 0x001
#define TCP_FLAG_SYN 0x002
#define TCP_FLAG_RST 0x004
#define TCP_FLAG_PSH 0x008
#define TCP_FLAG_ACK 0x010
#define TCP_FLAG_URG 0x020
#define TCP_FLAG_ECE 0x040
#define TCP_FLAG_CWR 0x080
#define TCP_FLAG_NS 0x100

/* Who a packet is, independent of where it was seen. Addresses are in
 * network order; IPv4 uses the first 4 bytes. Ports are in host order; for
 * ICMP, sport holds the type and dport the code. */
struct flow_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family; /* 4 or 6 */
	__u8 pad[2];
};

/* The flow aggregation map, shared by flow.c (which counts packets) and
 * drop.c (which takes the packets the kernel drops later back out of
 * FORWARDED). Keyed by the tuple alone, so the drop program finds the entry
 * without knowing where the packet entered; the interface and hook that own
 * the totals live in the value. */
struct flow_key {
	struct flow_tuple tuple;
};

enum hook {
	HOOK_INGRESS = 0,
	HOOK_EGRESS = 1,
};

struct flow_agg {
	/* Written by flow.c on every packet (one cache line's worth). */
	__u64 first_ns; /* CLOCK_MONOTONIC */
	__u64 last_ns;
	__u64 packets; /* seen at the hook that owns the totals */
	__u64 bytes;   /* L3 length; GSO packets count every segment's headers */
	/* Address of the first packet's sk_buff while its fate is unknown:
	 * drop.c sets first_dropped when it frees that very skb. flow.c clears
	 * it when a later packet of the flow comes in the same (reused) skb,
	 * which proves the first one was freed already. */
	__u64 first_skb;
	__u32 tcp_flags;       /* OR over all packets */
	__u32 first_tcp_flags; /* of the first packet: tells SYN from SYN-ACK */
	__u32 ifindex;         /* where the first packet was counted */
	__u8 hook;             /* enum hook */
	__u8 hs_wait;          /* SYN-ACK seen, this client entry's first ACK is next (tcp.h) */
	__u8 answered;         /* a SYN-ACK or RST came back for this client entry (tcp.h) */
	__u8 pad;
	__u32 zero_windows;    /* zero-window advertisements (tcp.h) */
	/* 64 bytes between the two parts keep them on separate cache lines
	 * wherever the value starts: a flood of drops on one
	 * CPU must not bounce the line the forwarding CPU counts in. */
	__u8 pad_line[64];

	/* Written by drop.c: of the packets seen, those dropped later on the
	 * node for a reason that means they never arrived. FORWARDED = seen -
	 * dropped. */
	__u64 drop_packets;
	__u64 drop_bytes;
	/* Where and why the flow's first drop happened, and the later drops
	 * exactly like it (same reason, interface, namespace, socket): those
	 * are reported from here, which spares a flood of drops the drop map.
	 * The first drop itself goes through the drop map (and its instant
	 * event), like every drop that differs from it. */
	__u64 same_packets;
	__u64 same_bytes;
	__u32 drop_reason;  /* kernel reason of the first drop */
	__u32 drop_ifindex;
	__u32 drop_netns;
	__u8 drop_has_sk;
	__u8 first_dropped; /* the first packet was dropped: its new-flow event is DROPPED */
	__u8 pad2[2];

	/* TCP health, written rarely: on handshake packets (flow.c, tcp.h).
	 * The handshake is timed in the client's (SYN) entry; CLOCK_MONOTONIC.
	 * Retransmits are not here: tcp_retrans.c records them for the agent,
	 * which adds them to the flow. */
	__u64 syn_ns;    /* the latest SYN */
	__u64 synack_ns; /* client's entry: the first SYN-ACK answering it; server's: its latest SYN-ACK */
	__u64 ack_ns;    /* the first ACK after it: the handshake is complete */
};

#define FLOWS_MAP                                                      \
	struct {                                                       \
		__uint(type, BPF_MAP_TYPE_HASH);                       \
		__uint(max_entries, 131072); /* resized by the loader */ \
		__type(key, struct flow_key);                          \
		__type(value, struct flow_agg);                        \
	} flows SEC(".maps");

/* Flags of a drop reason in drop.c's reason table, set by user space from
 * --drop-reasons and internal/dropclass. */
enum reason_flag {
	REASON_REPORT = 1,      /* emit DROP records */
	REASON_UNDELIVERED = 2, /* the packet never arrived: take it out of FORWARDED */
};
#define REASONS_MAX 1024 /* reasons at or above it (subsystem bits) get both */

/* Indexes of each program's per-CPU counters array. Not every program uses
 * every slot. */
enum counter {
	CNT_MAP_FULL = 0,      /* aggregation map had no room for a new key */
	CNT_RINGBUF_FULL = 1,  /* ring buffer reserve failed */
	CNT_RATE_LIMITED = 2,  /* instant event suppressed by the token bucket */
	CNT_MALFORMED = 3,     /* header fields that make no sense (IHL < 5, bad lengths) */
	CNT_TRUNCATED = 4,     /* packet shorter than the headers it announces */
	CNT_NOT_IP = 5,        /* not IPv4/IPv6: ignored */
	CNT_EVENTS = 6,        /* instant events sent */
	CNT_NEW_CONNTRACK = 7, /* new conntrack entries seen (netfilter program) */
	CNT_FILTERED = 8,      /* drop with a reason the agent was told to ignore */
	CNT_DNS_EVENTS = 9,        /* DNS messages sent to user space (flow program) */
	CNT_DNS_RATE_LIMITED = 10, /* DNS messages suppressed by their token bucket */
	CNT_DNS_RINGBUF_FULL = 11, /* DNS ring buffer reserve failed */
	CNT_HANDSHAKES = 12,       /* TCP handshakes timed (first ACK after a SYN-ACK) */
	CNT_MAX = 13,
};

/* Instant event kinds carried in ring buffer records. */
enum event_kind {
	EV_FLOW_NEW = 1,
	EV_FLOW_CLOSE = 2,
	EV_DROP = 3,
};

struct rate_state {
	__u64 last_ns;
	__u64 tokens;
};

#define COUNTERS_MAP                                                   \
	struct {                                                       \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);               \
		__uint(max_entries, CNT_MAX);                          \
		__type(key, __u32);                                    \
		__type(value, __u64);                                  \
	} counters SEC(".maps");                                       \
	static __always_inline void count(__u32 idx)                   \
	{                                                              \
		__u64 *c = bpf_map_lookup_elem(&counters, &idx);       \
		if (c)                                                 \
			(*c)++; /* per-CPU slot: no atomics needed */  \
	}

/* Token bucket kept per CPU so it needs no locking; the effective limit is
 * rate * number of CPUs. rate == 0 means unlimited. */
static __always_inline int rate_allow(struct rate_state *st, __u64 now, __u64 rate, __u64 burst)
{
	if (rate == 0)
		return 1;
	__u64 elapsed = now - st->last_ns;
	if (elapsed >= 1000000000ULL) {
		st->tokens = burst;
		st->last_ns = now;
	} else {
		__u64 add = elapsed * rate / 1000000000ULL;
		if (add > 0) {
			st->tokens += add;
			if (st->tokens > burst)
				st->tokens = burst;
			/* Only advance the clock when tokens were added, so
			 * fractions of a token are not lost between packets. */
			st->last_ns = now;
		}
	}
	if (st->tokens == 0)
		return 0;
	st->tokens--;
	return 1;
}

#endif
