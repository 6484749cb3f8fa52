package scale

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/dev/chtest"
)

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) { l.t.Logf("%s", p); return len(p), nil }

// Two relays behind one balancer, ClickHouse as two shards: follow through
// either relay sees every node (--peers), and killing one relay mid-load
// loses no acknowledged flow and stores none twice (resends reach the other
// relay and ClickHouse de-duplicates them).
func TestTwoRelaysTwoShards(t *testing.T) {
	chtest.SkipShort(t)
	ctx := context.Background()
	dir := t.TempDir()
	bin := filepath.Join(dir, "trawl-relay")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/trawl-dev/trawl/relay/cmd/trawl-relay").CombinedOutput(); err != nil {
		t.Fatalf("build trawl-relay: %v\n%s", err, out)
	}
	shards, err := StartShards(ctx, dir, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(shards.Close)
	if err := shards.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	relays := make([]*Relay, 2)
	for i := range relays {
		if relays[i], err = NewRelay(bin, shards.RelayDSN(i), testLog{t}); err != nil {
			t.Fatal(err)
		}
	}
	relays[0].Peers, relays[1].Peers = []string{relays[1].Observer}, []string{relays[0].Observer}
	for _, r := range relays {
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
	}
	lb, err := NewBalancer(relays[0].Ingest, relays[1].Ingest)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lb.Close)
	followers := make([]*Follower, 2)
	for i, r := range relays {
		if followers[i], err = Follow(r.Observer); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(followers[i].Close)
	}
	time.Sleep(time.Second) // the follows reach the peers

	const agents, chunks = 4, 12
	var nodes []string
	ags := make([]*Agent, agents)
	for i := range ags {
		nodes = append(nodes, fmt.Sprintf("scale-node-%d", i))
		if ags[i], err = StartAgent(lb.Addr, nodes[i], fmt.Sprintf("boot-%d", i), 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ags[i].Stop)
	}
	publish := func(n int) {
		var wg sync.WaitGroup
		for _, a := range ags {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for c := 0; c < n; c++ {
					a.PublishChunk(time.Now())
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
	}

	publish(chunks / 2)
	for _, a := range ags {
		if n := a.Drain(60 * time.Second); n != 0 {
			t.Fatalf("agent %s: %d batches unacknowledged before the kill", a.Node, n)
		}
	}
	if lb.PerBackend[0] == 0 || lb.PerBackend[1] == 0 {
		t.Fatalf("connections per relay %v: want agents on both", lb.PerBackend)
	}
	// Follow through either relay sees all nodes.
	deadline := time.Now().Add(30 * time.Second)
	for i, f := range followers {
		for {
			seen, err := f.Nodes()
			missing := 0
			for _, n := range nodes {
				if seen[n] == 0 {
					missing++
				}
			}
			if missing == 0 {
				break
			}
			if err != nil || time.Now().After(deadline) {
				t.Fatalf("follow through relay %d sees flows of %v (error %v), want all of %v", i, seen, err, nodes)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Kill relay 0 while the agents publish: its agents reconnect through
	// the balancer to relay 1 and resend what was not acknowledged.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); publish(chunks / 2) }()
	time.Sleep(60 * time.Millisecond)
	relays[0].Kill()
	wg.Wait()
	var sent, lost uint64
	var sentBatches, ackedBatches float64
	for _, a := range ags {
		if n := a.Drain(120 * time.Second); n != 0 {
			t.Fatalf("agent %s: %d batches unacknowledged after the kill", a.Node, n)
		}
		sent += a.Published()
		lost += a.Lost()
		sentBatches += a.Metric("trawl_agent_batches_sent_total")
		ackedBatches += a.Metric("trawl_agent_batches_acked_total")
	}
	t.Logf("batches acked %.0f, sent %.0f (resends included)", ackedBatches, sentBatches)
	if lost != 0 {
		t.Fatalf("shippers counted %d records lost, want 0 (buffers are large enough)", lost)
	}
	conn, err := shards.Conn(1)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := Count(ctx, conn, nodes)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent and acked %d, rows %d, distinct %d, connections per relay %v", sent, c.Rows, c.Distinct, lb.PerBackend)
	if want := uint64(agents * chunks * ChunkRecords); sent != want {
		t.Fatalf("sent %d, want %d", sent, want)
	}
	if c.Distinct != sent {
		t.Errorf("%d distinct flows stored, want every acknowledged one: %d (lost %d)", c.Distinct, sent, int64(sent)-int64(c.Distinct))
	}
	if c.Duplicates() != 0 {
		t.Errorf("%d duplicate rows stored", c.Duplicates())
	}
	if c.LostEvents != 0 {
		t.Errorf("lost-event records count %d lost, want 0", c.LostEvents)
	}
	var perShard []uint64
	for i := range shards.Servers {
		sc, err := shards.Conn(i)
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		err = sc.QueryRow(ctx, "SELECT count() FROM "+Database+".flows_local WHERE node IN ?", nodes).Scan(&n)
		sc.Close()
		if err != nil {
			t.Fatal(err)
		}
		perShard = append(perShard, n)
	}
	if perShard[0] == 0 || perShard[1] == 0 {
		t.Errorf("rows per shard %v: want both shards used", perShard)
	}
	// The surviving relay's follow still sees every node (all agents now
	// send to it).
	if _, err := followers[1].Nodes(); err != nil {
		t.Errorf("follow through relay 1 ended: %v", err)
	}
}
