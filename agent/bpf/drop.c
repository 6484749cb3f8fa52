//go:build ignore

/* Packet drops with the kernel's reason, from skb:kfree_skb.
 *
 * Two entry points share one body: tp_btf (preferred) and the classic
 * tracepoint (fallback); the loader keeps one. User space flags each reason
 * in the `reasons` table: REASON_REPORT (it leaves out NOT_SPECIFIED and
 * CONSUMED by default) and REASON_UNDELIVERED (every class but teardown: the
 * packet never reached its destination).
 *
 * An undelivered drop of a packet that flow.c counted is added to that
 * flow's entry in the shared flows map, so user space reports as FORWARDED
 * only what was delivered. Reported drops are aggregated per (5-tuple,
 * reason, interface, netns) so a flood becomes counts. The first drop of a
 * key goes out at once through the ring buffer; every dropped packet is in
 * exactly one record: the instant event, or the map when the event could not
 * be sent. Loopback traffic is left out unless the loader asks for it. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "common.h"
#include "skb.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define EEXIST_ 17

struct drop_key {
	struct flow_tuple tuple;
	__u32 reason;  /* enum skb_drop_reason of the running kernel */
	__u32 ifindex; /* skb->dev, or the input interface when dev is gone */
	__u32 netns;   /* inode of the device's (or socket's) network namespace */
	__u8 has_sk;   /* the packet belonged to a local socket (was being sent) */
	__u8 pad[3];
};

struct drop_agg {
	__u64 first_ns;
	__u64 last_ns;
	__u64 packets;
	__u64 bytes;
};

struct drop_event {
	struct drop_key key;
	__u64 ts_ns;
	__u32 packets; /* more than 1 for a GSO packet */
	__u32 bytes;
};

const volatile __u64 events_per_sec = 1000;
const volatile __u64 events_burst = 2000;
const volatile __u8 report_loopback = 0;

FLOWS_MAP

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct drop_key);
	__type(value, struct drop_agg);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} drop_events SEC(".maps");

/* REASON_* flags per reason number, filled by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REASONS_MAX);
	__type(key, __u32);
	__type(value, __u8);
} reasons SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rate_state);
} drop_rate SEC(".maps");

COUNTERS_MAP

const struct drop_event *unused_drop_event __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum reason_flag *unused_reason_flag __attribute__((unused));

static __always_inline int send_event(struct drop_key *key, __u64 now, __u32 segs, __u32 bytes)
{
	__u32 zero = 0;
	struct rate_state *rs = bpf_map_lookup_elem(&drop_rate, &zero);
	if (!rs)
		return 0;
	if (!rate_allow(rs, now, events_per_sec, events_burst)) {
		count(CNT_RATE_LIMITED);
		return 0;
	}
	struct drop_event *e = bpf_ringbuf_reserve(&drop_events, sizeof(*e), 0);
	if (!e) {
		count(CNT_RINGBUF_FULL);
		return 0;
	}
	e->key = *key;
	e->ts_ns = now;
	e->packets = segs;
	e->bytes = bytes;
	bpf_ringbuf_submit(e, 0);
	count(CNT_EVENTS);
	return 1;
}

static __always_inline void add(struct drop_agg *st, __u64 now, __u32 segs, __u32 bytes)
{
	__sync_fetch_and_add(&st->packets, segs);
	__sync_fetch_and_add(&st->bytes, bytes);
	st->last_ns = now;
}

/* flow_tuple_of returns, in *t, the tuple flow.c keyed the packet's flow by.
 * Where conntrack translated the packet (kube-proxy's DNAT to a backend,
 * masquerade), the headers differ from what the tcx hook saw; conntrack's
 * tuple of the packet's direction is what it saw. */
static __always_inline int flow_tuple_of(struct sk_buff *skb, struct flow_tuple *t, const int direct)
{
	if (t->proto != IPPROTO_TCP_ && t->proto != IPPROTO_UDP_ && t->proto != IPPROTO_SCTP_)
		return 0;
	unsigned long nfct = KREAD(direct, skb, _nfct);
	struct nf_conn *ct = (struct nf_conn *)(nfct & ~7UL);
	if (!ct)
		return 0;
	/* A computed pointer: probe read in either kind of program. */
	if (!(BPF_CORE_READ(ct, status) & (IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE)))
		return 0;
	int dir = (nfct & 7) >= IP_CT_IS_REPLY ? 1 : 0;
	struct nf_conntrack_tuple ctt;
	if (bpf_core_read(&ctt, sizeof(ctt), &ct->tuplehash[dir].tuple))
		return 0;
	__builtin_memcpy(t->saddr, &ctt.src.u3, 16);
	__builtin_memcpy(t->daddr, &ctt.dst.u3, 16);
	if (t->family == 4) { /* flow.c leaves the rest of an IPv4 address zero */
		__builtin_memset(t->saddr + 4, 0, 12);
		__builtin_memset(t->daddr + 4, 0, 12);
	}
	t->sport = bpf_ntohs(ctt.src.u.all);
	t->dport = bpf_ntohs(ctt.dst.u.all);
	return 1;
}

