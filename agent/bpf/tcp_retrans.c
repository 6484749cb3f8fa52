//go:build ignore

/* Retransmitted TCP segments of the node's own sockets (every network
 * namespace of the machine: the node's and its pods'), recorded for the
 * agent, which adds them to the flow of the retransmitting socket's
 * direction (agent/collect/retrans.go).
 *
 * tp_btf/tcp_retransmit_skb fires for a connected socket's retransmission,
 * tp_btf/tcp_retransmit_synack for a listener's SYN-ACK sent again, and
 * tp_btf/inet_sock_set_state on a socket's state changes. Each writes one
 * slot: the socket's tuple (the packets' as the socket sent them, before any
 * NAT of the node: how flow.c keys its entries), the socket's identity, its
 * total_retrans (what `ss -ti` shows as retrans:x/TOTAL; the kernel adds to
 * it exactly what it adds to TcpRetransSegs) and this event's segments. The
 * agent counts each socket from its total (docs/tcp-health.md, Retransmits).
 *
 * Why slots and not the flow entry: a retransmission comes once every few
 * hundred kB of a flow, so a lookup in flow.c's map (131,072 entries,
 * vmalloc'd in 4K pages) misses the caches and the TLB, in a VM a nested
 * page walk: that lookup was most of this program's cost. The slots are a
 * small array map that the agent reads every 50 ms, which keeps their lines
 * warm; up to 32 KiB (two CPUs' rows) the kernel kmallocs it, in its
 * huge-page linear map, above that it is vmalloc'd too (each CPU's row is
 * still about one page, not a walk through buckets and elements).
 *
 * The ring: one row per CPU and program (a tp_btf program does not nest in
 * itself on a CPU, but the retransmit program may interrupt the state
 * program there), a head counting the row's events, and RETRANS_SLOTS slots
 * that event n writes at n % RETRANS_SLOTS. The writer fills the slot, then
 * advances the head; on x86 (the only target these objects are built for)
 * stores are seen in program order, and the compiler barrier keeps that
 * order in the object. The agent reads rows with plain map lookups, which
 * copy a row while it may be written: it trusts a slot only when the heads
 * it read before and after prove the copy whole (collect/retrans.go), and
 * counts the events overwritten before it could read them. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "common.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#include "retrans.h"

/* For bpf2go -type: the agent decodes slots with these. */
const struct retrans_slot *unused_retrans_slot __attribute__((unused));
const enum retrans_kind *unused_retrans_kind __attribute__((unused));
const enum retrans_row *unused_retrans_row __attribute__((unused));

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

/* Linux 6.13+ passes the transmit's error and fires on failures too. */
#define ENOBUFS_ 105
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(trawl_tcp_retransmit, struct sock *sk, const struct sk_buff *skb, int err)
{
	/* tcp_retransmit_skb only ever has a full TCP socket: a cast the
	 * verifier inlines, not bpf_skc_to_tcp_sock, a helper call whose
	 * checks read socket fields nothing else here needs (the benchmark's
	 * variants reads and reads_cast: 62 against 56 ns per event, medians
	 * of 5 runs, not resolved; single runs before showed up to 90 ns). */
	struct tcp_sock *tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
	/* What this event added to the socket's total, needed only when the
	 * agent meets a socket whose start it did not see: the kernel adds a
	 * retransmission's segments to TcpRetransSegs and total_retrans once
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
	record(ROW_RETRANSMIT, sk, tp, RETRANS_EVENT, segs);
	return 0;
}

/* A TCP socket's state changes: after a retransmission (its FIN, its
 * close) they carry the socket's total, so what the retransmit program
 * missed is counted; an accepted connection whose listener sent its SYN-ACK
 * again starts its count there. A socket that never retransmitted returns
 * at once. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(trawl_tcp_state, struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP_)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !tp->total_retrans)
		return 0;
	int accepted = oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED;
	record(ROW_STATE, sk, tp, accepted ? RETRANS_ACCEPTED : RETRANS_STATE, 0);
	return 0;
}

/* A listener's SYN-ACK sent again (the connection is a request socket
 * still): one segment. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(trawl_tcp_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	record_event(ROW_SYNACK, &req->__req_common, req->__req_common.skc_num, 0, 0, 1, RETRANS_SYNACK);
	return 0;
}
