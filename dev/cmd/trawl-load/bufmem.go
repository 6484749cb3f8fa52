package main

import (
	"flag"
	"fmt"
	"runtime"
	"time"

	"github.com/trawl-dev/trawl/dev/e2e/scale"
)

// runBufMem measures what the shipper's buffer costs in memory: records are
// published to a relay that is not there until the buffer (--buffer-size,
// counted in encoded batch bytes) is full, then the live heap is compared
// with the bytes the shipper counts.
func runBufMem(args []string) error {
	fs := flag.NewFlagSet("bufmem", flag.ExitOnError)
	buffer := fs.Int("buffer", 16<<20, "shipper buffer, bytes")
	_ = fs.Parse(args)
	addr, err := scale.FreeAddr() // nothing listens there
	if err != nil {
		return err
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	a, err := scale.StartAgent(addr, "bufmem-node", "boot-1", *buffer)
	if err != nil {
		return err
	}
	defer a.Stop()
	for a.Lost() == 0 {
		a.PublishChunk(time.Now())
	}
	a.Sh.Flush()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	batches, bytes := a.Sh.Stats()
	records := batches * scale.ChunkRecords
	heap := float64(m1.HeapAlloc) - float64(m0.HeapAlloc)
	fmt.Printf("buffer %d bytes: %d batches, %d counted bytes (%.0f B per record), live heap +%.1f MiB (%.0f B per record, %.1f× the counted bytes)\n",
		*buffer, batches, bytes, float64(bytes)/float64(records), heap/(1<<20), heap/float64(records), heap/float64(bytes))
	return nil
}
