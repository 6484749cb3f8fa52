package dropreason

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/testbed/roottest"
)

// fixture is the skb/kfree_skb format file of Linux 6.18, copied once from
// /sys/kernel/tracing on the development machine.
const fixture = "testdata/kfree_skb-6.18.format"

// privateTracefs mounts a tracefs instance on a temporary directory and
// unmounts it when the test ends, so the running kernel's format file can
// serve as an independent witness without touching /sys/kernel/tracing.
func privateTracefs(t *testing.T) string {
	t.Helper()
	roottest.Require(t, "mounts tracefs")
	dir := t.TempDir()
	if err := unix.Mount("tracefs", dir, "tracefs", 0, ""); err != nil {
		t.Fatalf("mount tracefs on %s (needs root): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return filepath.Join(dir, "events/skb/kfree_skb/format")
}

func kernelBTF(t *testing.T) *btf.Spec {
	t.Helper()
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("kernel BTF: %v", err)
	}
	return spec
}

func TestTheTracefsFormatFixtureOfLinux618ParsesToItsNumbers(t *testing.T) {
	tab, err := FromTracefsFormat(fixture)
	if err != nil {
		t.Fatal(err)
	}
	// Read off the fixture's __print_symbolic table by hand.
	for name, want := range map[string]uint32{"NOT_SPECIFIED": 2, "NO_SOCKET": 3, "NETFILTER_DROP": 12} {
		if got, ok := tab.Number(name); !ok || got != want {
			t.Errorf("%s = %d, %v; want %d", name, got, ok, want)
		}
	}
	if got := tab.Name(12); got != "NETFILTER_DROP" {
		t.Errorf("Name(12) = %q", got)
	}
}

func TestAFormatFileWithoutAReasonTableIsAnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "format")
	if err := os.WriteFile(p, []byte("name: kfree_skb\nprint fmt: \"skbaddr=%p\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := FromTracefsFormat(p); err == nil {
		t.Fatal("want an error")
	}
}

func TestReasonNamesFromBTFMatchTheTracepointFormatOfThisKernel(t *testing.T) {
	fromBTF, err := FromBTF(kernelBTF(t))
	if err != nil {
		t.Fatal(err)
	}
	fromTracefs, err := FromTracefsFormat(privateTracefs(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"NETFILTER_DROP", "NO_SOCKET", "NOT_SPECIFIED", "TCP_CSUM"} {
		t.Run(name, func(t *testing.T) {
			b, ok := fromBTF.Number(name)
			if !ok {
				t.Fatalf("BTF has no %s", name)
			}
			f, ok := fromTracefs.Number(name)
			if !ok {
				t.Fatalf("tracefs has no %s", name)
			}
			if b != f {
				t.Fatalf("%s: BTF says %d, tracefs says %d", name, b, f)
			}
			if got := fromBTF.Name(b); got != name {
				t.Fatalf("Name(%d) = %q, want %q", b, got, name)
			}
		})
	}
}

func TestLoadPrefersBTFAndFallsBackToTracefs(t *testing.T) {
	withBTF, err := load(kernelBTF(t), []string{fixture})
	if err != nil || withBTF.Source != "btf" {
		t.Fatalf("load(spec) = %v, %v; want the btf table", withBTF, err)
	}
	without, err := load(nil, []string{"testdata/missing.format", fixture})
	if err != nil || without.Source != fixture {
		t.Fatalf("load(nil) = %v, %v; want the fixture's table", without, err)
	}
	if _, err := load(nil, []string{"testdata/missing.format"}); err == nil {
		t.Fatal("load with neither BTF nor a format file: want an error")
	}
}

func TestSelectReasons(t *testing.T) {
	tab, err := FromBTF(kernelBTF(t))
	if err != nil {
		t.Fatal(err)
	}
	num := func(name string) uint32 { n, _ := tab.Number(name); return n }
	has := func(list []uint32, n uint32) bool {
		for _, x := range list {
			if x == n {
				return true
			}
		}
		return false
	}
	tests := []struct {
		name     string
		spec     string
		want     []string
		wantNot  []string
		wantsErr bool
	}{
		{name: "default leaves out NOT_SPECIFIED and CONSUMED", spec: "", want: []string{"NO_SOCKET", "NETFILTER_DROP"}, wantNot: []string{"NOT_SPECIFIED", "CONSUMED"}},
		{name: "all includes NOT_SPECIFIED", spec: "all", want: []string{"NOT_SPECIFIED", "NO_SOCKET"}},
		{name: "a list keeps only its names", spec: "NO_SOCKET, netfilter_drop", want: []string{"NO_SOCKET", "NETFILTER_DROP"}, wantNot: []string{"TCP_CSUM"}},
		{name: "a minus removes a name from the default", spec: "-NO_SOCKET", want: []string{"NETFILTER_DROP"}, wantNot: []string{"NO_SOCKET", "CONSUMED"}},
		{name: "an unknown name is an error", spec: "NO_SUCH_REASON", wantsErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tab.Select(tt.spec)
			if tt.wantsErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tt.want {
				if !has(got, num(n)) {
					t.Errorf("%s missing", n)
				}
			}
			for _, n := range tt.wantNot {
				if has(got, num(n)) {
					t.Errorf("%s present", n)
				}
			}
		})
	}
}

func TestEveryReasonOfLinux618HasADropClass(t *testing.T) {
	tab, err := FromTracefsFormat(fixture)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range tab.Names() {
		if name == "MAX" {
			continue
		}
		if c := dropclass.Of(name); c == dropclass.Other {
			t.Errorf("%s has no class in internal/dropclass", name)
		}
	}
	if c := dropclass.Of("SOME_FUTURE_REASON"); c != dropclass.Other || !c.Actionable() || !c.Undelivered() {
		t.Errorf("an unknown reason gets %q; want the shown, undelivered default %q", c, dropclass.Other)
	}
}
