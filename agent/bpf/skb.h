/* Reading a kernel sk_buff's headers from anywhere in the stack (kfree_skb,
 * netfilter hooks), where they are kernel memory rather than packet data. */
#ifndef TRAWL_SKB_H
#define TRAWL_SKB_H

#define PARSE_OK (-1)

/* read_l4 fills the ports (or ICMP type/code) from kernel memory at l4. */
static __always_inline int read_l4(struct flow_tuple *t, void *l4)
{
	__u8 h[4];

	switch (t->proto) {
	case IPPROTO_TCP_:
	case IPPROTO_UDP_:
	case IPPROTO_SCTP_:
		if (bpf_probe_read_kernel(h, 4, l4))
			return CNT_TRUNCATED;
		t->sport = (h[0] << 8) | h[1];
		t->dport = (h[2] << 8) | h[3];
		break;
	case IPPROTO_ICMP_:
	case IPPROTO_ICMPV6_:
		if (bpf_probe_read_kernel(h, 2, l4))
			return CNT_TRUNCATED;
		t->sport = h[0];
		t->dport = h[1];
		break;
	}
	return PARSE_OK;
}

/* read_tuple reads the IP and transport headers of an skb that may be
 * anywhere in the stack: the network header offset is the reference, not
 * skb->data, which may already point past it. */
static __always_inline int read_tuple(struct sk_buff *skb, unsigned char *head, __u16 nh, struct flow_tuple *t,
				      __u32 *bytes)
{
	__u16 proto = BPF_CORE_READ(skb, protocol);
	__u8 ver;

	if (!head || nh == (__u16)~0U)
		return CNT_NOT_IP; /* no network header set yet */
	void *l3 = head + nh;
	if (bpf_probe_read_kernel(&ver, 1, l3))
		return CNT_TRUNCATED;
	ver >>= 4;
	/* Locally built packets may not have skb->protocol yet: trust the
	 * version nibble then. */
	if (proto == bpf_htons(ETH_P_IP) || (proto == 0 && ver == 4)) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), l3))
			return CNT_TRUNCATED;
		__u32 ihl = ip.ihl * 4;
		if (ip.version != 4 || ihl < sizeof(ip))
			return CNT_MALFORMED;
		t->family = 4;
		t->proto = ip.protocol;
		__builtin_memcpy(t->saddr, &ip.saddr, 4);
		__builtin_memcpy(t->daddr, &ip.daddr, 4);
		*bytes = bpf_ntohs(ip.tot_len);
		if (bpf_ntohs(ip.frag_off) & 0x1fff)
			return PARSE_OK; /* later fragment: no ports */
		return read_l4(t, l3 + ihl);
	}
	if (proto == bpf_htons(ETH_P_IPV6) || (proto == 0 && ver == 6)) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), l3))
			return CNT_TRUNCATED;
		if (ip6.version != 6)
			return CNT_MALFORMED;
		t->family = 6;
		__builtin_memcpy(t->saddr, &ip6.saddr, 16);
		__builtin_memcpy(t->daddr, &ip6.daddr, 16);
		*bytes = bpf_ntohs(ip6.payload_len) + sizeof(ip6);
		__u8 next = ip6.nexthdr;
		void *l4 = l3 + sizeof(ip6);
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
static __always_inline __u32 segments(struct sk_buff *skb, unsigned char *head, __u16 nh, __u8 proto, __u32 *bytes)
{
	__u32 end = BPF_CORE_READ(skb, end);
	struct skb_shared_info *sh = (struct skb_shared_info *)(head + end);
	__u16 segs = BPF_CORE_READ(sh, gso_segs);
	if (segs <= 1)
		return 1;
	/* The super-packet's IP length may be 0 (BIG TCP): use skb->len from
	 * the network header on, plus a copy of the headers per extra segment. */
	unsigned char *data = BPF_CORE_READ(skb, data);
	__u32 l3len = BPF_CORE_READ(skb, len) + (__u32)(data - head) - nh;
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u32 hdr = th > nh ? th - nh : 0;
	if (proto == IPPROTO_TCP_) {
		__u8 doff;
		if (bpf_probe_read_kernel(&doff, 1, head + th + 12) == 0)
			hdr += (doff >> 4) * 4;
	} else {
		hdr += 8;
	}
	*bytes = l3len + (segs - 1) * hdr;
	return segs;
}

#endif
