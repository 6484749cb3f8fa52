package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory: at full ingest the relay's live heap is set by its writer queue
// (--insert-queue-bytes: the queued batches decoded, the columns of the two
// inserts being encoded and sent, the ClickHouse client's buffers), and Go's
// collector lets the heap grow to twice the live heap before it runs: with
// the default queue the benchmark's fully labelled records peak near
// 800 MiB (docs/benchmarks/relay.md), under the relay pod's 1 GiB limit. A
// soft limit below the container's makes the collector work harder near it
// instead of the kernel killing the relay; below the limit, collecting half
// as often (GOGC 200) saves CPU (measured in docs/benchmarks/relay.md).
// While the relay holds a memory budget (below), GOGC is the budget's.

// memoryLimit is the value of --memory-limit and --memory-budget: bytes, 0
// for auto, -1 for off.
type memoryLimit struct{ dst *int64 }

func (m memoryLimit) String() string {
	switch {
	case m.dst == nil || *m.dst == 0:
		return "auto"
	case *m.dst < 0:
		return "off"
	}
	return strconv.FormatInt(*m.dst, 10)
}

func (m memoryLimit) Type() string { return "bytes" }

func (m memoryLimit) Set(s string) error {
	v, err := parseMemoryLimit(s)
	if err != nil {
		return err
	}
	*m.dst = v
	return nil
}

// parseMemoryLimit reads "auto", "off" or a size such as 900MiB, 1GiB,
// 512M or 1000000 (bytes).
func parseMemoryLimit(s string) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto", "":
		return 0, nil
	case "off", "none":
		return -1, nil
	}
	num, mul := strings.TrimSpace(s), int64(1)
	for _, u := range []struct {
		suffix string
		mul    int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mul = strings.TrimSpace(n), u.mul
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mul {
		return 0, fmt.Errorf("%q: want auto, off or a size such as 900MiB or 1GiB", s)
	}
	return n * mul, nil
}

// cgroupShare is the part of the cgroup memory limit given to the Go heap
// and runtime; the rest covers what the runtime does not count (page
// cache charged to the cgroup, memory returned to the OS lazily).
const cgroupShare = 0.9

// cgroupMemoryLimit returns the memory limit of the cgroup this process is
// in (v2 memory.max or v1 memory.limit_in_bytes) under root (normally
// /sys/fs/cgroup), given the content of /proc/self/cgroup; 0 when there is
// none.
func cgroupMemoryLimit(root string, procSelfCgroup []byte) int64 {
	var candidates []string
	sc := bufio.NewScanner(bytes.NewReader(procSelfCgroup))
	for sc.Scan() {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			candidates = append(candidates, filepath.Join(root, parts[2], "memory.max"))
		case strings.Contains(","+parts[1]+",", ",memory,"):
			candidates = append(candidates, filepath.Join(root, "memory", parts[2], "memory.limit_in_bytes"))
		}
	}
	// Inside a cgroup namespace the own cgroup is the root.
	candidates = append(candidates, filepath.Join(root, "memory.max"), filepath.Join(root, "memory", "memory.limit_in_bytes"))
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 { // v1 writes "no limit" as a huge number
			return 0
		}
		return n
	}
	return 0
}

// applyMemoryLimit sets the Go runtime's soft memory limit from limit
// (bytes; 0: auto from the cgroup; <0: off) unless GOMEMLIMIT is set, and
// with a limit in place collects at GOGC 200 unless GOGC is set. It returns
// the limit applied (0: none) and a function restoring the previous
// settings.
func applyMemoryLimit(limit int64) (int64, func()) {
	if limit < 0 || os.Getenv("GOMEMLIMIT") != "" {
		return 0, func() {}
	}
	if limit == 0 {
		cg, _ := os.ReadFile("/proc/self/cgroup")
		limit = int64(float64(cgroupMemoryLimit("/sys/fs/cgroup", cg)) * cgroupShare)
	}
	if limit <= 0 {
		return 0, func() {}
	}
	prevLimit := debug.SetMemoryLimit(limit)
	prevGC := -2
	if os.Getenv("GOGC") == "" {
		prevGC = debug.SetGCPercent(200)
	}
	return limit, func() {
		debug.SetMemoryLimit(prevLimit)
		if prevGC != -2 {
			debug.SetGCPercent(prevGC)
		}
	}
}

