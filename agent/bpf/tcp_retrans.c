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
 * program, on TCP state changes, marks where a socket's count starts and
 * adds what the retransmit program missed at each later change. */
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
 * socket's (or request socket's) common part, a trusted BTF pointer; sport
 * its local port (a closing socket's skc_num is already 0). */
static __always_inline void add_retrans(const struct sock_common *c, __u16 sport, __u32 segs)
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
	key.tuple.sport = sport;
	key.tuple.dport = bpf_ntohs(c->skc_dport);

	struct flow_agg *st = bpf_map_lookup_elem(&flows, &key);
	if (!st) {
		count(CNT_RETRANS_NO_FLOW);
		return;
	}
	__sync_fetch_and_add(&st->retransmits, segs);
}

/* The socket's total_retrans as far as its flow already carries it, in the
 * socket's own storage: freed with the socket, so a new connection on the
 * same tuple starts afresh, and kept when the flow entry is evicted and made
 * again. */
struct retrans_seen {
	__u32 total;
	__u32 valid;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct retrans_seen);
} retrans_seen SEC(".maps");

/* catch_up adds what the socket's total_retrans gained since the flow last
 * carried it. Counting from the socket's own total rather than one event at
 * a time matters: on Linux 6.18 the kernel now and then fires the
 * tracepoint without running its BPF programs (seen beside the tracefs
 * event of the same tracepoint, with no recursion miss counted: in this
 * test machine's VM, for every event in a softirq that interrupted its
 * init process's threads), and a retransmission lost so would be lost for
 * good. Now the socket's next retransmission or state change (its FIN,
 * its close) brings it back. */
static __always_inline void catch_up(struct sock *sk, struct tcp_sock *tp, struct retrans_seen *seen)
{
	__u32 total = tp->total_retrans;
	if (total > seen->total)
		add_retrans(&sk->__sk_common, bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport), total - seen->total);
	seen->total = total;
}

/* Linux 6.13+ passes the transmit's error and fires on failures too. */
#define ENOBUFS_ 105
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(trawl_tcp_retransmit, struct sock *sk, const struct sk_buff *skb, int err)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	struct retrans_seen *seen = bpf_sk_storage_get(&retrans_seen, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!seen)
		return 0;
	if (!seen->valid) {
		/* A socket opened before the agent started: its earlier
		 * retransmissions are not this flow's news. This one counts
		 * if the kernel counted it: it adds a retransmission's segments
		 * to TcpRetransSegs and total_retrans once it hands them to
		 * tcp_transmit_skb, whose errors are a positive NET_XMIT_* code
		 * or, among others, -ENOBUFS; the errors before that point
		 * (-EBUSY, -EAGAIN, -ENOMEM, -EINVAL, -EHOSTUNREACH) sent and
		 * counted nothing. tcp_skb_pcount is TCP_SKB_CB(skb)->
		 * tcp_gso_segs (skb->cb is the TCP control block here). */
		__u32 segs = 0;
		if (err >= 0 || err == -ENOBUFS_) {
			segs = (__u8)skb->cb[8] | ((__u8)skb->cb[9] << 8);
			if (!segs)
				segs = 1;
		}
		seen->valid = 1;
		seen->total = tp->total_retrans - segs;
	}
	catch_up(sk, tp, seen);
	return 0;
}

/* A TCP socket's state changes: where its retransmit count starts (the
 * client's connect; the server's connection once accepted, whose total
 * starts at the SYN-ACKs the listener sent again, already counted below),
 * and, at every later change up to its close, what the retransmit program
 * missed is added. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(trawl_tcp_state, struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP_)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	int open = newstate == TCP_SYN_SENT || (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED);
	struct retrans_seen *seen = bpf_sk_storage_get(&retrans_seen, sk, 0, open ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (!seen)
		return 0;
	if (!seen->valid) {
		if (open) {
			seen->valid = 1;
			seen->total = tp->total_retrans;
		}
		return 0;
	}
	catch_up(sk, tp, seen);
	return 0;
}

/* A listener's SYN-ACK sent again (the connection is a request socket
 * still): one segment. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(trawl_tcp_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	add_retrans(&req->__req_common, req->__req_common.skc_num, 1);
	return 0;
}
