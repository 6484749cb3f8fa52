package relay

import (
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
