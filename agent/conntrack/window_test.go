package conntrack

import (
	"net/netip"
	"testing"
	"time"
)

// While the table is full no one can create entries; the sample must still
// name who filled it, until the trailing window has passed.
func TestTopCreatorsAreRankedOverTheTrailingWindow(t *testing.T) {
	a, b := netip.MustParseAddr("10.244.1.15"), netip.MustParseAddr("10.244.1.11")
	s := &Sampler{cfg: Config{TopN: 1, TopWindow: time.Minute}}
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	steps := []struct {
		at      time.Duration
		created map[netip.Addr]uint64
		want    string
		wantN   uint64
	}{
		{0, map[netip.Addr]uint64{a: 900, b: 3}, "10.244.1.15", 900},
		{10 * time.Second, nil, "10.244.1.15", 900},                         // table full: nothing new
		{30 * time.Second, map[netip.Addr]uint64{b: 5}, "10.244.1.15", 900}, // b: 8 in the window
		{65 * time.Second, nil, "10.244.1.11", 5},                           // a's burst left the window
		{100 * time.Second, nil, "", 0},
	}
	for _, st := range steps {
		s.creators = st.created
		if s.creators == nil {
			s.creators = map[netip.Addr]uint64{}
		}
		got := s.topCreators(t0.Add(st.at))
		if st.want == "" {
			if len(got) != 0 {
				t.Errorf("at +%s: top = %v, want none", st.at, got)
			}
			continue
		}
		if len(got) != 1 || got[0].Ip != st.want || got[0].NewEntries != st.wantN {
			t.Errorf("at +%s: top = %v, want %s with %d", st.at, got, st.want, st.wantN)
		}
	}
}
