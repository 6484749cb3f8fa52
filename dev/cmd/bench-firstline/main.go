// Command firstline measures the time to the first line of
// `trawl observe --last 20` against a real relay on the embedded ClickHouse
// holding -flows records, and as a baseline the time to the first record of
// the same GetFlows call made directly over gRPC (no CLI process).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/dev/chserver"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay"
)

func main() {
	bin := flag.String("trawl", "bin/trawl", "the trawl binary")
	flows := flag.Int("flows", 200_000, "flows to store first")
	runs := flag.Int("runs", 5, "measurements (the median is reported)")
	flag.Parse()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	ch, err := chserver.Start(ctx, chserver.Config{})
	if err != nil {
		log.Fatalf("clickhouse: %v", err)
	}
	defer ch.Stop()
	cfg := relay.DefaultConfiguration()
	cfg.ObserverAddr, cfg.IngestAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.ClickHouseDSN = "clickhouse://" + ch.Addr + "/default"
	cfg.Insecure = true
	cfg.Log = quiet
	r, err := relay.New(cfg)
	if err != nil {
		log.Fatalf("relay: %v", err)
	}
	go func() {
		if err := r.Run(ctx); err != nil {
			log.Printf("relay: %v", err)
		}
	}()
	s, err := shipper.New(shipper.Config{Addr: r.IngestAddr(), NodeName: "bench", Insecure: true, Log: quiet}, prometheus.NewRegistry())
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = s.Run(ctx) }()
	start := time.Now().Add(-time.Hour)
	for i := range *flows {
		at := start.Add(time.Duration(i) * time.Hour / time.Duration(*flows))
		s.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{
			Time: timestamppb.New(at), Verdict: flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE,
			IP:     &flowv1.IP{Source: "10.1.0.5", Destination: fmt.Sprintf("10.2.%d.%d", i/250%250, i%250), IpVersion: flowv1.IPVersion_IPv4},
			L4:     &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: uint32(30000 + i%30000), DestinationPort: 8080}}},
			Source: &flowv1.Endpoint{Namespace: "shop", PodName: "web"}, Packets: 3, Bytes: 300,
		}}})
		if i%5000 == 4999 {
			waitAcked(s)
		}
	}
	s.Flush()
	waitAcked(s)

	conn, err := grpc.NewClient(r.ObserverAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := observerv1.NewObserverClient(conn)
	var direct, cli []time.Duration
	for range *runs {
		t0 := time.Now()
		st, err := client.GetFlows(ctx, &observerv1.GetFlowsRequest{Number: 20})
		if err != nil {
			log.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			log.Fatal(err)
		}
		direct = append(direct, time.Since(t0))
		for {
			if _, err := st.Recv(); err == io.EOF {
				break
			} else if err != nil {
				log.Fatal(err)
			}
		}

		t0 = time.Now()
		cmd := exec.Command(*bin, "observe", "--last", "20", "--server", r.ObserverAddr())
		out, err := cmd.StdoutPipe()
		if err != nil {
			log.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			log.Fatalf("no first line: %v", err)
		}
		cli = append(cli, time.Since(t0))
		_, _ = io.Copy(io.Discard, out)
		if err := cmd.Wait(); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("flows_stored=%d runs=%d\n", *flows, *runs)
	fmt.Printf("direct_grpc_first_record_ms median=%.1f all=%v\n", ms(median(direct)), direct)
	fmt.Printf("cli_first_line_ms median=%.1f all=%v\n", ms(median(cli)), cli)
	os.Stdout.Sync()
}

func waitAcked(s *shipper.Shipper) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if q, _ := s.Stats(); q == 0 {
			return
		}
		if time.Now().After(deadline) {
			log.Fatal("shipper backlog not acknowledged")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
