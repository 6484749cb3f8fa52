package conntrack

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trawl-dev/trawl/agent/metrics"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

const header = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n"

// fakeProc writes proc files in the kernel's format: per-CPU rows of hex.
type fakeProc struct{ dir string }

func (p fakeProc) set(t *testing.T, count, max uint64, perCPUDrop []uint64, perCPUNew []uint64) {
	t.Helper()
	nf := filepath.Join(p.dir, "sys/net/netfilter")
	os.MkdirAll(nf, 0o755)
	os.MkdirAll(filepath.Join(p.dir, "net/stat"), 0o755)
	os.WriteFile(filepath.Join(nf, "nf_conntrack_count"), []byte(fmt.Sprintf("%d\n", count)), 0o644)
	os.WriteFile(filepath.Join(nf, "nf_conntrack_max"), []byte(fmt.Sprintf("%d\n", max)), 0o644)
	var b strings.Builder
	b.WriteString(header)
	for cpu := range perCPUDrop {
		fmt.Fprintf(&b, "%08x  00000000 00000000 %08x 00000000 00000000 00000000 00000000 00000000 00000000 %08x 00000000 00000000  00000000 00000000 00000000 00000000\n",
			count, perCPUNew[cpu], perCPUDrop[cpu])
	}
	os.WriteFile(filepath.Join(p.dir, "net/stat/nf_conntrack"), []byte(b.String()), 0o644)
}

type capture struct{ samples []*flowv1.ConntrackSample }

func (c *capture) Publish(r *observerv1.GetFlowsResponse) {
	if s := r.GetConntrack(); s != nil {
		c.samples = append(c.samples, s)
	}
}

func TestReadStatsSumsHexColumnsOverCPUsButNotEntries(t *testing.T) {
	p := fakeProc{t.TempDir()}
	p.set(t, 0x20, 100, []uint64{0x0a, 0x10}, []uint64{1, 0xff})
	s, err := ReadStats(filepath.Join(p.dir, "net/stat/nf_conntrack"))
	if err != nil {
		t.Fatal(err)
	}
	if s["drop"] != 0x1a || s["new"] != 0x100 || s["entries"] != 0x20 {
		t.Fatalf("stats %v: want drop 26, new 256, entries 32", s)
	}
	if _, err := ReadStats(filepath.Join(p.dir, "missing")); err == nil {
		t.Fatal("want an error for a missing file")
	}
}

func TestSamplesGoOutAtOnceOnThresholdsAndDrops(t *testing.T) {
	p := fakeProc{t.TempDir()}
	pub := &capture{}
	s := New(Config{NodeName: "n1", Interval: time.Hour, ProcDir: p.dir}, pub, metrics.New(prometheus.NewRegistry()))
	steps := []struct {
		name        string
		count       uint64
		drops       []uint64
		want        flowv1.ConntrackTrigger // UNSPECIFIED: no sample
		wantDropInc uint64
	}{
		{"the first reading is a periodic sample", 50, []uint64{0, 0}, flowv1.ConntrackTrigger_PERIODIC, 0},
		{"quiet below 80 % within the interval", 70, []uint64{0, 0}, 0, 0},
		{"crossing 80 % goes out at once", 85, []uint64{0, 0}, flowv1.ConntrackTrigger_THRESHOLD, 0},
		{"staying in the same band is quiet", 88, []uint64{0, 0}, 0, 0},
		{"crossing 90 % goes out at once", 91, []uint64{0, 0}, flowv1.ConntrackTrigger_THRESHOLD, 0},
		{"crossing 95 % goes out at once", 97, []uint64{0, 0}, flowv1.ConntrackTrigger_THRESHOLD, 0},
		{"any drop increase goes out at once, with the delta summed over CPUs", 97, []uint64{2, 3}, flowv1.ConntrackTrigger_DROP_INCREASE, 5},
		{"falling back re-arms the thresholds quietly", 60, []uint64{2, 3}, 0, 0},
		{"crossing 80 % again goes out again", 82, []uint64{2, 3}, flowv1.ConntrackTrigger_THRESHOLD, 0},
	}
	for i, st := range steps {
		before := len(pub.samples)
		p.set(t, st.count, 100, st.drops, []uint64{0, 0})
		s.tick(i == 0)
		got := pub.samples[before:]
		if st.want == 0 {
			if len(got) != 0 {
				t.Errorf("%s: got sample %v, want none", st.name, got[0])
			}
			continue
		}
		if len(got) != 1 {
			t.Errorf("%s: got %d samples, want 1", st.name, len(got))
			continue
		}
		if got[0].Trigger != st.want || got[0].Deltas.Drop != st.wantDropInc || got[0].Entries != st.count || got[0].Max != 100 {
			t.Errorf("%s: sample %v, want trigger %s, drop delta %d", st.name, got[0], st.want, st.wantDropInc)
		}
		if u := got[0].Utilization; u != float64(st.count)/100 {
			t.Errorf("%s: utilization %v", st.name, u)
		}
	}
}
