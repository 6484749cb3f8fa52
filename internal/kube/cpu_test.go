package kube

import (
	"syscall"
	"testing"
	"time"
)

// cpuTimer reports CPU nanoseconds per op (user+system time of the whole
// process, GC included) next to wall time: on a machine shared with other
// work, wall time per op measures the neighbours too.
type cpuTimer struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) *cpuTimer { b.ResetTimer(); return &cpuTimer{start: cpuNow()} }

func (c *cpuTimer) report(b *testing.B) {
	b.ReportMetric(float64(cpuNow()-c.start)/float64(b.N), "cpu-ns/op")
}
