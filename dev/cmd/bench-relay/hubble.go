package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"time"

	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay"
)

// hubbleCompare (issue 12): an in-process relay on the query data set,
// then, interleaved, the time to the first flow of GetFlows with number 20
// on Trawl's observer API and on Hubble's observer.Observer (Cilium's
// generated client), both on the relay's one listener, without and with a
// namespace filter (as `trawl observe -n` and `hubble observe -n` send it:
// source pod "ns/" or destination pod "ns/").
func hubbleCompare(ctx context.Context, dsn, db string) {
	cfg := relay.DefaultConfiguration()
	cfg.ObserverAddr, cfg.IngestAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.ClickHouseDSN = strings.TrimRight(dsn, "/") + "/" + db
	cfg.Insecure = true
	cfg.MemoryLimit = -1
	cfg.Log = slog.New(slog.DiscardHandler)
	r, err := relay.New(cfg)
	if err != nil {
		log.Fatalf("relay.New: %v", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(r.ObserverAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	trawl, hub := observerv1.NewObserverClient(conn), observerpb.NewObserverClient(conn)

	const ns = "team-03/"
	type call struct {
		api, filter string
		run         func() (first, all time.Duration, n int, err error)
	}
	trawlCall := func(allow []*observerv1.FlowFilter) func() (time.Duration, time.Duration, int, error) {
		return func() (time.Duration, time.Duration, int, error) {
			start := time.Now()
			st, err := trawl.GetFlows(ctx, &observerv1.GetFlowsRequest{Number: 20, Allowlist: allow})
			if err != nil {
				return 0, 0, 0, err
			}
			var first time.Duration
			n := 0
			for {
				m, err := st.Recv()
				if err == io.EOF {
					return first, time.Since(start), n, nil
				}
				if err != nil {
					return 0, 0, n, err
				}
				if m.GetFlow() != nil {
					if n == 0 {
						first = time.Since(start)
					}
					n++
				}
			}
		}
	}
	hubbleCall := func(allow []*observerpb.FlowFilter) func() (time.Duration, time.Duration, int, error) {
		return func() (time.Duration, time.Duration, int, error) {
			start := time.Now()
			st, err := hub.GetFlows(ctx, &observerpb.GetFlowsRequest{Number: 20, Whitelist: allow})
			if err != nil {
				return 0, 0, 0, err
			}
			var first time.Duration
			n := 0
			for {
				m, err := st.Recv()
				if err == io.EOF {
					return first, time.Since(start), n, nil
				}
				if err != nil {
					return 0, 0, n, err
				}
				if m.GetFlow() != nil {
					if n == 0 {
						first = time.Since(start)
					}
					n++
				}
			}
		}
	}
	pairs := [][2]call{
		{{"Trawl observer.v1", "none", trawlCall(nil)}, {"Hubble observer.Observer", "none", hubbleCall(nil)}},
		{{"Trawl observer.v1", "namespace " + ns, trawlCall([]*observerv1.FlowFilter{{SourcePod: []string{ns}}, {DestinationPod: []string{ns}}})},
			{"Hubble observer.Observer", "namespace " + ns, hubbleCall([]*observerpb.FlowFilter{{SourcePod: []string{ns}}, {DestinationPod: []string{ns}}})}},
	}
	// One unmeasured call of each first (connection, caches of both paths).
	for _, p := range pairs {
		for _, c := range p {
			if _, _, n, err := c.run(); err != nil || n != 20 {
				log.Fatalf("%s, filter %s: %d flows, %v", c.api, c.filter, n, err)
			}
		}
	}
	fmt.Printf("## GetFlows number 20: Trawl's API vs Hubble's on the same relay (issue 12), %d interleaved runs each\n\n", *hubbleRuns)
	fmt.Println("Time to the first flow (client side, call to first flow message received, loopback gRPC, in-process relay); median of the runs, the order of the two APIs alternating per run.")
	fmt.Println()
	fmt.Println("| filter | Trawl first flow | Hubble first flow | Hubble − Trawl | Hubble / Trawl | Trawl all 20 | Hubble all 20 | per-run differences (ms) |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, p := range pairs {
		var tf, hf, ta, ha, diffs []float64
		for i := 0; i < *hubbleRuns; i++ {
			order := []int{0, 1}
			if i%2 == 1 {
				order = []int{1, 0}
			}
			var first [2]time.Duration
			for _, j := range order {
				f, a, n, err := p[j].run()
				if err != nil || n != 20 {
					log.Fatalf("%s, filter %s: %d flows, %v", p[j].api, p[j].filter, n, err)
				}
				first[j] = f
				if j == 0 {
					tf, ta = append(tf, ms(f)), append(ta, ms(a))
				} else {
					hf, ha = append(hf, ms(f)), append(ha, ms(a))
				}
			}
			diffs = append(diffs, ms(first[1])-ms(first[0]))
		}
		var ds []string
		for _, d := range diffs {
			ds = append(ds, fmt.Sprintf("%+.1f", d))
		}
		fmt.Printf("| %s | %.1f ms | %.1f ms | **%+.1f ms** | %.2f | %.1f ms | %.1f ms | %s |\n",
			p[0].filter, median(tf), median(hf), median(hf)-median(tf), median(hf)/median(tf), median(ta), median(ha), strings.Join(ds, " "))
	}
	fmt.Println()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
