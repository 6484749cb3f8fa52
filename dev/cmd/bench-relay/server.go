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
	cpu0 := serverCPU()
	path()
	if *settle > 0 {
		waitMerges(ctx, conn, db, *settle)
	}
	return (serverCPU() - cpu0) / (float64(*nFlows) / 1e6)
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
