package shipper_test

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trawl-dev/trawl/agent/export"
	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/agent/shipper/shippertest"
	"github.com/trawl-dev/trawl/internal/flowid"
	"github.com/trawl-dev/trawl/internal/tlsconfig"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func TestNewRefusesUnclearTransportChoices(t *testing.T) {
	tests := []struct {
		name string
		cfg  shipper.Config
		ok   bool
	}{
		{"no node name", shipper.Config{Insecure: true}, false},
		{"plaintext and TLS files together", shipper.Config{NodeName: "n", Insecure: true, TLS: tlsconfig.Files{CA: "/ca.pem"}}, false},
		{"a certificate without its key", shipper.Config{NodeName: "n", TLS: tlsconfig.Files{Cert: "/c.pem"}}, false},
		{"plaintext when asked for", shipper.Config{NodeName: "n", Insecure: true}, true},
		{"TLS with the system roots by default", shipper.Config{NodeName: "n"}, true},
		{"an unknown compression", shipper.Config{NodeName: "n", Insecure: true, Compression: "lz5"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := shipper.New(tc.cfg, nil)
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want success %v", err, tc.ok)
			}
		})
	}
}

func TestFlagsFillTheConfig(t *testing.T) {
	var cfg shipper.Config
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	shipper.RegisterFlags(fs, &cfg)
	if cfg.Addr != shipper.DefaultAddr || cfg.BufferBytes != shipper.DefaultBufferBytes || cfg.Insecure || cfg.Compression != "zstd" || cfg.DrainTimeout != 20*time.Second {
		t.Fatalf("defaults %+v", cfg)
	}
	err := fs.Parse([]string{"--relay", "relay:4246", "--buffer-size", "1024", "--relay-compression", "gzip", "--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-server-name", "trawl-relay", "--shutdown-drain", "5s"})
	if err != nil {
		t.Fatal(err)
	}
	want := tlsconfig.Files{Cert: "c.pem", Key: "k.pem", CA: "ca.pem", ServerName: "trawl-relay"}
	if cfg.Addr != "relay:4246" || cfg.BufferBytes != 1024 || cfg.TLS != want || cfg.Compression != "gzip" || cfg.DrainTimeout != 5*time.Second {
		t.Fatalf("parsed %+v", cfg)
	}
}

// fakeRelay answers Hello with Welcome, acks every batch and hands the
// batches to the test.
type fakeRelay struct {
	ingestv1.UnimplementedIngestServiceServer
	batches chan *ingestv1.Batch
}

func (f *fakeRelay) Stream(st ingestv1.IngestService_StreamServer) error {
	if _, err := st.Recv(); err != nil {
		return err
	}
	if err := st.Send(&ingestv1.StreamResponse{Msg: &ingestv1.StreamResponse_Welcome{Welcome: &ingestv1.Welcome{}}}); err != nil {
		return err
	}
	for {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		if b := m.GetBatch(); b != nil {
			f.batches <- b
			ack := &ingestv1.Ack{BootId: b.GetBootId(), Sequence: b.GetSequence()}
			if err := st.Send(&ingestv1.StreamResponse{Msg: &ingestv1.StreamResponse_Ack{Ack: ack}}); err != nil {
				return err
			}
		}
	}
}

// startFakeRelay serves a fakeRelay on a loopback port until the test ends.
func startFakeRelay(t *testing.T, opts ...grpc.ServerOption) (*fakeRelay, string) {
	t.Helper()
	relay := &fakeRelay{batches: make(chan *ingestv1.Batch, 4)}
	g := grpc.NewServer(opts...)
	ingestv1.RegisterIngestServiceServer(g, relay)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return relay, lis.Addr().String()
}

// compressionSeen records the grpc-encoding of the streams a server gets.
type compressionSeen struct {
	mu   sync.Mutex
	seen []string
}

func (c *compressionSeen) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (c *compressionSeen) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c *compressionSeen) HandleConn(context.Context, stats.ConnStats) {}
func (c *compressionSeen) HandleRPC(_ context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		c.mu.Lock()
		c.seen = append(c.seen, h.Compression)
		c.mu.Unlock()
	}
}

