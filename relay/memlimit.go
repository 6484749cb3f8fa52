package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
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

// memoryLimit is the value of --memory-limit: bytes, 0 for auto (a share
// of the cgroup's memory limit, if any), -1 for off.
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