// The relay's heap budget: the memory it is sized for, taken at start and
// held whatever the load.
//
// Left to GOGC the collector runs when the heap has grown by its live part,
// so the heap goal (and the RSS, since the runtime returns pages above the
// goal) follows the load: a relay with no agents sat at ~47 MiB, one with
// half the agents at ~115, one catching up after a ClickHouse stop at ~300
// (docs/benchmarks/relay.md, "Soak: flat memory"). The operator sizes for
// the last figure anyway. So the relay holds its heap goal at a fixed
// budget instead:
//
//   - after every collection GOGC is set so that the next goal is the
//     budget: the garbage allowed between collections is whatever the live
//     heap leaves of it, not a multiple of the live heap. The runtime has
//     no hook at the end of a collection, so a goroutine looks every
//     heapTuneEvery (a cleanup of an object dropped in the collection came
//     seconds late under load: a goal computed with the idle heap's GOGC
//     for the loaded heap's live part, 390 MB, took a relay to 411 MiB);
//   - the heap's pages are touched up to 95 % of the goal at start, and an idle
//     relay gets a collection at the goal every heapKeepEvery, because the
//     runtime keeps about 110 % of the heap in use at the last collection
//     and returns the rest: a relay whose only collections are the
//     runtime's two-minute ones would give its pages back and take them
//     again when the load comes.
//
// Why not a memory limit with GOGC off (tried, docs/benchmarks/relay.md,
// "The relay's memory budget: measured, and reverted"): at its limit the
// runtime returns pages to stay 5 % under it, and takes them again on the
// next allocations (synchronous scavenging, page faults), every cycle; it
// cost +16 % relay CPU at full ingest. Below, the goal is the budget and
// the memory limit (if any) stays well above it.

// heapBudgetMinGOGC is the least GOGC the budget sets: when the live heap
// leaves less than a third of the budget to garbage (more agents' streams
// than the queue accounts for), the goal goes over the budget instead of
// the collector running back to back; that is logged.
const heapBudgetMinGOGC = 50

// heapKeepEvery: an idle relay (no collection for this long) allocates up
// to its goal so that a collection runs there, keeping its pages. What it
// must come before is the runtime's own collection, forced two minutes
// after the last one whatever the heap (forcegcperiod): that one ends low.
// Not sooner: at 30 s (before) a relay at half load filled its heap every
// cycle, and once the fill met the catch-up after a ClickHouse stop (30 s
// of no allocation, then the queued agents at once): both together went
// past the goal while the collection marked, +12 MB of heap from the OS
// in two seconds (docs/benchmarks/relay.md, "Compression to ClickHouse").
const heapKeepEvery = 90 * time.Second

// heapTuneEvery is how soon after a collection GOGC is set for the next:
// at full ingest (~70 MB/s allocated) the heap grows by ~1.4 MB meanwhile.
const heapTuneEvery = 20 * time.Millisecond

// autoHeapBudget is --memory-budget auto: 3 × --insert-queue-bytes + 8 MiB,
// 200 MiB with the default 64 MiB queue. The live heap at full ingest was
// measured at ~3 × the queue when the queue held decoded batches (94–106 MB
// with 32 MiB); now it holds columns, which take less than the batches'
// encoded bytes, and with 64 MiB the live heap stayed within the two
// thirds of 200 MiB that leave the collector half of it for garbage (no
// over-budget warning in three full-ingest runs at ~167k flows/s, peak RSS
// 239–247 MiB; docs/benchmarks/relay.md, "Inserts of 50,000 rows"). The
// 8 MiB are what does not scale with the queue (Hubble's series, caches).
func autoHeapBudget(queueBytes int) int64 { return 3*int64(queueBytes) + 8<<20 }

// heapBudget holds the runtime's heap goal at bytes (see above).
type heapBudget struct {
	bytes  uint64
	log    *slog.Logger
	over   bool // the last tune could not keep the goal at the budget
	done   chan struct{}
	exited chan struct{}
}

// One budget per process: the runtime's GOGC is global, and tests run
// several relays in one process.
var (
	heapBudgetMu   sync.Mutex
	heapBudgetHeld bool
)

