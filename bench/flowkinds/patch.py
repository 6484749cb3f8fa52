#!/usr/bin/env python3
"""Bench-only build of agent/bpf/flow.c with run-time figures per packet kind.

Usage: patch.py SRC_DIR  (a copy of agent/bpf, changed in place; any version
since e85251f). The tc program's account() call is timed with two precise
clock reads and the time added to kind_ns[kind] (per CPU: count, ns), so two
builds (before and after TCP health) show which packets of a connection pay
the difference. The clock reads and the bookkeeping cost the same in every
build; compare builds, not absolute figures. BenchmarkFlowProgramLive prints
kind_ns when the object has it. Never for production: it is not in gen.go.
"""
import re, sys

path = sys.argv[1] + "/flow.c"
src = open(path).read()

decl = r'''
/* bench-only: see bench/flowkinds/patch.py */
struct kind_stat { __u64 n, ns; };
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct kind_stat);
} kind_ns SEC(".maps");
/* Set inside account(): 1 = an existing entry whose flags so far are SYN
 * only (the client's handshake ACK comes next), 2 = a new entry. */
volatile __u32 kind_hint;
enum { K_SYN_NEW, K_SYNACK_NEW, K_HS_ACK, K_ACK, K_DATA, K_FIN, K_RST, K_OTHER };
static __always_inline void kind_add(struct parsed *p, struct __sk_buff *skb, __u64 ns)
{
	__u16 f = p->tcp_flags;
	__u32 k = K_OTHER, h = kind_hint;
	int payload = skb->len - p->l3_off > p->hdr_len;
	if (p->t.proto != IPPROTO_TCP_)
		k = K_OTHER;
	else if ((f & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN && h == 2)
		k = K_SYN_NEW;
	else if ((f & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == (TCP_FLAG_SYN | TCP_FLAG_ACK) && h == 2)
		k = K_SYNACK_NEW;
	else if (f & TCP_FLAG_RST)
		k = K_RST;
	else if (f & TCP_FLAG_FIN)
		k = K_FIN;
	else if (h == 2 || (f & TCP_FLAG_SYN))
		k = K_OTHER;
	else if (payload)
		k = K_DATA;
	else if (h == 1)
		k = K_HS_ACK;
	else
		k = K_ACK;
	struct kind_stat *s = bpf_map_lookup_elem(&kind_ns, &k);
	if (s) {
		s->n++;
		s->ns += ns;
	}
}
'''
anchor = "static __always_inline void send_event("
assert src.count(anchor) == 1
src = src.replace(anchor, decl + "\n" + anchor)

# hints inside account()
a = "\tstruct flow_agg *st = bpf_map_lookup_elem(&flows, key);\n\tif (st) {\n"
assert src.count(a) == 1, "account's lookup"
src = src.replace(a, a + "\t\tkind_hint = st->tcp_flags == TCP_FLAG_SYN;\n")
b = "\tlong err = bpf_map_update_elem(&flows, key, &fresh, BPF_NOEXIST);\n"
assert src.count(b) == 1
src = src.replace(b, "\tkind_hint = 2;\n" + b)

# time the tc program's account() call
m = re.search(r"\n(\taccount\(&key, \(__u64\)bpf_cast_to_kern_ctx\(skb\)[^;]*;)\n", src)
assert m, "handle's account call"
call = m.group(1)
src = src.replace(call, "\t__u64 kt0 = bpf_ktime_get_ns();\n" + call +
                  "\n\tkind_add(&p, skb, bpf_ktime_get_ns() - kt0);")
open(path, "w").write(src)
