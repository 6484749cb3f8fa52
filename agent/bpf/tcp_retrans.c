//go:build ignore

/* Retransmitted TCP segments of the node's own sockets (every network
 * namespace of the machine: the node's and its pods'), added to the flow
 * entry of the retransmitting socket's direction in flow.c's map.
 *
 * tp_btf/tcp_retransmit_skb fires for a connected socket's retransmission,
 * tp_btf/tcp_retransmit_synack for a listener's SYN-ACK sent again; both
 * give the socket, whose tuple is the packet's as the socket sent it, before
 * any NAT of the node: that is the tuple flow.c keyed the entry by (tcx
 * ingress and netfilter LOCAL_OUT both run before the node's NAT). A socket
 * whose packets no watched hook counts (forwarded traffic's sockets live on
 * other nodes; an unwatched interface) has no entry: counted, not recorded.
 * Segments are counted as the kernel's TcpRetransSegs counts them. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "common.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define AF_INET_ 2
#define AF_INET6_ 10

FLOWS_MAP

COUNTERS_MAP

/* add_retrans adds segs to the entry of the socket's direction. c is the
 * socket's (or request socket's) common part, a trusted BTF pointer. */
static __always_inline void add_retrans(const struct sock_common *c, __u32 segs)
{
	struct flow_key key = { .tuple = { .proto = IPPROTO_TCP_ } };
	__u16 family = c->skc_family;
	int v4 = family == AF_INET_;
	if (family == AF_INET6_) {
		/* A dual-stack socket talking IPv4 keeps ::ffff:a.b.c.d; its
		 * packets are IPv4, and so is its entry. */
		const __u32 *d = c->skc_v6_daddr.in6_u.u6_addr32;
		v4 = d[0] == 0 && d[1] == 0 && d[2] == bpf_htonl(0xffff);
		if (!v4) {
			key.tuple.family = 6;
			__builtin_memcpy(key.tuple.saddr, &c->skc_v6_rcv_saddr, 16);
			__builtin_memcpy(key.tuple.daddr, &c->skc_v6_daddr, 16);
		}
	} else if (!v4) {
		return;
	}
	if (v4) {
		key.tuple.family = 4;
		__builtin_memcpy(key.tuple.saddr, &c->skc_rcv_saddr, 4);
		__builtin_memcpy(key.tuple.daddr, &c->skc_daddr, 4);
	}
	key.tuple.sport = c->skc_num;
	key.tuple.dport = bpf_ntohs(c->skc_dport);

	struct flow_agg *st = bpf_map_lookup_elem(&flows, &key);
	if (!st) {
		count(CNT_RETRANS_NO_FLOW);
		return;
	}
	__sync_fetch_and_add(&st->retransmits, segs);
}

/* Linux 6.13+ passes the transmit's error and fires on failures too. The
 * kernel counts a retransmission (TcpRetransSegs, the socket's
 * total_retrans) once it hands the segment to tcp_transmit_skb, whose
 * errors are a positive NET_XMIT_* code or -ENOBUFS; the errors before that
 * point (-EBUSY, -EAGAIN, -ENOMEM, -EINVAL, -EHOSTUNREACH) sent nothing and
 * are not counted. Count as the kernel does. */
#define ENOBUFS_ 105
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(trawl_tcp_retransmit, const struct sock *sk, const struct sk_buff *skb, int err)
{
	if (err < 0 && err != -ENOBUFS_)
		return 0;
	/* tcp_skb_pcount: TCP_SKB_CB(skb)->tcp_gso_segs, a GSO packet's
	 * segments (skb->cb is the TCP control block here; two direct byte
	 * loads, little-endian). */
	__u16 segs = skb->cb[8] | (skb->cb[9] << 8);
	add_retrans(&sk->__sk_common, segs ? segs : 1);
	return 0;
}

/* A listener's SYN-ACK sent again (the connection is a request socket
 * still): one segment. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(trawl_tcp_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	add_retrans(&req->__req_common, 1);
	return 0;
}
