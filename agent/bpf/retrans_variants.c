//go:build ignore

/* Benchmark only (agent/datapath/retrans_bench_test.go): parts of the
 * retransmit program on tp_btf/tcp_retransmit_skb, to price each step of an
 * event. Each returns what it computed (a raw tracepoint's return value is
 * free) so the compiler keeps the work. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "common.h"
#include "retrans.h"

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

char __license[] SEC("license") = "Dual BSD/GPL";

FLOWS_MAP /* replaced by the datapath's flow map */

/* The socket conversion and the reads the tuple needs, on the stack. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(variant_reads, struct sock *sk, const struct sk_buff *skb, int err)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	struct flow_key key = {};
	if (!tuple_of(&key.tuple, &sk->__sk_common, bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport)))
		return 0;
	__u32 *w = (__u32 *)&key;
	return w[0] ^ w[4] ^ w[8] ^ tp->total_retrans;
}

/* The same, then the flow entry's lookup (the program before the rings). */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(variant_lookup, struct sock *sk, const struct sk_buff *skb, int err)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	struct flow_key key = {};
	if (!tuple_of(&key.tuple, &sk->__sk_common, bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport)))
		return 0;
	struct flow_agg *st = bpf_map_lookup_elem(&flows, &key);
	return st ? 1 + tp->total_retrans : 0;
}

/* The lookup after reads through the cast (as the production program
 * reads): what the rings replace. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(variant_lookup_cast, struct sock *sk, const struct sk_buff *skb, int err)
{
	struct tcp_sock *tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
	struct flow_key key = {};
	if (!tuple_of(&key.tuple, &sk->__sk_common, bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport)))
		return 0;
	struct flow_agg *st = bpf_map_lookup_elem(&flows, &key);
	return st ? 1 + tp->total_retrans : 0;
}

/* The production program's slot without the socket's identity. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(variant_ring_noid, struct sock *sk, const struct sk_buff *skb, int err)
{
	struct tcp_sock *tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
	record_slot(ROW_RETRANSMIT, sk, tp, RETRANS_EVENT, 1, 0);
	return 0;
}

/* The ring slot with bpf_get_socket_cookie as the identity, which makes a
 * cookie at a socket's first call. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(variant_ring_cookie_helper, struct sock *sk, const struct sk_buff *skb, int err)
{
	struct tcp_sock *tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
	record_slot(ROW_RETRANSMIT, sk, tp, RETRANS_EVENT, 1, bpf_get_socket_cookie(sk));
	return 0;
}

/* The reads of variant_reads through bpf_rdonly_cast (inlined by the
 * verifier) instead of the bpf_skc_to_tcp_sock helper. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(variant_reads_cast, struct sock *sk, const struct sk_buff *skb, int err)
{
	struct tcp_sock *tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
	struct flow_key key = {};
	if (!tuple_of(&key.tuple, &sk->__sk_common, bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport)))
		return 0;
	__u32 *w = (__u32 *)&key;
	return w[0] ^ w[4] ^ w[8] ^ tp->total_retrans;
}
