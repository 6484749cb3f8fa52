package main

import (
	"context"
	"fmt"
	"log"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// serverCost runs an insert path and returns the ClickHouse server's CPU
// seconds per 1M flows it cost: the server process's CPU from the path's
// start until its database has no merge running (at most -settle after the
// path ends), so the merges of the parts it wrote are charged to it, not to
// the next path. NaN when the server's process is unknown.
//
// It is the whole server's CPU: anything else the server does meanwhile
// (another path's merges that outlived their settle, system tables) is in
// it too, which is why each path waits for its own merges.
func serverCost(ctx context.Context, conn driver.Conn, db string, path func()) float64 {
	cpu0, t0 := serverCPU(), time.Now()
	path()
	t1 := time.Now()
	if *settle > 0 {
		waitMerges(ctx, conn, db, *settle)
	}
	cpu := serverCPU() - cpu0
	// Level-0 parts are the path's inserts into flows; merged ones stay
	// listed (inactive) for minutes. The rows per insert decide how much
	// the rollups aggregate at insert time.
	var inserts, rows uint64
	if err := conn.QueryRow(ctx, "SELECT count(), sum(rows) FROM system.parts WHERE database = ? AND table = 'flows' AND level = 0", db).Scan(&inserts, &rows); err == nil && inserts > 0 {
		log.Printf("%s: %d inserts into flows, %.0f rows each on average", db, inserts, float64(rows)/float64(inserts))
	}
	// Merges that ran within the charge (parts above level 0, merged away
	// or not) against the parts still active, which merges not yet begun
	// will rewrite after the charge ends: a path that ends before its
	// merges start is charged less than one whose merges ran in it.
	var merged, mergedRows, active uint64
	if err := conn.QueryRow(ctx, "SELECT countIf(level > 0), sumIf(rows, level > 0), countIf(active) FROM system.parts WHERE database = ? AND table = 'flows'", db).Scan(&merged, &mergedRows, &active); err == nil {
		log.Printf("%s: flows parts from merges within the charge %d (%d rows), active parts at its end %d", db, merged, mergedRows, active)
	}
	// How long the server was charged, and what idling that long costs
	// (idleServerCPU), tell a slow path's extra server CPU from its work.
	log.Printf("%s: server charged %.2f CPU s over %.1f s (path %.1f s, settle %.1f s)", db, cpu, time.Since(t0).Seconds(), t1.Sub(t0).Seconds(), time.Since(t1).Seconds())
	return cpu / (float64(*nFlows) / 1e6)
}

// idleServerCPU returns the server's CPU seconds per second while no path
// runs: its background work (asynchronous metrics, the merge and cleanup
// schedulers), which serverCost charges to every path for as long as it
// runs. NaN when the server's process is unknown.
func idleServerCPU(d time.Duration) float64 {
	cpu0, t0 := serverCPU(), time.Now()
	time.Sleep(d)
	return (serverCPU() - cpu0) / time.Since(t0).Seconds()
}

// waitMerges returns once db has had no merge running in two checks half a
// second apart, or after limit.
func waitMerges(ctx context.Context, conn driver.Conn, db string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	quiet := 0
	for quiet < 2 && time.Now().Before(deadline) {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = ?", db).Scan(&n); err != nil {
			log.Fatalf("ask for the merges of %s: %v", db, err)
		}
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func serverCPU() float64 {
	if *serverPID == 0 {
		return math.NaN()
	}
	cpu, _ := procStat(*serverPID)
	return cpu
}

func cpuCell(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// countQueryCPU returns the server's CPU seconds per `SELECT count()` of a
// flows table, the query runRelay polls with to see when a run ends: its
// share of the relay path's server CPU is polls × this.
func countQueryCPU(ctx context.Context, conn driver.Conn, db string) float64 {
	const n = 200
	cpu0 := serverCPU()
	for range n {
		var c uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".flows").Scan(&c); err != nil {
			log.Fatalf("count the flows of %s: %v", db, err)
		}
	}
	return (serverCPU() - cpu0) / n
}
