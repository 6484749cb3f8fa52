package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/trawl-dev/trawl/dev/e2e/scale"
)

func runScale(args []string) error {
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	relayBin := fs.String("relay", "bin/trawl-relay", "trawl-relay binary")
	flows := fs.Int("flows", 300000, "flows per run")
	runs := fs.Int("runs", 3, "runs of each (one relay, the pair), interleaved")
	agents := fs.Int("agents", 4, "synthetic agents per run")
	killFlows := fs.Int("kill-flows", 200000, "flows of the relay-kill run (0: skip it)")
	dir := fs.String("dir", "", "data directory (default: a temporary one, removed at the end)")
	verbose := fs.Bool("v", false, "show ClickHouse and relay output")
	_ = fs.Parse(args)
	ctx := context.Background()
	if *dir == "" {
		d, err := os.MkdirTemp("", "trawl-scale-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	var out io.Writer
	if *verbose {
		out = os.Stderr
	}
	b, err := newBed(ctx, *relayBin, filepath.Join(*dir, "ch"), out, out, nil)
	if err != nil {
		return err
	}
	defer b.close()
	one, err := scale.NewBalancer(b.relays[0].Ingest)
	if err != nil {
		return err
	}
	defer one.Close()
	pair, err := scale.NewBalancer(b.relays[0].Ingest, b.relays[1].Ingest)
	if err != nil {
		return err
	}
	defer pair.Close()

	var load1, load2 float64
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		_, _ = fmt.Sscan(string(l), &load1)
	}
	fmt.Printf("## Scale-out: one relay vs two behind one address, ClickHouse as 2 shards\n\n")
	fmt.Printf("%d flows per run, %d synthetic agents, runs interleaved (one/pair alternating first)\n\n", *flows, *agents)
	fmt.Println("| run | setup | flows/s | relay CPU s per 1M flows (both relays) | ClickHouse CPU s per 1M flows (both shards) | connections per relay | rows | distinct | follow: nodes seen via relay 0 / relay 1 |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	rates := map[string][]float64{}
	cpus := map[string][]float64{}
	chCPUs := map[string][]float64{}
	chCPU := func() float64 {
		var t float64
		for _, srv := range b.shards.Servers {
			c, _, _ := scale.ProcStat(srv.PID())
			t += c
		}
		return t
	}
	for run := 1; run <= *runs; run++ {
		order := []string{"one", "pair"}
		if run%2 == 0 {
			order = []string{"pair", "one"}
		}
		for _, setup := range order {
			lb := one
			if setup == "pair" {
				lb = pair
			}
			before := append([]int(nil), lb.PerBackend...)
			var fol []*scale.Follower
			for _, r := range b.relays {
				f, err := scale.Follow(r.Observer)
				if err != nil {
					return err
				}
				fol = append(fol, f)
			}
			time.Sleep(500 * time.Millisecond)
			ch0 := chCPU()
			var cpu0 float64
			for _, r := range b.relays {
				c, _, _ := scale.ProcStat(r.PID())
				cpu0 += c
			}
			prefix := fmt.Sprintf("r%d-%s", run, setup)
			el, ags, err := fullSpeed(lb.Addr, prefix, *agents, *flows)
			if err != nil {
				return err
			}
			ch1 := chCPU()
			var cpu1 float64
			for _, r := range b.relays {
				c, _, _ := scale.ProcStat(r.PID())
				cpu1 += c
			}
			var sent uint64
			for _, a := range ags {
				sent += a.Published()
			}
			c, err := scale.Count(ctx, b.conn, nodesOf(ags))
			if err != nil {
				return err
			}
			seen := make([]int, 2)
			for i, f := range fol {
				m, _ := f.Nodes()
				for _, a := range ags {
					if m[a.Node] > 0 {
						seen[i]++
					}
				}
				f.Close()
			}
			conns := make([]string, len(lb.PerBackend))
			for i := range lb.PerBackend {
				conns[i] = fmt.Sprint(lb.PerBackend[i] - before[i])
			}
			rate := float64(sent) / el.Seconds()
			cpu := (cpu1 - cpu0) / (float64(sent) / 1e6)
			rates[setup] = append(rates[setup], rate)
			cpus[setup] = append(cpus[setup], cpu)
			chc := (ch1 - ch0) / (float64(sent) / 1e6)
			chCPUs[setup] = append(chCPUs[setup], chc)
			fmt.Printf("| %d | %s | %.0f | %.2f | %.2f | %s | %d | %d | %d/%d of %d |\n", run, setup, rate, cpu, chc, strings.Join(conns, "/"), c.Rows, c.Distinct, seen[0], seen[1], len(ags))
			if c.Distinct != sent || c.Duplicates() != 0 {
				return fmt.Errorf("run %d %s: sent and acked %d, stored %d distinct, %d duplicates", run, setup, sent, c.Distinct, c.Duplicates())
			}
		}
	}
	fmt.Printf("| **median** | one | %.0f | %.2f | %.2f | | | | |\n", median(rates["one"]), median(cpus["one"]), median(chCPUs["one"]))
	fmt.Printf("| **median** | pair | %.0f | %.2f | %.2f | | | | |\n\n", median(rates["pair"]), median(cpus["pair"]), median(chCPUs["pair"]))
	fmt.Printf("**pair / one: %.2f** (median flows/s)\n\n", median(rates["pair"])/median(rates["one"]))

	if *killFlows > 0 {
		if err := killRun(ctx, b, pair, *agents, *killFlows); err != nil {
			return err
		}
	}
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		_, _ = fmt.Sscan(string(l), &load2)
	}
	fmt.Printf("Load average (1 min) at start %.1f, at end %.1f.\n", load1, load2)
	return nil
}

// killRun: the pair at full speed, relay 1 killed (SIGKILL) a third of the
// way through publishing; its agents reconnect through the balancer to
// relay 0 and resend. Every acknowledged flow must be stored once.
func killRun(ctx context.Context, b *bed, lb *scale.Balancer, agents, flows int) error {
	var el time.Duration
	var ags []*scale.Agent
	var err error
	var names []string
	for i := 0; i < agents; i++ {
		names = append(names, fmt.Sprintf("kill-node-%d", i))
	}
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); el, ags, err = fullSpeed(lb.Addr, "kill", agents, flows) }()
	// Kill once about a third of the flows are stored.
	for {
		c, cerr := scale.Count(ctx, b.conn, names)
		if cerr == nil && c.Rows*3 >= uint64(flows) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	killedAt := time.Since(start)
	b.relays[1].Kill()
	wg.Wait()
	if err != nil {
		return err
	}
	var sent, lost uint64
	var resent, batches float64
	for _, a := range ags {
		sent += a.Published()
		lost += a.Lost()
		resent += a.Metric("trawl_agent_batches_sent_total")
		batches += a.Metric("trawl_agent_batches_acked_total")
	}
	c, cerr := scale.Count(ctx, b.conn, nodesOf(ags))
	if cerr != nil {
		return cerr
	}
	fmt.Printf("### Relay killed mid-load (%d flows, %d agents, relay 1 SIGKILLed %s after the start, all acknowledged after %s)\n\n", flows, agents, killedAt.Round(10*time.Millisecond), el.Round(10*time.Millisecond))
	fmt.Println("| sent and acked | lost (shipper) | batches acked | batches sent incl. resends | rows stored | distinct | missing | duplicates |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	fmt.Printf("| %d | %d | %.0f | %.0f | %d | %d | %d | %d |\n\n", sent-lost, lost, batches, resent, c.Rows, c.Distinct, int64(sent-lost)-int64(c.Distinct), c.Duplicates())
	if err := b.relays[1].Start(ctx); err != nil {
		return fmt.Errorf("restart relay 1: %w", err)
	}
	return nil
}
