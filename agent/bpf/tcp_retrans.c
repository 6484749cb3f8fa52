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
 * Segments are counted as the kernel's TcpRetransSegs counts them, from the
 * socket's own total (what `ss -ti` shows as retrans:x/TOTAL); a third
 * program, on TCP state changes, adds what the retransmit program missed. */
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

/* flow_of is the flow entry of the socket's direction, NULL (and counted)
 * when it has none. c is the socket's (or request socket's) common part, a
 * trusted BTF pointer; sport its local port (a closing socket's skc_num is
 * already 0). */
static __always_inline struct flow_agg *flow_of(const struct sock_common *c, __u16 sport)
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
		return 0;
	}
	if (v4) {
		key.tuple.family = 4;
		__builtin_memcpy(key.tuple.saddr, &c->skc_rcv_saddr, 4);
		__builtin_memcpy(key.tuple.daddr, &c->skc_daddr, 4);
	}
	key.tuple.sport = sport;
	key.tuple.dport = bpf_ntohs(c->skc_dport);

	struct flow_agg *st = bpf_map_lookup_elem(&flows, &key);
	if (!st)
		count(CNT_RETRANS_NO_FLOW);
	return st;
}

/* Where a socket's count starts, when the program first meets it. */
enum start {
	START_EVENT,    /* count this event's segments only, unless the agent saw the connection begin */
	START_ACCEPTED, /* an accepted connection: its total starts at its listener's SYN-ACKs sent again, counted one by one below */
};

/* sync brings the socket's flow entry up to the socket's total_retrans,
 * remembered in the entry (retrans_synced). Counting from the socket's own
 * total rather than one event at a time matters: on Linux 6.18 the kernel
 * now and then fires the tracepoints without running their BPF programs
 * (seen beside the tracefs event of the same tracepoint, with no recursion
 * miss counted: in this project's test VM, for every event in a softirq that
 * interrupted the VM's init process's threads), and a retransmission lost so
 * would be lost for good. Now the socket's next retransmission or state
 * change (its FIN, its close) brings it back. A new connection on the same
 * tuple while the entry lives starts below the remembered total: it starts
 * afresh. */
static __always_inline void sync(struct sock *sk, struct tcp_sock *tp, enum start start, __u32 event_segs)
{
	__u32 total = tp->total_retrans;
	struct flow_agg *st = flow_of(&sk->__sk_common, bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport));
	if (!st)
		return;
	__u32 synced = st->retrans_synced;
	if (!synced || total + 1 < synced) {
		if (start == START_ACCEPTED)
			synced = total + 1;
		else if ((st->first_tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN && !st->retransmits)
			synced = 1; /* the client's entry began with its SYN: the agent saw it all */
		else
			synced = total + 1 - event_segs; /* opened before the agent or the entry, or accepted unseen */
	}
	if (total + 1 > synced)
		__sync_fetch_and_add(&st->retransmits, total + 1 - synced);
	st->retrans_synced = total + 1;
}

/* Linux 6.13+ passes the transmit's error and fires on failures too. */
#define ENOBUFS_ 105
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(trawl_tcp_retransmit, struct sock *sk, const struct sk_buff *skb, int err)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	/* What this event added to the socket's total, needed only when the
	 * program meets a socket whose start it did not see: the kernel adds
	 * a retransmission's segments to TcpRetransSegs and total_retrans once
	 * it hands them to tcp_transmit_skb, whose errors are a positive
	 * NET_XMIT_* code or, among others, -ENOBUFS; the errors before that
	 * point (-EBUSY, -EAGAIN, -ENOMEM, -EINVAL, -EHOSTUNREACH) sent and
	 * counted nothing. tcp_skb_pcount is TCP_SKB_CB(skb)->tcp_gso_segs
	 * (skb->cb is the TCP control block here). */
	__u32 segs = 0;
	if (err >= 0 || err == -ENOBUFS_) {
		segs = (__u8)skb->cb[8] | ((__u8)skb->cb[9] << 8);
		if (!segs)
			segs = 1;
	}
	sync(sk, tp, START_EVENT, segs);
	return 0;
}

/* A TCP socket's state changes: at every change after a retransmission
 * (its FIN, its close), what the retransmit program missed is added; an
 * accepted connection whose listener sent its SYN-ACK again starts its
 * count there. A socket that never retransmitted returns at once. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(trawl_tcp_state, struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP_)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !tp->total_retrans)
		return 0;
	int accepted = oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED;
	sync(sk, tp, accepted ? START_ACCEPTED : START_EVENT, 0);
	return 0;
}

/* A listener's SYN-ACK sent again (the connection is a request socket
 * still): one segment. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(trawl_tcp_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	struct flow_agg *st = flow_of(&req->__req_common, req->__req_common.skc_num);
	if (st)
		__sync_fetch_and_add(&st->retransmits, 1);
	return 0;
}
