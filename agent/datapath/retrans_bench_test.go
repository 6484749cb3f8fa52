package datapath

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/internal/testbed"
)

// BenchmarkRetransmitTracepoint measures the in-kernel cost of one run of
// the retransmit program (tp_btf/tcp_retransmit_skb), and of the state
// program beside it (tp_btf/inet_sock_set_state), during lossy TCP
// transfers between two pods of a test bed, with the flow program attached
// in the node so the program finds its flow's entry as in production, and
// the kfree_skb program beside it as a reference. One
// iteration is a 1 MB transfer through 5 % loss; kernel-ns/event is the
// kernel's run_time_ns / run_cnt (BPF run-time stats, enabled for the
// benchmark only through BPF_ENABLE_STATS, which the kernel turns off again
// when its file descriptor closes: kernel.bpf_stats_enabled reads 1
// meanwhile). empty-ns/event is an empty program on the same tracepoint in
// the same runs: what the stats themselves (two clock reads per run, in this
// VM a paravirtual clock) and the dispatch cost, which every program pays;
// net-ns/event is the retransmit program's own work above that.
func BenchmarkRetransmitTracepoint(b *testing.B) {
	bed := testbed.NewT(b, testbed.Config{Pods: []string{"client", "server"}})
	client, server := bed.Pod("client"), bed.Pod("server")
	var dp *Datapath
	if err := bed.Node.Do(func() (err error) {
		dp, err = Open(Config{})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	if dp.Retrans == nil {
		b.Fatalf("retransmit program not attached: %s", dp.Features.Detail["tcp_retransmit"])
	}
	ctx := context.Background()
	remove, err := bed.Loss(ctx, client, 5)
	if err != nil {
		b.Fatal(err)
	}
	defer remove()
	ln, err := server.Listen("tcp", net.JoinHostPort(server.IP.String(), "0"))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()

	empty := attachEmptyTracing(b, "tcp_retransmit_skb")
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	before := runStats(b, dp.Retrans.TrawlTcpRetransmit)
	emptyBefore := runStats(b, empty)
	stateBefore := runStats(b, dp.Retrans.TrawlTcpState)
	dropBefore := runStats(b, dp.dropProg)
	buf := make([]byte, 1<<20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := client.Dial(ctx, "tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.StopTimer()
	after := runStats(b, dp.Retrans.TrawlTcpRetransmit)
	emptyAfter := runStats(b, empty)
	stateAfter := runStats(b, dp.Retrans.TrawlTcpState)
	dropAfter := runStats(b, dp.dropProg)
	// The state program runs on every TCP state change of the machine (a
	// connection has about eight, both ends on this machine): its cost per
	// run, and per connection of the loop.
	if d := stateAfter.runs - stateBefore.runs; d > 0 {
		b.ReportMetric(float64(stateAfter.ns-stateBefore.ns)/float64(d), "state-ns/run")
		b.ReportMetric(float64(d)/float64(b.N), "state-runs/op")
	}
	// The kfree_skb program in the same runs, a reference for what the
	// machine's load does to a rarely run program: each lost packet is one
	// of its runs.
	if d := dropAfter.runs - dropBefore.runs; d > 0 {
		b.ReportMetric(float64(dropAfter.ns-dropBefore.ns)/float64(d), "kfree_skb-ns/run")
	}
	runs, ns := after.runs-before.runs, after.ns-before.ns
	b.ReportMetric(float64(runs)/float64(b.N), "events/op")
	if runs == 0 {
		return // a short run (the framework's first, b.N = 1) may lose nothing
	}
	var per []uint64
	if err := dp.Retrans.Counters.Lookup(uint32(bpf.FlowCounterCNT_RETRANS_NO_FLOW), &per); err == nil {
		var miss uint64
		for _, v := range per {
			miss += v
		}
		b.ReportMetric(float64(miss), "no-flow")
	}
	perEvent := float64(ns) / float64(runs)
	b.ReportMetric(perEvent, "kernel-ns/event")
	if d := emptyAfter.runs - emptyBefore.runs; d > 0 {
		emptyPer := float64(emptyAfter.ns-emptyBefore.ns) / float64(d)
		b.ReportMetric(emptyPer, "empty-ns/event")
		b.ReportMetric(perEvent-emptyPer, "net-ns/event")
	}
}

// attachEmptyTracing attaches a program that only returns to the raw
// tracepoint tp (as tp_btf), detached and closed when the benchmark ends.
func attachEmptyTracing(b *testing.B, tp string) *ebpf.Program {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "trawl_empty",
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceRawTp,
		AttachTo:     tp,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		b.Fatalf("load an empty tp_btf/%s program: %v", tp, err)
	}
	b.Cleanup(func() { prog.Close() })
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		b.Fatalf("attach an empty tp_btf/%s program: %v", tp, err)
	}
	b.Cleanup(func() { l.Close() })
	return prog
}

type progStats struct{ runs, ns uint64 }

func runStats(b *testing.B, p *ebpf.Program) progStats {
	st, err := p.Stats()
	if err != nil {
		b.Fatal(err)
	}
	return progStats{st.RunCount, uint64(st.Runtime)}
}
