/* DNS capture for flow.c: DNS messages (UDP and TCP, on up to four ports set
 * at load time) are copied to user space through their own ring buffer,
 * size-capped per message and rate-limited per CPU. User space parses them
 * (agent/dns); nothing here reads the DNS message itself.
 *
 * Cost on other packets: is_dns() is a protocol check and one port
 * comparison per configured port. The ports are read-only globals, so the
 * verifier knows them and removes the comparisons of unused slots.
 *
 * Needs, from the including file: struct flow_key, the flows map, count()
 * and rate_allow() (common.h), and load() for the tc path. */
#ifndef TRAWL_DNS_H
#define TRAWL_DNS_H

/* DNS payload bytes copied per message: a classic UDP DNS message. Longer
 * ones are cut; user space parses what fits and counts the rest. */
#define DNS_MAX_PAYLOAD 512

extern int bpf_dynptr_from_skb(struct __sk_buff *skb, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym;

struct dns_event {
	struct flow_tuple tuple;
	__u64 ts_ns;        /* CLOCK_MONOTONIC: latency = response - query */
	__u64 drops_before; /* the flow entry's undelivered packets before this one (fate) */
	__u32 ifindex;
	__u16 len;     /* bytes in data */
	__u16 msg_len; /* UDP payload or TCP segment data in the packet (> len: cut) */
	__u8 hook;     /* enum hook */
	__u8 has_flow; /* the flow map has an entry for the tuple (fate is knowable) */
	/* Set on a packet from a DNS port whose conntrack entry was
	 * translated (a Service's DNAT, a masquerade): the query's tuple as the
	 * client sent it, so user space matches the response with its query. */
	__u8 nat;
	__u8 pad;
	__u16 query_sport; /* host order */
	__u16 query_dport;
	__u8 pad2[2];
	__u8 query_saddr[16]; /* IPv4 in the first 4 bytes */
	__u8 query_daddr[16];
	__u8 data[DNS_MAX_PAYLOAD]; /* TCP: starts with the 2-byte length prefix */
};

/* Set by the loader (--dns-ports); 0 is an unused slot. */
const volatile __u16 dns_port_0 = 53;
const volatile __u16 dns_port_1 = 0;
const volatile __u16 dns_port_2 = 0;
const volatile __u16 dns_port_3 = 0;
/* Messages per second per CPU (--dns-rate); 0 means unlimited. */
const volatile __u64 dns_per_sec = 5000;
const volatile __u64 dns_burst = 10000;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 512 * 1024);
} dns_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rate_state);
} dns_rate SEC(".maps");

const struct dns_event *unused_dns_event __attribute__((unused));

static __always_inline int dns_port(__u16 port)
{
	return (dns_port_0 && port == dns_port_0) || (dns_port_1 && port == dns_port_1) ||
	       (dns_port_2 && port == dns_port_2) || (dns_port_3 && port == dns_port_3);
}

/* is_dns: the only test every packet pays. */
static __always_inline int is_dns(const struct flow_tuple *t)
{
	if (t->proto != IPPROTO_UDP_ && t->proto != IPPROTO_TCP_)
		return 0;
	return dns_port(t->sport) || dns_port(t->dport);
}

/* dns_reserve applies the rate limit and reserves a record for a message of
 * msg_len payload bytes; NULL (counted) when it cannot be sent. */
static __always_inline struct dns_event *dns_reserve(struct flow_key *key, __u32 ifindex, __u8 hook, __u32 msg_len)
{
	__u32 zero = 0;
	struct rate_state *rs = bpf_map_lookup_elem(&dns_rate, &zero);
	if (!rs)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (!rate_allow(rs, now, dns_per_sec, dns_burst)) {
		count(CNT_DNS_RATE_LIMITED);
		return 0;
	}
	struct dns_event *e = bpf_ringbuf_reserve(&dns_events, sizeof(*e), 0);
	if (!e) {
		count(CNT_DNS_RINGBUF_FULL);
		return 0;
	}
	/* The packet was counted in its flow just before: drops of the flow
	 * beyond this number happened to this packet or a later one. */
	struct flow_agg *st = bpf_map_lookup_elem(&flows, key);
	e->drops_before = st ? st->drop_packets : 0;
	e->has_flow = st != 0;
	e->tuple = key->tuple;
	e->ts_ns = now;
	e->ifindex = ifindex;
	e->hook = hook;
	e->msg_len = msg_len > 0xffff ? 0xffff : msg_len;
	e->len = 0;
	e->nat = 0;
	e->pad = 0;
	e->query_sport = 0;
	e->query_dport = 0;
	__builtin_memset(e->pad2, 0, sizeof(e->pad2));
	__builtin_memset(e->query_saddr, 0, sizeof(e->query_saddr));
	__builtin_memset(e->query_daddr, 0, sizeof(e->query_daddr));
	return e;
}

/* dns_nat fills the query's tuple of a response whose conntrack entry was
 * translated. tcx ingress runs before conntrack, so the response still
 * carries the backend's address (DNAT) or the node's (masquerade); its entry
 * (found by the reply tuple) holds the query as the client sent it. Only DNS
 * packets from a DNS port pay for the lookup. */
