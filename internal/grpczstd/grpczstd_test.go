package grpczstd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

// agentBatch is a batch as an agent sends it: 1,000 aggregated records of
// a node with 50 pods talking to 200 addresses, before the relay adds pods,
// labels and policies.
func agentBatch(seed uint64) *ingestv1.Batch {
	r := rand.New(rand.NewPCG(seed, 1))
	now := time.Now()
	b := &ingestv1.Batch{NodeName: "node-7", BootId: "3f1c2d9e-5b7a-4c11-9e0f-2a6b8c4d1e70", Sequence: seed, SentAt: timestamppb.New(now)}
	for i := 0; i < 1000; i++ {
		pod := r.IntN(50)
		seen := now.Add(-time.Duration(r.IntN(5000)) * time.Millisecond)
		f := &flowv1.Flow{
			Time:             timestamppb.New(seen),
			Uuid:             fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), seed&0xffff, 0x8000|i, r.IntN(1<<16), r.Uint64()&(1<<48-1)),
			Verdict:          flowv1.Verdict_FORWARDED,
			IP:               &flowv1.IP{Source: fmt.Sprintf("10.244.7.%d", 10+pod), Destination: fmt.Sprintf("10.244.%d.%d", r.IntN(8), 10+r.IntN(25)), IpVersion: flowv1.IPVersion_IPv4},
			L4:               &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: uint32(32768 + r.IntN(28000)), DestinationPort: []uint32{80, 443, 5432, 8080}[r.IntN(4)], Flags: &flowv1.TCPFlags{ACK: true, PSH: r.IntN(2) == 0}}}},
			Type:             flowv1.FlowType_L3_L4,
			NodeName:         "node-7",
			Interface:        &flowv1.NetworkInterface{Index: uint32(100 + pod), Name: fmt.Sprintf("cali%08x", uint32(pod)*2654435761)},
			TrafficDirection: flowv1.TrafficDirection_EGRESS,
			EventKind:        flowv1.EventKind_AGGREGATE,
			FirstSeen:        timestamppb.New(seen.Add(-time.Duration(r.IntN(4000)) * time.Millisecond)),
			LastSeen:         timestamppb.New(seen),
			Packets:          uint64(1 + r.IntN(500)),
			Bytes:            uint64(60 + r.IntN(700000)),
			Netns:            4026532000 + uint64(pod),
			ObservationPoint: "tcx-ingress",
		}
		b.Flows = append(b.Flows, f)
	}
	return b
}

func TestMessagesOfEverySizeRoundTrip(t *testing.T) {
	c := encoding.GetCompressor(Name)
	if c == nil {
		t.Fatal("zstd is not registered with gRPC")
	}
	for _, size := range []int{0, 1, 100, 64 << 10, 3 << 20} {
		msg := make([]byte, size)
		r := rand.New(rand.NewPCG(uint64(size), 2))
		for i := range size / 2 { // half noise, half zeros
			msg[i] = byte(r.Uint32())
		}
		z, err := compress(msg)
		if err != nil {
			t.Fatal(err)
		}
		// Twice, so that a pooled decoder is reused.
		for i := 0; i < 2; i++ {
			r, err := c.Decompress(bytes.NewReader(z))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("%d bytes: round trip gave %d bytes, %v", size, len(got), err)
			}
		}
	}
}

func TestGarbageIsAnErrorNotAPanic(t *testing.T) {
	r, err := encoding.GetCompressor(Name).Decompress(bytes.NewReader([]byte("not a zstd frame at all")))
	if err == nil {
		_, err = io.ReadAll(r)
	}
	if err == nil {
		t.Fatal("garbage decompressed without an error")
	}
}

// wireBytes counts the compressed payload bytes a client sends.
type wireBytes struct {
	stats.Handler
	n int
}

func (w *wireBytes) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (w *wireBytes) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (w *wireBytes) HandleConn(context.Context, stats.ConnStats)                       {}
func (w *wireBytes) HandleRPC(_ context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.OutPayload); ok {
		w.n += p.WireLength
	}
}

func TestAServerDecompressesWhatAClientCompressesWithZstd(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()
	var wire wireBytes
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithStatsHandler(&wire))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A long, repetitive service name: compressible, and the server must
	// decode it to answer "unknown service".
	name := string(bytes.Repeat([]byte("trawl.ingest.v1.Ingest/"), 400))
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: name}, grpc.UseCompressor(Name))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("unknown service")) {
		t.Fatalf("Check: %v (want the server's unknown service answer)", err)
	}
	if raw := proto.Size(&healthpb.HealthCheckRequest{Service: name}); wire.n <= 0 || wire.n*10 > raw {
		t.Errorf("sent %d bytes on the wire for a %d-byte message", wire.n, raw)
	}
}

// BenchmarkCodecs compares the candidates on agent batches: bytes on the
// wire per flow and the CPU of compressing (agent) and decompressing (relay).
func BenchmarkCodecs(b *testing.B) {
	msgs := make([][]byte, 8)
	for i := range msgs {
		m, err := proto.Marshal(agentBatch(uint64(i + 1)))
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = m
	}
	for _, name := range []string{"identity", gzip.Name, Name} {
		c := encoding.GetCompressor(name)
		b.Run(name+"/compress", func(b *testing.B) {
			var wire int
			for i := 0; b.Loop(); i++ {
				msg := msgs[i%len(msgs)]
				if c == nil {
					wire += len(msg)
					continue
				}
				var buf bytes.Buffer
				w, _ := c.Compress(&buf)
				w.Write(msg)
				w.Close()
				wire += buf.Len()
			}
			b.ReportMetric(float64(wire)/float64(b.N)/1000, "wireB/flow")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/flow")
		})
		if c == nil {
			continue
		}
		zs := make([][]byte, len(msgs))
		for i, m := range msgs {
			var buf bytes.Buffer
			w, _ := c.Compress(&buf)
			w.Write(m)
			w.Close()
			zs[i] = buf.Bytes()
		}
		b.Run(name+"/decompress", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				r, _ := c.Decompress(bytes.NewReader(zs[i%len(zs)]))
				io.Copy(io.Discard, r)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/flow")
		})
	}
}

// The encoder survives garbage collections: a message compressed after two
// collections must not pay for a new encoder (several MiB). With a
// sync.Pool it did, and an agent collecting every second or two rebuilt
// its encoders all the time.
func TestAnEncoderIsKeptAcrossGarbageCollections(t *testing.T) {
	msg := bytes.Repeat([]byte("k8s:app=svc-1 team-01/svc-1-7d9f0001 "), 10000) // 360 KiB: a 1,000-flow batch is a few hundred KiB
	if _, err := compress(msg); err != nil {                                    // builds the encoder
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC() // a sync.Pool is empty after two
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := compress(msg); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("compressing %d bytes after two collections allocated %d bytes: the encoder was built again", len(msg), got)
	}
}
