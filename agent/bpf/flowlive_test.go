package bpf

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/trawl-dev/trawl/internal/testbed"
)

// BenchmarkFlowProgramLive measures the flow program's in-kernel cost per
// TCP packet on live traffic between two pods of a test bed: the program
// at tcx ingress of both pods' host veths (every pod-to-pod packet enters
// the node through one of them, as in production), BPF run-time stats on
// for the benchmark only (BPF_ENABLE_STATS). kernel-ns/packet is
// run_time_ns / run_cnt over the timed loop; kernel-ns/conn the same time
// per connection. TRAWL_FLOW_OBJECT=path runs another build of flow.c (see
// BenchmarkFlowProgram), so two objects are compared by interleaved runs of
// one test binary, without any flag in the agent.
//
//   - conn-per-request: one iteration is one connection (connect, a 64-byte
//     request, a 64-byte reply, close): a connection's every per-connection
//     cost (new entries, the handshake) on few packets, the worst case.
//   - stream: one iteration is an iperf3 run of TRAWL_STREAM_SECONDS (1 by
//     default), client pinned to CPU 0 and server to CPU 1.
func BenchmarkFlowProgramLive(b *testing.B) {
	objs := loadFlowBench(b)
	bed := testbed.NewT(b, testbed.Config{Pods: []string{"client", "server"}})
	client, server := bed.Pod("client"), bed.Pod("server")
	if err := bed.Node.Do(func() error {
		for _, p := range []*testbed.Pod{client, server} {
			ifc, err := net.InterfaceByName(p.HostVeth)
			if err != nil {
				return err
			}
			l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: objs.TrawlFlowIngress, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return fmt.Errorf("attach tcx ingress of %s: %w", p.HostVeth, err)
			}
			b.Cleanup(func() { l.Close() })
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close()
	measure := func(b *testing.B, conns func() int, run func()) {
		before, err := objs.TrawlFlowIngress.Stats()
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		run()
		b.StopTimer()
		after, err := objs.TrawlFlowIngress.Stats()
		if err != nil {
			b.Fatal(err)
		}
		runs, ns := after.RunCount-before.RunCount, uint64(after.Runtime-before.Runtime)
		if runs == 0 {
			b.Fatal("the flow program did not run")
		}
		b.ReportMetric(float64(ns)/float64(runs), "kernel-ns/packet")
		b.ReportMetric(float64(runs)/float64(b.N), "packets/op")
		if n := conns(); n > 0 {
			b.ReportMetric(float64(ns)/float64(n), "kernel-ns/conn")
		}
		reportKinds(b, objs.TrawlFlowIngress)
	}

	b.Run("conn-per-request", func(b *testing.B) {
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
				var req [64]byte
				if _, err := io.ReadFull(c, req[:]); err == nil {
					c.Write(req[:])
				}
				c.Close()
			}
		}()
		ctx := context.Background()
		measure(b, func() int { return b.N }, func() {
			var buf [64]byte
			for i := 0; i < b.N; i++ {
				c, err := client.Dial(ctx, "tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(buf[:]); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf[:]); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	})

	b.Run("stream", func(b *testing.B) {
		secs := 1
		if s, err := strconv.Atoi(os.Getenv("TRAWL_STREAM_SECONDS")); err == nil && s > 0 {
			secs = s
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(b.N*secs+30)*time.Second)
		defer cancel()
		srv := server.Command(ctx, "iperf3", "-s", "-A", "1", "-B", server.IP.String())
		if err := srv.Start(); err != nil {
			b.Fatalf("iperf3 server: %v", err)
		}
		defer func() { srv.Process.Kill(); srv.Wait() }()
		time.Sleep(300 * time.Millisecond) // the server's listen
		measure(b, func() int { return 0 }, func() {
			for i := 0; i < b.N; i++ {
				if out, err := client.Run(ctx, "iperf3", "-c", server.IP.String(), "-A", "0", "-t", strconv.Itoa(secs)); err != nil {
					b.Fatalf("iperf3 client: %v: %s", err, out)
				}
			}
		})
	})
}

// kindNames name the slots of kind_ns, the per-packet-kind run time of a
// bench-only build of flow.c (bench/flowkinds/patch.py).
var kindNames = []string{"syn-new", "synack-new", "hs-ack", "ack", "data", "fin", "rst", "other"}

// reportKinds prints, for an object built by bench/flowkinds, each packet
// kind's count per iteration and mean ns of the timed account() call. The
// production object has no kind_ns map: then it prints nothing.
func reportKinds(b *testing.B, prog *ebpf.Program) {
	info, err := prog.Info()
	if err != nil {
		b.Fatal(err)
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		if mi, err := m.Info(); err != nil || mi.Name != "kind_ns" {
			continue
		}
		for k, name := range kindNames {
			var per []struct{ N, Ns uint64 }
			if err := m.Lookup(uint32(k), &per); err != nil {
				b.Fatal(err)
			}
			var n, ns uint64
			for _, c := range per {
				n, ns = n+c.N, ns+c.Ns
			}
			if n > 0 {
				b.ReportMetric(float64(n)/float64(b.N), name+"/op")
				b.ReportMetric(float64(ns)/float64(n), name+"-ns")
			}
		}
	}
}
