/* TCP health in the flow programs (included by flow.c after dns.h):
 * handshake timestamps and zero-window advertisements, kept in the flow
 * entries user space already polls (docs/tcp-health.md).
 *
 * The handshake is timed in the client's entry (the direction of the SYN):
 * syn_ns is the latest SYN, synack_ns the first SYN-ACK answering it,
 * ack_ns the client's first ACK after that. Only the SYN-ACK that creates
 * its own entry looks up another entry (its reverse, the client's, or
 * conntrack's original under NAT): once per connection, with the entry's
 * creation. A SYN-ACK sent again writes its time in its own entry only (the
 * server's: synack_ns there is its latest SYN-ACK), and user space takes it
 * from there (agent/collect/tcp.go), so no packet of an existing entry looks
 * up another. Retransmitted handshake packets move the start of their half
 * to the latest one, so each half is the last round trip, not the
 * retransmission timeout. */
#ifndef TRAWL_TCP_H
#define TRAWL_TCP_H

/* tcp_new initialises a new entry from its first packet. */
static __always_inline void tcp_new(struct flow_agg *st, __u16 flags, __u16 win, __u64 now)
{
	if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		st->syn_ns = now;
	else if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == (TCP_FLAG_SYN | TCP_FLAG_ACK))
		st->synack_ns = now;
	if (win == 0 && !(flags & (TCP_FLAG_SYN | TCP_FLAG_RST)))
		st->zero_windows = 1;
}

/* tcp_seen updates an existing entry. The common case (an ACK with data and
 * an open window on an established connection) costs three tests. now is
 * the precise clock for a SYN or SYN-ACK (account reads it instead of the
 * coarse one: one clock read per packet). */
static __always_inline void tcp_seen(struct flow_agg *st, __u16 flags, __u16 win, __u64 now)
{
	/* A RST carries window 0 without advertising anything. */
	if (win == 0 && !(flags & (TCP_FLAG_SYN | TCP_FLAG_RST)))
		__sync_fetch_and_add(&st->zero_windows, 1);
	if (flags & TCP_FLAG_SYN) {
		if (flags & TCP_FLAG_ACK)
			st->synack_ns = now; /* the SYN-ACK again, in its own entry */
		else if (!st->ack_ns)
			st->syn_ns = now; /* the SYN again: time from the latest */
		return;
	}
	if (st->hs_wait) {
		st->hs_wait = 0;
		if ((flags & (TCP_FLAG_ACK | TCP_FLAG_RST)) == TCP_FLAG_ACK) {
			st->ack_ns = bpf_ktime_get_ns();
			count(CNT_HANDSHAKES);
		}
	}
}

/* tcp_ct_original finds the client's entry of a SYN-ACK whose addresses
 * conntrack translated (a Service's DNAT, a masquerade): its conntrack
 * entry, found by the SYN-ACK's tuple (the reply direction; tcx ingress is
 * before conntrack), holds the SYN's tuple as the client sent it. */
static __always_inline struct flow_agg *tcp_ct_original(struct __sk_buff *skb, struct flow_key *key)
{
	struct nf_conn *ct = ct_lookup(skb, &key->tuple);
	if (!ct)
		return 0;
	struct flow_key orig = { .tuple = { .proto = IPPROTO_TCP_, .family = key->tuple.family } };
	struct nf_conntrack_tuple *o = &ct->tuplehash[IP_CT_DIR_ORIGINAL].tuple;
	orig.tuple.sport = bpf_ntohs(o->src.u.all);
	orig.tuple.dport = bpf_ntohs(o->dst.u.all);
	if (key->tuple.family == 4) {
		__builtin_memcpy(orig.tuple.saddr, &o->src.u3.ip, 4);
		__builtin_memcpy(orig.tuple.daddr, &o->dst.u3.ip, 4);
	} else {
		__builtin_memcpy(orig.tuple.saddr, &o->src.u3.in6, 16);
		__builtin_memcpy(orig.tuple.daddr, &o->dst.u3.in6, 16);
	}
	bpf_ct_release(ct);
	return bpf_map_lookup_elem(&flows, &orig);
}

/* tcp_answer marks the client's entry answered when the other side's first
 * packet (a SYN-ACK or a RST) passes, and records a SYN-ACK's time there. The client's entry is the reverse of the packet's
 * tuple, or the conntrack original when there is none (ctskb may be NULL
 * where no conntrack lookup is possible). */
static __always_inline void tcp_answer(struct __sk_buff *ctskb, struct flow_key *key, __u16 flags, __u64 now)
{
	struct flow_key rev = {};
	__builtin_memcpy(rev.tuple.saddr, key->tuple.daddr, 16);
	__builtin_memcpy(rev.tuple.daddr, key->tuple.saddr, 16);
	rev.tuple.sport = key->tuple.dport;
	rev.tuple.dport = key->tuple.sport;
	rev.tuple.proto = IPPROTO_TCP_;
	rev.tuple.family = key->tuple.family;
	struct flow_agg *c = bpf_map_lookup_elem(&flows, &rev);
	if (!c)
		c = tcp_ct_original(ctskb, key);
	if (!c)
		return;
	if (!c->answered)
		c->answered = 1;
	if (!(flags & TCP_FLAG_SYN) || !c->syn_ns || c->ack_ns)
		return; /* a RST, no SYN seen here, or the handshake is timed already */
	c->synack_ns = now;
	c->hs_wait = 1;
}

#endif
