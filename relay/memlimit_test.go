package relay

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"
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

func TestAnExplicitMemoryLimitIsAppliedAndRestored(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "")
	before := debug.SetMemoryLimit(-1)
	limit, restore := applyMemoryLimit(700 << 20)
	if limit != 700<<20 {
		t.Fatalf("applied %d, want %d", limit, 700<<20)
	}
	if got := debug.SetMemoryLimit(-1); got != 700<<20 {
		t.Errorf("runtime memory limit %d, want %d", got, 700<<20)
	}
	restore()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("limit after restore %d, want %d", got, before)
	}
	if limit, _ := applyMemoryLimit(-1); limit != 0 {
		t.Errorf("--memory-limit off applied %d", limit)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if limit, _ := applyMemoryLimit(700 << 20); limit != 0 {
		t.Errorf("applied %d although GOMEMLIMIT is set, want the environment to win", limit)
	}
}

// heapGoal waits for the runtime's heap goal to satisfy ok (the budget sets
// GOGC in a cleanup that runs after the collection) and returns it.
func heapGoal(t *testing.T, what string, ok func(goal uint64) bool) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		metrics.Read(s)
		if goal := s[0].Value.Uint64(); ok(goal) {
			return goal
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: heap goal %d MiB", what, s[0].Value.Uint64()>>20)
		}
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
}

func residentBytes(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kib, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kib << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

var liveHeap [][]byte

// A held budget is the heap goal whatever the live heap (the collector
// gets what the live heap leaves of it), its pages are resident from the
// start, it goes over the budget only when the live heap leaves the
// collector too little, and GOGC is restored when it is released.
func TestTheMemoryBudgetIsTheHeapGoalWhateverTheLiveHeap(t *testing.T) {
	t.Setenv("GOGC", "")
	const budget = 160 << 20
	near := func(goal uint64) bool { return goal > budget*95/100 && goal < budget*105/100 }
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	runtime.GC()
	rssBefore := residentBytes(t)
	release, held := holdHeapBudget(budget, slog.New(slog.DiscardHandler))
	if !held {
		t.Fatal("budget not held")
	}
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	rss := residentBytes(t)
	if rss < budget*9/10 {
		t.Errorf("resident %d MiB once the budget is held, want at least 90 %% of the %d MiB budget", rss>>20, budget>>20)
	}
	if grown := rss - min(rss, rssBefore); grown > budget*11/10 {
		t.Errorf("holding the budget took the resident memory from %d to %d MiB: more than the %d MiB budget and 10 %%", rssBefore>>20, rss>>20, budget>>20)
	}
	// At once, before any collection of the test's: the fill's own must not
	// leave the goal that GOGC gave the heap before it.
	goalNow := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(goalNow)
	if goal := goalNow[0].Value.Uint64(); !near(goal) {
		t.Errorf("heap goal %d MiB once the budget is held, want the %d MiB budget", goal>>20, budget>>20)
	}
	heapGoal(t, "with a small live heap", near)
	if _, again := holdHeapBudget(budget, slog.New(slog.DiscardHandler)); again {
		t.Error("a second budget was held in the same process")
	}
	for range 50 { // 50 MiB more live heap
		liveHeap = append(liveHeap, make([]byte, 1<<20))
	}
	heapGoal(t, "with 50 MiB more live heap", near)
	for range 100 { // live 150 MiB: the collector would have no room under the budget
		liveHeap = append(liveHeap, make([]byte, 1<<20))
	}
	heapGoal(t, "with a live heap of 150 MiB", func(goal uint64) bool { return goal > budget*110/100 })
	liveHeap = nil
	heapGoal(t, "once the live heap is small again", near)
	release()
	released = true
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC %d after the budget was released, want the 100 it found", got)
	}
}

func TestTheMemoryBudgetIsNotHeldWhenGOGCIsSet(t *testing.T) {
	t.Setenv("GOGC", "100")
	if release, held := holdHeapBudget(64<<20, slog.New(slog.DiscardHandler)); held {
		release()
		t.Fatal("budget held although GOGC is set in the environment")
	}
}

func TestTheAutoMemoryBudgetFollowsTheQueueUnderTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name          string
		budget, limit int64
		queue         int
		want          int64
	}{
		{"auto with the default queue", 0, 0, 0, 200 << 20},
		{"auto with a queue of 128 MiB", 0, 0, 128 << 20, 392 << 20},
		{"auto under a 200 MiB memory limit", 0, 200 << 20, 64 << 20, 150 << 20},
		{"an explicit budget", 300 << 20, 0, 64 << 20, 300 << 20},
		{"off", -1, 0, 64 << 20, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Relay{cfg: Config{MemoryBudget: tc.budget, QueueBytes: tc.queue}}
			if got := r.memoryBudget(tc.limit); got != tc.want {
				t.Errorf("budget %d MiB, want %d MiB", got>>20, tc.want>>20)
			}
		})
	}
}

// fragmentedFillEnv makes the test binary run fragmentedFill and exit.
const fragmentedFillEnv = "TRAWL_TEST_FRAGMENTED_FILL"

// The fill that keeps an idle relay's pages (it runs 90 s into a
// ClickHouse outage, the queue full) must take them from the heap's free
// pages, however fragmented, not from the OS: RSS would grow by what the
// heap already holds free. In a process of its own, so that the heap is
// this test's: half of 240 objects of 640 KiB freed leaves 75 MiB free in
// runs too short for a 1 MiB object.
func TestTheIdleFillTakesNoNewPagesFromAFragmentedHeap(t *testing.T) {
	if os.Getenv(fragmentedFillEnv) == "1" {
		fragmentedFill()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTheIdleFillTakesNoNewPagesFromAFragmentedHeap$", "-test.count=1")
	cmd.Env = append(os.Environ(), fragmentedFillEnv+"=1", "GOGC=", "GOMEMLIMIT=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var free, filled uint64
	var grown int64
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "fill:") {
			line = l
		}
	}
	if _, err := fmt.Sscanf(line, "fill: free %d grown %d filled %d", &free, &grown, &filled); err != nil {
		t.Fatalf("child printed no result (%v):\n%s", err, out)
	}
	if filled < 32<<20 {
		t.Fatalf("the fill allocated %d MiB, want the ~60 MiB the budget asks", filled>>20)
	}
	if grown > 8<<20 {
		t.Errorf("the fill took %d MiB of new heap from the OS with %d MiB free in the heap", grown>>20, free>>20)
	}
}

var fragments [][]byte

func fragmentedFill() {
	debug.SetGCPercent(100)
	for range 240 {
		fragments = append(fragments, make([]byte, 640<<10))
	}
	for i := range fragments {
		if i%2 == 0 {
			fragments[i] = nil
		}
	}
	runtime.GC()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	// A budget ~60 MiB above what is in use: what the fill must allocate.
	b := &heapBudget{bytes: before.HeapInuse + 60<<20, log: slog.New(slog.DiscardHandler)}
	debug.SetGCPercent(b.gogc())
	b.fill()
	runtime.ReadMemStats(&after)
	// HeapSys: the heap's pages taken from the OS (it may shrink by a
	// few as stacks give theirs back).
	fmt.Printf("fill: free %d grown %d filled %d\n", before.HeapIdle, int64(after.HeapSys)-int64(before.HeapSys), after.TotalAlloc-before.TotalAlloc)
	runtime.KeepAlive(fragments)
}