func TestEveryCompressionDeliversTheBatchAndSaysWhichItUses(t *testing.T) {
	for _, tc := range []struct{ flag, header string }{
		{"", "zstd"}, // the default
		{"zstd", "zstd"},
		{"gzip", "gzip"},
		{"none", ""},
	} {
		t.Run("compression "+tc.flag, func(t *testing.T) {
			seen := &compressionSeen{}
			relay, addr := startFakeRelay(t, grpc.StatsHandler(seen))
			s := shippertest.Start(t, addr, shipper.Config{Compression: tc.flag, BatchRecords: 1}, nil)
			s.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{DropReasonKernel: "NO_SOCKET"}}, NodeName: "node-a"})
			select {
			case b := <-relay.batches:
				if len(b.GetFlows()) != 1 || b.GetFlows()[0].GetDropReasonKernel() != "NO_SOCKET" {
					t.Fatalf("batch %v", b)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no batch reached the relay")
			}
			seen.mu.Lock()
			defer seen.mu.Unlock()
			if len(seen.seen) == 0 || seen.seen[0] != tc.header {
				t.Errorf("the relay saw grpc-encoding %q, want %q", seen.seen, tc.header)
			}
		})
	}
}

// A stopping agent drains: the open batch goes out and Drain returns once
// the relay acknowledged it; with no relay, it returns what is left when
// its time is up.
func TestDrainWaitsForTheRelaysAckAndReturnsWhatIsLeft(t *testing.T) {
	rec := &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{DropReasonKernel: "NO_SOCKET"}}, NodeName: "node-a"}

	relay, addr := startFakeRelay(t)
	s := shippertest.Start(t, addr, shipper.Config{}, nil)
	s.Publish(rec) // in the open batch: only the drain closes it
	if batches, _ := s.Drain(10 * time.Second); batches != 0 {
		t.Fatalf("%d batches unacknowledged after draining to a relay that acks", batches)
	}
	select {
	case <-relay.batches:
	default:
		t.Fatal("Drain returned before the batch reached the relay")
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := lis.Addr().String()
	lis.Close() // nothing listens there: nothing acks
	s = shippertest.Start(t, gone, shipper.Config{}, nil)
	s.Publish(rec)
	if batches, bytes := s.Drain(300 * time.Millisecond); batches != 1 || bytes == 0 {
		t.Fatalf("draining with no relay left %d batches (%d bytes), want the 1 published", batches, bytes)
	}
}

// The agent's collector sets a record's id where it makes it, and the same
// record goes to --output jsonl and to the shipper: the shipper must ship
// that id unchanged, so jsonl, ClickHouse and observe show one id. Only a
// record without an id gets one derived from its batch.
func TestShipperKeepsTheCollectorsIDAndDerivesOnlyMissingOnes(t *testing.T) {
	relay, addr := startFakeRelay(t)
	s := shippertest.Start(t, addr, shipper.Config{BatchRecords: 2, FlushInterval: time.Hour}, nil)

	// What the collector publishes: an id derived from (node, boot, its
	// record sequence, 0), written as-is by --output jsonl.
	collected := &flowv1.Flow{Uuid: flowid.Derive("node-a", s.BootID(), 41, 0)}
	var jsonl bytes.Buffer
	out := export.Multi{export.NewJSONLines(&jsonl), s}
	out.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: collected}, NodeName: "node-a"})
	out.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{}}, NodeName: "node-a"})

	var line observerv1.GetFlowsResponse
	if err := protojson.Unmarshal(bytes.SplitN(jsonl.Bytes(), []byte("\n"), 2)[0], &line); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-relay.batches:
		if len(b.GetFlows()) != 2 {
			t.Fatalf("batch holds %d flows, want 2", len(b.GetFlows()))
		}
		if got, want := b.GetFlows()[0].GetUuid(), line.GetFlow().GetUuid(); got != want || want != collected.GetUuid() {
			t.Errorf("shipped id %s, jsonl id %s, collector's id %s: want one id", got, want, collected.GetUuid())
		}
		if got, want := b.GetFlows()[1].GetUuid(), flowid.Derive("node-a", s.BootID(), b.GetSequence(), 1); got != want {
			t.Errorf("record without id shipped as %q, want %s (derived from its batch)", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no batch reached the relay")
	}
}
