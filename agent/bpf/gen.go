// Package bpf holds Trawl's eBPF programs (C, CO-RE against vmlinux.h) and
// their bpf2go bindings. The generated objects and Go files are committed so
// that building the agent needs no clang; `make bpf` regenerates them.
//
// One C file per concern: flow.c (flow aggregation: tcx where packets enter
// the node, netfilter LOCAL_OUT for what the node sends, and new connections
// per source for the conntrack samples), drop.c (kfree_skb drops with the
// kernel's reason, taken back out of their flow's delivered count), dns.h
// (DNS messages copied to user space by flow.c's programs), tcp.h (TCP
// handshake times and zero windows, in flow.c's programs), tcp_retrans.c
// (segments the node's sockets retransmit, added to their flow). skb.h
// reads headers from a kernel sk_buff; common.h holds the shared layouts. Record types are generated from the C structs
// (bpf2go -type), never written twice.
package bpf

// vmlinux.h is regenerated with:
//   bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -go-package bpf -target bpfel -type flow_key -type flow_agg -type flow_event -type flow_tuple -type counter -type event_kind -type hook -type ct_src_key -type dns_event Flow flow.c -- -I. -D__TARGET_ARCH_x86 -mcpu=v3 -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -go-package bpf -target bpfel -type retrans_slot -type retrans_ring -type retrans_kind -type retrans_row TcpRetrans tcp_retrans.c -- -I. -D__TARGET_ARCH_x86 -mcpu=v3 -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -go-package bpf -target bpfel -type drop_key -type drop_agg -type drop_event -type reason_flag Drop drop.c -- -I. -D__TARGET_ARCH_x86 -mcpu=v3 -O2 -g -Wall -Werror
