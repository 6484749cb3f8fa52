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

// Memory: the relay's memory is a budget it holds flat. The Go runtime's
// soft memory limit is set to it and the collector runs only when the heap
// reaches it (GOGC off), not whenever the heap doubles its live part.
//
// Why: collecting on the live heap made the relay's RSS follow its load. In
// one 8-minute soak a relay sat at 115 MiB carrying half the agents, 165 MiB
// carrying all of them after its peer's kill and 300 MiB catching up after
// a ClickHouse stop (docs/benchmarks/relay.md, "Soak: flat memory"). At its
// budget it sits at one level whatever it carries, which is what the pod is
// sized for; and while the live heap is under half the budget the collector
// runs less often than GOGC 100 would make it.
//
// The budget (--memory-limit auto, the default) is sized from what the relay
// holds at full ingest: a live heap of ~105 MB with the default 32 MiB queue
// (the queued batches' columns, the insert being encoded and sent, the
// streams' decoders). 8 × --insert-queue-bytes + 24 MiB (280 MiB by default)
// leaves the collector more room than the live heap, at most 90 % of the
// container's memory limit (the rest covers what the runtime does not count).
// A live heap that outgrows half the budget (more agents' streams than
// measured here) would make the collector run back to back: the budget is
// then raised to twice the live heap, up to the container's share, and the
// raise is logged. An explicit --memory-limit is held as given.

// memoryLimit is the value of --memory-limit: bytes, 0 for auto (sized from
// the queue, at most a share of the cgroup's memory limit), -1 for off.
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
		return 0, fmt.Errorf("--memory-limit %q: want auto, off or a size such as 900MiB or 1GiB", s)
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

// Sizing of the automatic budget (see the top of this file).
const (
	budgetPerQueueByte = 8
	budgetBase         = 24 << 20
	// budgetCheck is how often the live heap is compared with the budget.
	budgetCheck = time.Second
)

// autoBudget is the budget for a writer queue of queueBytes under a
// container limit of cgroup bytes (0: none).
func autoBudget(queueBytes int, cgroup int64) (budget, ceiling int64) {
	budget = budgetPerQueueByte*int64(queueBytes) + budgetBase
	if cgroup > 0 {
		ceiling = int64(float64(cgroup) * cgroupShare)
		budget = min(budget, ceiling)
	}
	return budget, ceiling
}

// raisedBudget is the budget once the live heap is live bytes: twice the
// live heap when that is over the budget, at most ceiling (0: no ceiling);
// never lower.
func raisedBudget(budget, live, ceiling int64) int64 {
	if 2*live <= budget {
		return budget
	}
	if ceiling > 0 {
		return max(budget, min(2*live, ceiling))
	}
	return 2 * live
}

// budgetUsers counts the relays of this process that applied a memory
// budget: the runtime's settings are global, so the first applies them and
// the last restores them (tests run several relays in one process).
var budgetUsers struct {
	sync.Mutex
	n       int
	restore func()
}

// applyMemoryLimit sets the Go runtime's soft memory limit to limit (bytes;
// 0: the automatic budget for a queue of queueBytes, raised with the live
// heap until the returned function is called; <0: off) and turns collecting
// on the live heap off (GOGC off), unless GOMEMLIMIT or GOGC is set in the
// environment, which win, or another relay of this process holds a budget
// already. It returns the limit applied (0: none) and a function that stops
// raising it and, for the last relay, restores the previous settings.
func applyMemoryLimit(limit int64, queueBytes int, log *slog.Logger) (int64, func()) {
	if limit < 0 || os.Getenv("GOMEMLIMIT") != "" {
		return 0, func() {}
	}
	budgetUsers.Lock()
	defer budgetUsers.Unlock()
	release := func() {
		budgetUsers.Lock()
		defer budgetUsers.Unlock()
		if budgetUsers.n--; budgetUsers.n == 0 {
			budgetUsers.restore()
			budgetUsers.restore = nil
		}
	}
	if budgetUsers.n > 0 {
		budgetUsers.n++
		return debug.SetMemoryLimit(-1), release
	}
	auto := limit == 0
	var ceiling int64
	if auto {
		cg, _ := os.ReadFile("/proc/self/cgroup")
		limit, ceiling = autoBudget(queueBytes, cgroupMemoryLimit("/sys/fs/cgroup", cg))
	}
	prevLimit := debug.SetMemoryLimit(limit)
	prevGC := -2
	if os.Getenv("GOGC") == "" {
		prevGC = debug.SetGCPercent(-1)
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		if auto {
			raiseWithLiveHeap(limit, ceiling, log, stop)
		}
	}()
	budgetUsers.n = 1
	budgetUsers.restore = func() {
		close(stop)
		<-stopped
		debug.SetMemoryLimit(prevLimit)
		if prevGC != -2 {
			debug.SetGCPercent(prevGC)
		}
	}
	return limit, release
}

// raiseWithLiveHeap checks the live heap every budgetCheck until stop is
// closed and raises the runtime's limit from budget as raisedBudget says.
func raiseWithLiveHeap(budget, ceiling int64, log *slog.Logger, stop <-chan struct{}) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(budgetCheck)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			log.Error("the runtime does not report its live heap: the memory budget stays as it is", "bytes", budget)
			return
		}
		live := int64(sample[0].Value.Uint64())
		if next := raisedBudget(budget, live, ceiling); next != budget {
			log.Warn("live heap over half the memory budget: budget raised", "live_bytes", live, "from_bytes", budget, "to_bytes", next)
			budget = next
			debug.SetMemoryLimit(budget)
		}
	}
}
