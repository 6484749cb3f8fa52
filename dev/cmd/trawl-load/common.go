package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/trawl-dev/trawl/dev/e2e/scale"
)

// bed is the system under load: two shards, two relays that are each
// other's --peers, a client connection to shard 0.
type bed struct {
	shards *scale.Shards
	relays []*scale.Relay
	conn   driver.Conn
}

func newBed(ctx context.Context, relayBin, dir string, chLog, relayLog io.Writer, relayArgs []string) (*bed, error) {
	b := &bed{}
	var err error
	start := time.Now()
	if b.shards, err = scale.StartShards(ctx, dir, 2, chLog); err != nil {
		return nil, err
	}
	if err := b.shards.Migrate(ctx); err != nil {
		b.close()
		return nil, err
	}
	for i := 0; i < 2; i++ {
		r, err := scale.NewRelay(relayBin, b.shards.RelayDSN(i), relayLog)
		if err != nil {
			b.close()
			return nil, err
		}
		r.Extra = relayArgs
		b.relays = append(b.relays, r)
	}
	b.relays[0].Peers, b.relays[1].Peers = []string{b.relays[1].Observer}, []string{b.relays[0].Observer}
	for _, r := range b.relays {
		if err := r.Start(ctx); err != nil {
			b.close()
			return nil, err
		}
	}
	if b.conn, err = b.shards.Conn(0); err != nil {
		b.close()
		return nil, err
	}
	logf("2 shards (%s, %s) and 2 relays (ingest %s, %s) up in %s", b.shards.Addr(0), b.shards.Addr(1),
		b.relays[0].Ingest, b.relays[1].Ingest, time.Since(start).Round(time.Millisecond))
	return b, nil
}

func (b *bed) close() {
	for _, r := range b.relays {
		r.Stop()
	}
	if b.conn != nil {
		b.conn.Close()
	}
	if b.shards != nil {
		b.shards.Close()
	}
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, time.Now().UTC().Format("15:04:05 ")+format+"\n", a...)
}

// fullSpeed publishes flows records (rounded up to whole chunks) spread over
// agents connected to addr, as fast as the relays take them (each agent
// keeps at most 64 unacknowledged batches, so nothing is dropped), and
// returns the elapsed time until every batch is acknowledged (acks follow
// the ClickHouse insert) and the agents' records.
func fullSpeed(addr, prefix string, agents, flows int) (time.Duration, []*scale.Agent, error) {
	ags := make([]*scale.Agent, agents)
	for i := range ags {
		a, err := scale.StartAgent(addr, fmt.Sprintf("%s-node-%d", prefix, i), "boot-1", 0)
		if err != nil {
			return 0, nil, err
		}
		ags[i] = a
	}
	chunks := (flows + scale.ChunkRecords - 1) / scale.ChunkRecords
	start := time.Now()
	var wg sync.WaitGroup
	unacked := make([]int, agents)
	for i, a := range ags {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := i; c < chunks; c += agents {
				a.PublishChunk(time.Now())
				for {
					n, _ := a.Sh.Stats()
					if n < 64 {
						break
					}
					time.Sleep(2 * time.Millisecond)
				}
			}
			unacked[i] = a.Drain(10 * time.Minute)
		}()
	}
	wg.Wait()
	el := time.Since(start)
	for _, a := range ags {
		a.Stop()
	}
	for i, n := range unacked {
		if n != 0 {
			return el, ags, fmt.Errorf("agent %d: %d batches unacknowledged after 10 minutes", i, n)
		}
	}
	return el, ags, nil
}

func nodesOf(ags []*scale.Agent) []string {
	var out []string
	for _, a := range ags {
		if !slices.Contains(out, a.Node) {
			out = append(out, a.Node)
		}
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
