package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/trawl-dev/trawl/dev/e2e/scale"
)

// runBufMem measures what the shipper's buffer costs in memory: records are
// published to a relay that is not there until the buffer (--buffer-size,
// counted in encoded batch bytes) drops, and the process's RSS and live heap
// are read before the shipper is made, once it is made (the buffer is
// resident from then on) and once the buffer is full.
func runBufMem(args []string) error {
	fs := flag.NewFlagSet("bufmem", flag.ExitOnError)
	buffer := fs.Int("buffer", 16<<20, "shipper buffer, bytes")
	_ = fs.Parse(args)
	addr, err := scale.FreeAddr() // nothing listens there
	if err != nil {
		return err
	}
	read := func() (rss, heap float64) {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		_, rss, _ = scale.ProcStat(os.Getpid())
		return rss, float64(m.HeapAlloc) / (1 << 20)
	}
	rss0, heap0 := read()
	a, err := scale.StartAgent(addr, "bufmem-node", "boot-1", *buffer)
	if err != nil {
		return err
	}
	defer a.Stop()
	rss1, heap1 := read()
	for a.Lost() == 0 {
		a.PublishChunk(time.Now())
	}
	a.Sh.Flush()
	rss2, heap2 := read()
	batches, bytes := a.Sh.Stats()
	records := batches * scale.ChunkRecords
	fmt.Printf("buffer %d bytes: full at %d batches, %d counted bytes (%.0f B per record)\n", *buffer, batches, bytes, float64(bytes)/float64(records))
	fmt.Printf("RSS MiB: %.1f before the shipper, %.1f once made (+%.1f), %.1f with the buffer full (+%.1f)\n", rss0, rss1, rss1-rss0, rss2, rss2-rss1)
	fmt.Printf("live heap MiB: %.1f before, %.1f once made, %.1f with the buffer full (+%.1f, %.2f× the counted bytes)\n", heap0, heap1, heap2, heap2-heap1, (heap2-heap1)*(1<<20)/float64(bytes))
	return nil
}
