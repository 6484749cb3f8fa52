/* Conntrack lookups from the tc programs (nf_conntrack's kfuncs; weak:
 * absent when conntrack is not loaded, and the callers then skip them).
 * Used where a packet's own tuple is not the one its connection started
 * with: a DNS response from behind a DNAT (dns.h), a SYN-ACK whose client
 * entry was made before NAT (tcp.h). */
#ifndef TRAWL_CT_H
#define TRAWL_CT_H

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb, struct bpf_sock_tuple *tuple, __u32 tuple__sz,
					 struct bpf_ct_opts *opts, __u32 opts__sz) __ksym __weak;
extern void bpf_ct_release(struct nf_conn *ct) __ksym __weak;

/* ct_lookup finds the conntrack entry of a packet with tuple t, or NULL
 * (also without conntrack). A found entry must be given to bpf_ct_release. */
static __always_inline struct nf_conn *ct_lookup(struct __sk_buff *skb, const struct flow_tuple *ft)
{
	if (!skb || !bpf_skb_ct_lookup || !bpf_ct_release)
		return NULL;
	struct bpf_sock_tuple t = {};
	struct bpf_ct_opts opts = { .netns_id = -1, .l4proto = ft->proto };
	__u32 size;
	if (ft->family == 4) {
		__builtin_memcpy(&t.ipv4.saddr, ft->saddr, 4);
		__builtin_memcpy(&t.ipv4.daddr, ft->daddr, 4);
		t.ipv4.sport = bpf_htons(ft->sport);
		t.ipv4.dport = bpf_htons(ft->dport);
		size = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.saddr, ft->saddr, 16);
		__builtin_memcpy(t.ipv6.daddr, ft->daddr, 16);
		t.ipv6.sport = bpf_htons(ft->sport);
		t.ipv6.dport = bpf_htons(ft->dport);
		size = sizeof(t.ipv6);
	}
	return bpf_skb_ct_lookup(skb, &t, size, &opts, sizeof(opts));
}

#endif
