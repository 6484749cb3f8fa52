// Package cputest reports CPU nanoseconds per op in benchmarks, beside the
// wall time: on a machine shared with other work, wall time per op measures
// the neighbours too. The one copy of the helper the benchmarks of
// internal/kube, internal/policy and relay/enrich share.
package cputest

import (
	"syscall"
	"testing"
	"time"
)

// Timer measures the CPU time (user+system of the whole process, GC
// included) since Start.
type Timer struct{ start time.Duration }

// Now is the process's CPU time so far.
func Now() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Start resets b's timer and starts measuring CPU time.
func Start(b *testing.B) *Timer { b.ResetTimer(); return &Timer{start: Now()} }

// Report adds the CPU time per op since Start to b's results as cpu-ns/op.
func (c *Timer) Report(b *testing.B) {
	b.ReportMetric(float64(Now()-c.start)/float64(b.N), "cpu-ns/op")
}
