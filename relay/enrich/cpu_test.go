package enrich

import (
	"testing"

	"github.com/trawl-dev/trawl/dev/cputest"
)

// cpuTimer reports CPU nanoseconds per op next to wall time; see cputest.
type cpuTimer struct{ *cputest.Timer }

func startCPU(b *testing.B) cpuTimer { return cpuTimer{cputest.Start(b)} }

func (c cpuTimer) report(b *testing.B) { c.Report(b) }
