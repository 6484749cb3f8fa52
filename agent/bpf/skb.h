/* Reading a kernel sk_buff's headers from anywhere in the stack (kfree_skb,
 * netfilter hooks), where they are kernel memory rather than packet data.
 *
 * tp_btf and netfilter programs get a trusted sk_buff pointer and read its
 * fields directly (a plain load each); the classic tracepoint gets an address
 * and needs a probe read per field. Every function takes `direct`, a constant
 * at each call site, so each program keeps only its own kind of read. Header
 * bytes are always copied with one probe read: they sit at a computed
 * address. */
#ifndef TRAWL_SKB_H
#define TRAWL_SKB_H

#define PARSE_OK (-1)

/* Reads a field of a kernel struct the way the program may. */
#define KREAD(direct, p, field) ((direct) ? (p)->field : BPF_CORE_READ(p, field))

/* The sk_buff fields the parsers need, read once. */
struct skb_meta {
	unsigned char *head;
	unsigned char *data;
	__u32 len;
	__u32 end; /* offset of skb_shared_info from head */
	__u16 nh;  /* network header offset from head */
	__u16 th;  /* transport header offset from head */
	__u16 protocol;
};

static __always_inline void skb_meta_of(struct sk_buff *skb, struct skb_meta *m, const int direct)
{
	m->head = KREAD(direct, skb, head);
	m->data = KREAD(direct, skb, data);
	m->len = KREAD(direct, skb, len);
	m->end = KREAD(direct, skb, end);
	m->nh = KREAD(direct, skb, network_header);
	m->th = KREAD(direct, skb, transport_header);
	m->protocol = KREAD(direct, skb, protocol);
}

/* ports fills the ports (or ICMP type/code) from transport header bytes. */
static __always_inline void ports(struct flow_tuple *t, __u8 *h)
{
	switch (t->proto) {
	case IPPROTO_TCP_:
	case IPPROTO_UDP_:
	case IPPROTO_SCTP_:
		t->sport = (h[0] << 8) | h[1];
		t->dport = (h[2] << 8) | h[3];
		break;
	case IPPROTO_ICMP_:
	case IPPROTO_ICMPV6_:
		t->sport = h[0];
		t->dport = h[1];
		break;
	}
}

static __always_inline int read_l4(struct flow_tuple *t, void *l4)
{
	__u8 h[4];

	if (bpf_probe_read_kernel(h, 4, l4))
		return CNT_TRUNCATED;
	ports(t, h);
	return PARSE_OK;
}

/* read_tuple reads the IP and transport headers of an skb that may be
 * anywhere in the stack: the network header offset is the reference, not
 * skb->data, which may already point past it. One copy covers an IPv4 header
 * without options or an IPv6 header, and the ports behind them. */
static __always_inline int read_tuple(struct skb_meta *m, struct flow_tuple *t, __u32 *bytes)
{
	__u8 buf[48];

	if (!m->head || m->nh == (__u16)~0U)
		return CNT_NOT_IP; /* no network header set yet */
	void *l3 = m->head + m->nh;
	if (bpf_probe_read_kernel(buf, sizeof(buf), l3))
		return CNT_TRUNCATED;
	__u8 ver = buf[0] >> 4;
	/* Locally built packets may not have skb->protocol yet: trust the
	 * version nibble then. */
	if (m->protocol == bpf_htons(ETH_P_IP) || (m->protocol == 0 && ver == 4)) {
		struct iphdr *ip = (struct iphdr *)buf;
		__u32 ihl = ip->ihl * 4;
		if (ver != 4 || ihl < sizeof(*ip))
			return CNT_MALFORMED;
		t->family = 4;
		t->proto = ip->protocol;
		__builtin_memcpy(t->saddr, &ip->saddr, 4);
		__builtin_memcpy(t->daddr, &ip->daddr, 4);
		*bytes = bpf_ntohs(ip->tot_len);
		if (bpf_ntohs(ip->frag_off) & 0x1fff)
			return PARSE_OK; /* later fragment: no ports */
		if (ihl == sizeof(*ip)) {
			ports(t, buf + sizeof(*ip));
			return PARSE_OK;
		}
		return read_l4(t, l3 + ihl);
	}
	if (m->protocol == bpf_htons(ETH_P_IPV6) || (m->protocol == 0 && ver == 6)) {
		struct ipv6hdr *ip6 = (struct ipv6hdr *)buf;
		if (ver != 6)
			return CNT_MALFORMED;
		t->family = 6;
		__builtin_memcpy(t->saddr, &ip6->saddr, 16);
		__builtin_memcpy(t->daddr, &ip6->daddr, 16);
		*bytes = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		__u8 next = ip6->nexthdr;
		if (next == IPPROTO_TCP_ || next == IPPROTO_UDP_ || next == IPPROTO_ICMPV6_ || next == IPPROTO_SCTP_) {
			t->proto = next;
			ports(t, buf + sizeof(*ip6));
			return PARSE_OK;
		}
		void *l4 = l3 + sizeof(*ip6);
#pragma unroll
		for (int i = 0; i < 4; i++) {
			__u8 e[4];
			if (next != IPPROTO_HOPOPTS_ && next != IPPROTO_ROUTING_ && next != IPPROTO_DSTOPTS_ &&
			    next != IPPROTO_FRAGMENT_ && next != IPPROTO_AH_)
				break;
			if (bpf_probe_read_kernel(e, 4, l4))
				return CNT_TRUNCATED;
			if (next == IPPROTO_FRAGMENT_) {
				if (((e[2] << 8) | e[3]) & 0xfff8) {
					t->proto = e[0];
					return PARSE_OK;
				}
				l4 += 8;
			} else if (next == IPPROTO_AH_) {
				l4 += (e[1] + 2) * 4;
			} else {
				l4 += (e[1] + 1) * 8;
			}
			next = e[0];
		}
		t->proto = next;
		return read_l4(t, l4);
	}
	return CNT_NOT_IP;
}

/* segments returns how many packets the skb stands for and their L3 bytes,
 * as flow.c counts them: a GSO packet is every segment with its headers. */
static __always_inline __u32 segments(struct skb_meta *m, __u8 proto, __u32 *bytes)
{
	/* A packet that fits one MTU-sized frame is one packet: skip the
	 * shared-info read on the common path. */
	if (m->len <= 1600)
		return 1;
	struct skb_shared_info *sh = (struct skb_shared_info *)(m->head + m->end);
	__u16 segs = BPF_CORE_READ(sh, gso_segs);
	if (segs <= 1)
		return 1;
	/* The super-packet's IP length may be 0 (BIG TCP): use skb->len from
	 * the network header on, plus a copy of the headers per extra segment. */
	__u32 l3len = m->len + (__u32)(m->data - m->head) - m->nh;
	__u32 hdr = m->th > m->nh ? m->th - m->nh : 0;
	if (proto == IPPROTO_TCP_) {
		__u8 doff;
		if (bpf_probe_read_kernel(&doff, 1, m->head + m->th + 12) == 0)
			hdr += (doff >> 4) * 4;
	} else {
		hdr += 8;
	}
	*bytes = l3len + (segs - 1) * hdr;
	return segs;
}

#endif
