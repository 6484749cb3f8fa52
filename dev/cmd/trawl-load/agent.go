package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/dev/e2e/scale"
)

// agentStatus is what an agent process prints, one JSON line a second and
// a last one (Final) after SIGTERM.
type agentStatus struct {
	Published uint64 `json:"published"`
	Lost      uint64 `json:"lost"`
	Acked     uint64 `json:"acked_batches"`
	Unacked   int    `json:"unacked_batches"`
	Final     bool   `json:"final"`
}

// runAgent is one synthetic agent process: the shipper publishing rate
// records a second until SIGTERM, then, like trawl-agent, a drain.
func runAgent(args []string) error {
	fs := flag.NewFlagSet("agent", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:4246", "relay ingest address")
	node := fs.String("node", "soak-node-0", "node name")
	boot := fs.String("boot", "boot-1", "boot id")
	rate := fs.Float64("rate", 10000, "records per second")
	buffer := fs.Int("buffer", 16<<20, "shipper buffer, bytes (trawl-agent --buffer-size)")
	drain := fs.Duration("drain", shipper.DefaultDrainTimeout, "wait for acknowledgements after SIGTERM (as trawl-agent's --shutdown-drain)")
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := scale.StartAgent(*addr, *node, *boot, *buffer)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	status := func(final bool, unacked int) {
		if !final {
			unacked, _ = a.Sh.Stats()
		}
		_ = enc.Encode(agentStatus{Published: a.Published(), Lost: a.Lost(), Acked: uint64(a.Metric("trawl_agent_batches_acked_total")), Unacked: unacked, Final: final})
	}
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	report := time.NewTicker(time.Second)
	defer report.Stop()
	var chunks uint64
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-report.C:
			status(false, 0)
		case now := <-tick.C:
			due := uint64(now.Sub(start).Seconds() * *rate / scale.ChunkRecords)
			for ; chunks < due; chunks++ {
				a.PublishChunk(now)
			}
		}
	}
	unacked := a.Drain(*drain)
	a.Stop()
	status(true, unacked)
	if unacked > 0 {
		fmt.Fprintf(os.Stderr, "agent %s: %d batches unacknowledged at exit\n", *node, unacked)
	}
	return nil
}
