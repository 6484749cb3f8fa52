// Command trawl-load loads Trawl at scale on one machine: two trawl-relay
// processes behind one round-robin TCP balancer, ClickHouse as two shards
// (embedded servers, the relay's Distributed tables), synthetic agents (the
// agent's own shipper). See docs/benchmarks/relay.md and docs/sizing.md.
//
//	trawl-load scale   throughput of the pair vs one relay (interleaved runs,
//	                   medians), follow through either relay, a relay killed
//	                   mid-load (sent and acked vs stored, duplicates)
//	trawl-load soak    minutes at half the measured maximum with a relay kill,
//	                   a ClickHouse stop of 30 s and an agent restart; flows
//	                   sent vs stored, RSS every minute, lost-event records
//	trawl-load agent   one synthetic agent process (the soak starts these)
//	trawl-load bufmem  live heap of a full shipper buffer vs its counted bytes
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: trawl-load scale|soak|agent|bufmem [flags] (-h for each)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "scale":
		err = runScale(os.Args[2:])
	case "soak":
		err = runSoak(os.Args[2:])
	case "agent":
		err = runAgent(os.Args[2:])
	case "bufmem":
		err = runBufMem(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want scale, soak, agent or bufmem", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "trawl-load:", err)
		os.Exit(1)
	}
}
