package relay

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestMemoryLimitFlagReadsAutoOffAndSizes(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"auto", 0, false},
		{"off", -1, false},
		{"900MiB", 900 << 20, false},
		{"1GiB", 1 << 30, false},
		{"512Mi", 512 << 20, false},
		{"2G", 2 << 30, false},
		{"1000000", 1000000, false},
		{"-5", 0, true},
		{"lots", 0, true},
		{"1TB", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseMemoryLimit(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseMemoryLimit(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCgroupMemoryLimitIsFoundInV1V2AndNamespacedLayouts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  map[string]string
		cgroup string
		want   int64
	}{
		{"a v2 cgroup with a limit", map[string]string{"kubepods/pod1/memory.max": "1073741824\n"}, "0::/kubepods/pod1\n", 1 << 30},
		{"a v2 cgroup without a limit", map[string]string{"kubepods/pod1/memory.max": "max\n"}, "0::/kubepods/pod1\n", 0},
		{"a namespaced v2 cgroup (own cgroup is the root)", map[string]string{"memory.max": "536870912\n"}, "0::/\n", 512 << 20},
		{"a v1 memory cgroup with a limit", map[string]string{"memory/docker/abc/memory.limit_in_bytes": "268435456\n"}, "4:memory:/docker/abc\n1:cpu:/\n", 256 << 20},
		{"a v1 memory cgroup without a limit", map[string]string{"memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n"}, "4:memory:/docker/abc\n", 0},
		{"no cgroup files", nil, "0::/\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, v := range tc.files {
				full := filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := cgroupMemoryLimit(root, []byte(tc.cgroup)); got != tc.want {
				t.Fatalf("limit %d, want %d", got, tc.want)
			}
		})
	}
}

func TestAnExplicitMemoryLimitIsHeldWithoutCollectingOnTheLiveHeapAndRestored(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "")
	log := slog.New(slog.DiscardHandler)
	before := debug.SetMemoryLimit(-1)
	beforeGC := debug.SetGCPercent(-1)
	debug.SetGCPercent(beforeGC)
	limit, restore := applyMemoryLimit(700<<20, 32<<20, log)
	if limit != 700<<20 {
		t.Fatalf("applied %d, want %d", limit, 700<<20)
	}
	if got := debug.SetMemoryLimit(-1); got != 700<<20 {
		t.Errorf("runtime memory limit %d, want %d", got, 700<<20)
	}
	gc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gc)
	if gc != -1 {
		t.Errorf("GOGC %d under the limit, want off (-1)", gc)
	}
	// A second relay in the process shares the budget; the last one to
	// stop restores the settings.
	second, restore2 := applyMemoryLimit(300<<20, 32<<20, log)
	if second != 700<<20 {
		t.Errorf("second relay applied %d, want the first's %d", second, 700<<20)
	}
	restore()
	if got := debug.SetMemoryLimit(-1); got != 700<<20 {
		t.Errorf("limit %d while the second relay runs, want %d", got, 700<<20)
	}
	restore2()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("limit after restore %d, want %d", got, before)
	}
	if gc := debug.SetGCPercent(beforeGC); gc != beforeGC {
		t.Errorf("GOGC after restore %d, want %d", gc, beforeGC)
	}
	if limit, _ := applyMemoryLimit(-1, 32<<20, log); limit != 0 {
		t.Errorf("--memory-limit off applied %d", limit)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if limit, _ := applyMemoryLimit(700<<20, 32<<20, log); limit != 0 {
		t.Errorf("applied %d although GOMEMLIMIT is set, want the environment to win", limit)
	}
}

func TestTheAutomaticBudgetIsSizedFromTheQueueUnderTheContainersShare(t *testing.T) {
	tests := []struct {
		name                 string
		queue                int
		cgroup               int64
		wantBudget, wantCeil int64
	}{
		{"the default queue without a container limit is 280 MiB", 32 << 20, 0, 280 << 20, 0},
		{"a smaller queue gets a smaller budget", 16 << 20, 0, 152 << 20, 0},
		{"a container limit above the budget leaves it and is the ceiling", 32 << 20, 1000 << 20, 280 << 20, 900 << 20},
		{"a container limit below the budget caps it at 90 %", 32 << 20, 200 << 20, 180 << 20, 180 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, c := autoBudget(tt.queue, tt.cgroup)
			if b != tt.wantBudget || c != tt.wantCeil {
				t.Fatalf("budget %d, ceiling %d; want %d, %d", b, c, tt.wantBudget, tt.wantCeil)
			}
		})
	}
}

func TestTheBudgetIsRaisedWhenTheLiveHeapOutgrowsHalfOfIt(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name                  string
		budget, live, ceiling int64
		want                  int64
	}{
		{"a live heap under half the budget leaves it", 280 * mib, 105 * mib, 0, 280 * mib},
		{"exactly half leaves it", 280 * mib, 140 * mib, 0, 280 * mib},
		{"over half raises it to twice the live heap", 280 * mib, 200 * mib, 0, 400 * mib},
		{"the raise stops at the ceiling", 280 * mib, 200 * mib, 350 * mib, 350 * mib},
		{"a budget already at its ceiling stays", 350 * mib, 300 * mib, 350 * mib, 350 * mib},
		{"it is never lowered", 400 * mib, 50 * mib, 0, 400 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := raisedBudget(tt.budget, tt.live, tt.ceiling); got != tt.want {
				t.Fatalf("raisedBudget(%d, %d, %d) = %d MiB, want %d MiB", tt.budget/mib, tt.live/mib, tt.ceiling/mib, got/mib, tt.want/mib)
			}
		})
	}
}
