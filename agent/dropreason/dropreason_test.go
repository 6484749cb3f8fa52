package dropreason

import (
	"os"
	"testing"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// ensureTracefs mounts tracefs when it is absent, so the format file can
// serve as an independent source of the kernel's numbers.
func ensureTracefs(t *testing.T) string {
	t.Helper()
	p := TracefsFormatPaths[0]
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		t.Fatalf("mount tracefs: %v", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("kfree_skb format after mounting tracefs: %v", err)
	}
	return p
}

func TestReasonNamesFromBTFMatchTheTracepointFormatOfThisKernel(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("kernel BTF: %v", err)
	}
	fromBTF, err := FromBTF(spec)
	if err != nil {
		t.Fatal(err)
	}
	fromTracefs, err := FromTracefsFormat(ensureTracefs(t))
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
	ensureTracefs(t)
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	withBTF, err := Load(spec)
	if err != nil || withBTF.Source != "btf" {
		t.Fatalf("Load(spec) = %v, %v; want the btf table", withBTF, err)
	}
	without, err := Load(nil)
	if err != nil || without.Source == "btf" {
		t.Fatalf("Load(nil) = %v, %v; want the tracefs table", without, err)
	}
	n1, _ := withBTF.Number("NO_SOCKET")
	n2, _ := without.Number("NO_SOCKET")
	if n1 != n2 {
		t.Fatalf("NO_SOCKET: %d vs %d", n1, n2)
	}
}

func TestSelectReasons(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := FromBTF(spec)
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