/* undelivered takes a dropped packet out of its flow's FORWARDED count. It
 * returns 1 when the drop is also reported from the flow's entry (a later
 * drop exactly like the flow's first), so the drop map can be skipped. */
static __always_inline int undelivered(struct sk_buff *skb, struct drop_key *dk, __u32 segs, __u32 bytes, __u8 flags,
				       const int direct)
{
	struct flow_key key = { .tuple = dk->tuple };
	int translated = flow_tuple_of(skb, &key.tuple, direct);
	struct flow_agg *st = bpf_map_lookup_elem(&flows, &key);
	if (!st)
		return 0; /* not a flow the tcx hooks counted */
	if (!st->drop_packets) {
		/* A flow's packets meet their fate in order: only its first
		 * drop can be its first packet. Later drops leave the line
		 * flow.c counts in alone. Racing first drops store equally
		 * valid values and both go through the drop map. */
		st->drop_reason = dk->reason;
		st->drop_ifindex = dk->ifindex;
		st->drop_netns = dk->netns;
		st->drop_has_sk = dk->has_sk;
		if (st->first_skb == (__u64)skb) {
			st->first_dropped = 1;
			st->first_skb = 0;
		}
		__sync_fetch_and_add(&st->drop_packets, segs);
		__sync_fetch_and_add(&st->drop_bytes, bytes);
		return 0;
	}
	__sync_fetch_and_add(&st->drop_packets, segs);
	__sync_fetch_and_add(&st->drop_bytes, bytes);
	if (translated || !(flags & REASON_REPORT) || st->drop_reason != dk->reason || st->drop_ifindex != dk->ifindex ||
	    st->drop_netns != dk->netns || st->drop_has_sk != dk->has_sk)
		return 0;
	__sync_fetch_and_add(&st->same_packets, segs);
	__sync_fetch_and_add(&st->same_bytes, bytes);
	return 1;
}

static __always_inline int loopback(struct flow_tuple *t)
{
	if (t->family == 4)
		return t->saddr[0] == 127 || t->daddr[0] == 127;
	__u64 *s = (__u64 *)t->saddr, *d = (__u64 *)t->daddr;
	return (s[0] == 0 && s[1] == bpf_cpu_to_be64(1)) || (d[0] == 0 && d[1] == bpf_cpu_to_be64(1));
}

static __always_inline void handle_drop(struct sk_buff *skb, __u32 reason, const int direct)
{
	__u8 flags = REASON_REPORT | REASON_UNDELIVERED;
	if (reason < REASONS_MAX) {
		__u8 *f = bpf_map_lookup_elem(&reasons, &reason);
		flags = f ? *f : 0;
	}
	if (!flags) {
		count(CNT_FILTERED);
		return;
	}

	struct drop_key key = {};
	__u32 bytes = 0;
	struct skb_meta m;
	skb_meta_of(skb, &m, direct);
	int r = read_tuple(&m, &key.tuple, &bytes);
	if (r != PARSE_OK) {
		count(r);
		return;
	}
	if (!report_loopback && loopback(&key.tuple)) {
		count(CNT_FILTERED);
		return;
	}
	__u32 segs = segments(&m, key.tuple.proto, &bytes);

	key.reason = reason;
	struct net_device *dev = KREAD(direct, skb, dev);
	struct sock *sk = KREAD(direct, skb, sk);
	if (dev) {
		key.ifindex = KREAD(direct, dev, ifindex);
		key.netns = direct ? dev->nd_net.net->ns.inum : BPF_CORE_READ(dev, nd_net.net, ns.inum);
	}
	if (!key.ifindex)
		key.ifindex = KREAD(direct, skb, skb_iif);
	if (!key.netns && sk)
		key.netns = direct ? sk->__sk_common.skc_net.net->ns.inum : BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	key.has_sk = sk != 0;

	if ((flags & REASON_UNDELIVERED) && undelivered(skb, &key, segs, bytes, flags, direct))
		return; /* reported from the flow's entry */
	if (!(flags & REASON_REPORT)) {
		count(CNT_FILTERED);
		return;
	}

	__u64 now = bpf_ktime_get_ns();
	struct drop_agg *st = bpf_map_lookup_elem(&drops, &key);
	if (st) {
		add(st, now, segs, bytes);
		return;
	}

	int sent = send_event(&key, now, segs, bytes);
	struct drop_agg fresh = {
		.first_ns = now,
		.last_ns = now,
		.packets = sent ? 0 : segs,
		.bytes = sent ? 0 : bytes,
	};
	long err = bpf_map_update_elem(&drops, &key, &fresh, BPF_NOEXIST);
	if (err == -EEXIST_) {
		st = bpf_map_lookup_elem(&drops, &key);
		if (st && !sent)
			add(st, now, segs, bytes);
	} else if (err) {
		count(CNT_MAP_FULL);
	}
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(trawl_drop_btf, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	handle_drop(skb, reason, 1);
	return 0;
}

SEC("tracepoint/skb/kfree_skb")
int trawl_drop_tp(struct trace_event_raw_kfree_skb *ctx)
{
	handle_drop((struct sk_buff *)ctx->skbaddr, ctx->reason, 0);
	return 0;
}
