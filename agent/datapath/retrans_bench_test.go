package datapath

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/internal/testbed"
)

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -go-package datapath -output-suffix _test -target bpfel retransVariants ../bpf/retrans_variants.c -- -I../bpf -D__TARGET_ARCH_x86 -mcpu=v3 -O2 -g -Wall -Werror

// BenchmarkRetransmitTracepoint measures the in-kernel cost of one run of
// the retransmit program (tp_btf/tcp_retransmit_skb), and of the state
// program beside it (tp_btf/inet_sock_set_state), during lossy TCP
// transfers between two pods of a test bed, with the flow program attached
// in the node as in production, the kfree_skb program beside it as a
// reference, and the agent's reading of the retransmit rings (every 50 ms,
// as the collector does; it keeps their lines warm). One iteration is a
// 1 MB transfer through 5 % loss; kernel-ns/event is the kernel's
// run_time_ns / run_cnt (BPF run-time stats, enabled for the benchmark only
// through BPF_ENABLE_STATS, which the kernel turns off again when its file
// descriptor closes: kernel.bpf_stats_enabled reads 1 meanwhile).
// empty-ns/event is an empty program on the same tracepoint in the same
// runs: what the stats themselves (two clock reads per run, in this VM a
// paravirtual clock) and the dispatch cost, which every program pays;
// net-ns/event is the measured program's own work above that.
//
// The sub-benchmarks: program=production is the agent's program; the
// variant=... ones are parts of it (retrans_variants.c), each attached
// alone (the production programs detached) so no other program warms the
// lines it touches: reads (the socket conversion and the tuple's reads),
// lookup (those, then the flow entry's lookup the program made before the
// rings), reads_cast (reads through bpf_rdonly_cast instead of the
// bpf_skc_to_tcp_sock helper, as the production program reads),
// lookup_cast (those, then the lookup), ring_noid (the production program
// without the socket's identity), ring_cookie_helper (with
// bpf_get_socket_cookie as the identity).
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
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	transfers := func(b *testing.B) {
		buf := make([]byte, 1<<20)
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
	}

	b.Run("program=production", func(b *testing.B) {
		stop := readRings(dp.Retrans.RetransRings)
		defer stop()
		measureRetrans(b, dp, dp.Retrans.TrawlTcpRetransmit, dp.Retrans.TrawlTcpState, transfers)
	})

	// The variants run alone: the production programs are detached for
	// good (the last sub-benchmark above was theirs).
	for _, l := range dp.retransLinks {
		l.Close()
	}
	dp.retransLinks = nil
	spec, err := loadRetransVariants()
	if err != nil {
		b.Fatal(err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		b.Fatal(err)
	}
	spec.Maps["retrans_rings"].MaxEntries = uint32(cpus) * uint32(bpf.TcpRetransRetransRowRETRANS_ROWS_PER_CPU)
	var vars retransVariantsObjects
	if err := spec.LoadAndAssign(&vars, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"flows": dp.Flow.Flows}}); err != nil {
		b.Fatalf("load the variant programs: %v", err)
	}
	defer vars.Close()
	for _, v := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"reads", vars.VariantReads},
		{"lookup", vars.VariantLookup},
		{"reads_cast", vars.VariantReadsCast},
		{"lookup_cast", vars.VariantLookupCast},
		{"ring_noid", vars.VariantRingNoid},
		{"ring_cookie_helper", vars.VariantRingCookieHelper},
	} {
		b.Run("variant="+v.name, func(b *testing.B) {
			l, err := link.AttachTracing(link.TracingOptions{Program: v.prog})
			if err != nil {
				b.Fatalf("attach variant %s: %v", v.name, err)
			}
			defer l.Close()
			stop := readRings(vars.RetransRings)
			defer stop()
			measureRetrans(b, dp, v.prog, nil, transfers)
		})
	}
}

// readRings copies every row of a retransmit ring map every 50 ms, as the
// collector does, until stop is called.
func readRings(m *ebpf.Map) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		var row bpf.TcpRetransRetransRing
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for i := uint32(0); i < m.MaxEntries(); i++ {
					m.Lookup(i, &row)
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// measureRetrans runs transfers with an empty program beside prog on its
// tracepoint and reports prog's (and state's, when not nil) cost per run.
func measureRetrans(b *testing.B, dp *Datapath, prog, state *ebpf.Program, transfers func(*testing.B)) {
	empty := attachEmptyTracing(b, "tcp_retransmit_skb")
	before := runStats(b, prog)
	emptyBefore := runStats(b, empty)
	var stateBefore progStats
	if state != nil {
		stateBefore = runStats(b, state)
	}
	dropBefore := runStats(b, dp.dropProg)
	b.ResetTimer()
	transfers(b)
	b.StopTimer()
	after := runStats(b, prog)
	emptyAfter := runStats(b, empty)
	dropAfter := runStats(b, dp.dropProg)
	// The state program runs on every TCP state change of the machine (a
	// connection has about eight, both ends on this machine): its cost per
	// run, and per connection of the loop.
	if state != nil {
		stateAfter := runStats(b, state)
		if d := stateAfter.runs - stateBefore.runs; d > 0 {
			b.ReportMetric(float64(stateAfter.ns-stateBefore.ns)/float64(d), "state-ns/run")
			b.ReportMetric(float64(d)/float64(b.N), "state-runs/op")
		}
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