// holdHeapBudget holds the heap at bytes until the returned function is
// called (which restores GOGC). It does nothing (held false) when GOGC is
// set in the environment (it wins), bytes ≤ 0, or another relay of this
// process holds a budget already.
func holdHeapBudget(bytes int64, log *slog.Logger) (release func(), held bool) {
	if bytes <= 0 || os.Getenv("GOGC") != "" {
		return func() {}, false
	}
	heapBudgetMu.Lock()
	defer heapBudgetMu.Unlock()
	if heapBudgetHeld {
		return func() {}, false
	}
	heapBudgetHeld = true
	b := &heapBudget{bytes: uint64(bytes), log: log, done: make(chan struct{}), exited: make(chan struct{})}
	prev := debug.SetGCPercent(b.gogc())
	b.fill()
	// run sets GOGC after the collections it sees end; the fill's may have
	// ended before it starts, and the GOGC set above for the heap before
	// the fill would then stay: a goal of ~390 MB once the load came.
	debug.SetGCPercent(b.gogc())
	go b.run()
	return func() {
		close(b.done)
		<-b.exited
		debug.SetGCPercent(prev)
		heapBudgetMu.Lock()
		heapBudgetHeld = false
		heapBudgetMu.Unlock()
	}, true
}

var heapBudgetMetrics = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// gogc is the GOGC that makes the next heap goal the budget: the runtime's
// goal is live + (live + stacks + globals) × GOGC / 100, live being the
// heap the last collection found reachable.
func (b *heapBudget) gogc() int {
	s := make([]metrics.Sample, len(heapBudgetMetrics))
	for i, n := range heapBudgetMetrics {
		s[i].Name = n
	}
	metrics.Read(s)
	live := s[0].Value.Uint64()
	scanned := live + s[1].Value.Uint64() + s[2].Value.Uint64()
	pct := 0
	if b.bytes > live && scanned > 0 {
		pct = int((b.bytes - live) * 100 / scanned)
	}
	over := pct < heapBudgetMinGOGC
	pct = max(pct, heapBudgetMinGOGC)
	if b.over != over {
		b.over = over
		if over {
			b.log.Warn("live heap too large for the memory budget: the heap goes over it", "live_bytes", live, "budget_bytes", b.bytes, "gogc", pct)
		} else {
			b.log.Info("heap back within the memory budget", "live_bytes", live, "budget_bytes", b.bytes)
		}
	}
	return pct
}

// heapFillObject is what fill allocates at a time: the largest object
// whose span is a single page, so that any free page of the heap can take
// it. With 1 MiB objects (before) each needed a run of 128 free pages: a
// relay stalled on a ClickHouse outage (no allocation, so the idle fill ran
// 30 s in) had a heap fragmented by its full queue, found no such runs and
// took 28 MB of new pages from the OS, +26 MiB RSS in the outage's minute
// (docs/benchmarks/relay.md, "The idle fill and a fragmented heap").
const heapFillObject = 8192

// heapFillCheck: fill reads the runtime's metrics once per this many bytes.
const heapFillCheck = 1 << 20

// fill allocates and drops memory, touching each page, until the heap
// holds 95 % of its goal (the collection it triggers on the way runs with
// nearly the whole budget in use, so the runtime keeps those pages) or a
// collection finished, at most twice the budget. Not past the goal: while
// a collection marks, allocating 1 MiB at a time outruns it, and a fill
// that went on until the collection ended took relays to 317–334 MiB RSS.
func (b *heapBudget) fill() {
	pageSize := os.Getpagesize()
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	start := s[0].Value.Uint64()
	for n := uint64(0); n < 2*b.bytes; n += heapFillCheck {
		for range heapFillCheck / heapFillObject {
			p := heapObject()
			for i := 0; i < len(p); i += pageSize {
				p[i] = 1
			}
		}
		metrics.Read(s)
		if s[0].Value.Uint64() != start || s[1].Value.Uint64() >= s[2].Value.Uint64()/100*95 {
			return
		}
	}
}

// heapObject allocates one fill object on the heap: returned, it escapes;
// made and dropped in fill, small as it is, it would live on the stack.
//
//go:noinline
func heapObject() []byte { return make([]byte, heapFillObject) }

func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// run sets GOGC after every collection, and fills the heap when none ran
// for heapKeepEvery (see heapBudget), until the budget is released.
func (b *heapBudget) run() {
	defer close(b.exited)
	t := time.NewTicker(heapTuneEvery)
	defer t.Stop()
	last, lastAt := gcCycles(), time.Now()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
		}
		if n := gcCycles(); n != last {
			debug.SetGCPercent(b.gogc())
			last, lastAt = n, time.Now()
			continue
		}
		if time.Since(lastAt) >= heapKeepEvery {
			b.fill()
		}
	}
}
