//go:build ignore

/* New conntrack entries per source address, at a netfilter hook just after
 * conntrack (BPF_PROG_TYPE_NETFILTER link, priority after
 * NF_IP_PRI_CONNTRACK) on PRE_ROUTING and LOCAL_OUT. An entry is new when the
 * packet's conntrack state is IP_CT_NEW and the entry is not confirmed yet:
 * retransmitted SYNs of a confirmed entry do not count. User space reads and
 * clears the map each interval to name the top creators. Always accepts. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "common.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define NF_ACCEPT_ 1
#define EEXIST_ 17
#define NFCT_INFOMASK 7UL

struct ct_src_key {
	__u8 addr[16]; /* original-direction source; IPv4 in the first 4 bytes */
	__u8 family;   /* 4 or 6 */
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ct_src_key);
	__type(value, __u64);
} ct_sources SEC(".maps");

COUNTERS_MAP

const enum counter *unused_counter __attribute__((unused));

SEC("netfilter")
int trawl_conntrack_new(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	unsigned long nfct = BPF_CORE_READ(skb, _nfct);

	if ((nfct & NFCT_INFOMASK) != IP_CT_NEW)
		return NF_ACCEPT_;
	struct nf_conn *ct = (struct nf_conn *)(nfct & ~NFCT_INFOMASK);
	if (!ct)
		return NF_ACCEPT_;
	if (BPF_CORE_READ(ct, status) & IPS_CONFIRMED)
		return NF_ACCEPT_;

	struct ct_src_key key = {};
	__u16 l3num = BPF_CORE_READ(ct, tuplehash[0].tuple.src.l3num);
	key.family = l3num == NFPROTO_IPV6 ? 6 : 4;
	bpf_core_read(key.addr, key.family == 6 ? 16 : 4, &ct->tuplehash[0].tuple.src.u3);
	count(CNT_NEW_CONNTRACK);

	__u64 *n = bpf_map_lookup_elem(&ct_sources, &key);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return NF_ACCEPT_;
	}
	__u64 one = 1;
	long err = bpf_map_update_elem(&ct_sources, &key, &one, BPF_NOEXIST);
	if (err == -EEXIST_) {
		n = bpf_map_lookup_elem(&ct_sources, &key);
		if (n)
			__sync_fetch_and_add(n, 1);
	} else if (err) {
		count(CNT_MAP_FULL);
	}
	return NF_ACCEPT_;
}