static __always_inline void dns_nat(struct __sk_buff *skb, struct dns_event *e)
{
	if (!dns_port(e->tuple.sport))
		return;
	struct nf_conn *ct = ct_lookup(skb, &e->tuple);
	if (!ct)
		return;
	/* The original direction is the query's: the client as it sent the
	 * query (before a masquerade) -> what it asked (before a DNAT). The
	 * response, seen before conntrack, is the reply direction. */
	struct nf_conntrack_tuple *orig = &ct->tuplehash[IP_CT_DIR_ORIGINAL].tuple;
	e->query_sport = bpf_ntohs(orig->src.u.all);
	e->query_dport = bpf_ntohs(orig->dst.u.all);
	if (e->tuple.family == 4) {
		__builtin_memcpy(e->query_saddr, &orig->src.u3.ip, 4);
		__builtin_memcpy(e->query_daddr, &orig->dst.u3.ip, 4);
	} else {
		__builtin_memcpy(e->query_saddr, &orig->src.u3.in6, 16);
		__builtin_memcpy(e->query_daddr, &orig->dst.u3.in6, 16);
	}
	/* Translated when the query's tuple is not this packet's reversed. */
	__u64 qs[2], qd[2], ps[2], pd[2];
	__builtin_memcpy(qs, e->query_saddr, 16);
	__builtin_memcpy(qd, e->query_daddr, 16);
	__builtin_memcpy(ps, e->tuple.saddr, 16);
	__builtin_memcpy(pd, e->tuple.daddr, 16);
	e->nat = e->query_dport != e->tuple.sport || e->query_sport != e->tuple.dport || qd[0] != ps[0] ||
		 qd[1] != ps[1] || qs[0] != pd[0] || qs[1] != pd[1];
	bpf_ct_release(ct);
}

static __always_inline void dns_submit(struct dns_event *e)
{
	bpf_ringbuf_submit(e, 0);
	count(CNT_DNS_EVENTS);
}

/* dns_from_skb copies the DNS payload of a packet seen at tcx/tc. off is
 * where the payload starts (after the UDP or TCP header). */
static __always_inline void dns_from_skb(struct __sk_buff *skb, struct flow_key *key, __u32 off, __u8 hook)
{
	if (off >= skb->len)
		return; /* no payload: a bare TCP ACK, SYN or FIN */
	__u32 avail = skb->len - off;
	__u32 msg_len = avail;
	if (key->tuple.proto == IPPROTO_UDP_) {
		__u8 u[2]; /* UDP length, at offset 4 of the 8-byte header */
		if (load(skb, off - 4, u, 2))
			return;
		msg_len = ((u[0] << 8) | u[1]) - 8; /* >= 8: checked by parse_l4 */
		if (msg_len == 0)
			return;
		if (avail > msg_len)
			avail = msg_len; /* Ethernet padding */
	}
	struct dns_event *e = dns_reserve(key, skb->ifindex, hook, msg_len);
	if (!e)
		return;
	__u32 n = avail < DNS_MAX_PAYLOAD ? avail : DNS_MAX_PAYLOAD;
	if (n >= 1 && n <= DNS_MAX_PAYLOAD && bpf_skb_load_bytes(skb, off, e->data, n) == 0)
		e->len = n;
	dns_nat(skb, e);
	dns_submit(e);
}

/* dns_from_kernel_skb copies the DNS payload of a packet the node sends
 * (netfilter LOCAL_OUT). A local TCP socket puts its payload in page
 * fragments, so the copy goes through an skb dynptr, which reads linear and
 * paged data alike (offsets from skb->data, the network header here). A
 * failed copy goes out empty; user space counts it as not captured. */
static __always_inline void dns_from_kernel_skb(struct sk_buff *skb, struct skb_meta *m, struct flow_key *key,
						__u32 l3_bytes, __u32 ifindex)
{
	__u32 hdr = 8;
	__u32 msg_len;
	if (key->tuple.proto == IPPROTO_TCP_) {
		__u8 doff;
		if (bpf_probe_read_kernel(&doff, 1, m->head + m->th + 12))
			return;
		hdr = (doff >> 4) * 4;
	}
	__u32 l3_hdr = m->th > m->nh ? m->th - m->nh : 0;
	if (l3_bytes <= l3_hdr + hdr)
		return;
	msg_len = l3_bytes - l3_hdr - hdr;
	__u32 off = m->th + hdr; /* from head */
	struct dns_event *e = dns_reserve(key, ifindex, HOOK_EGRESS, msg_len);
	if (!e)
		return;
	__u32 n = msg_len < DNS_MAX_PAYLOAD ? msg_len : DNS_MAX_PAYLOAD;
	struct bpf_dynptr dp;
	__u32 from_data = off - (__u32)(m->data - m->head);
	if (bpf_dynptr_from_skb((struct __sk_buff *)skb, 0, &dp) == 0 && n >= 1 && n <= DNS_MAX_PAYLOAD &&
	    bpf_dynptr_read(e->data, n, &dp, from_data, 0) == 0)
		e->len = n;
	dns_submit(e);
}

#endif
