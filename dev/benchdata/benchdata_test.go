package benchdata

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

func TestTheFlowsFillTheSpanBeforeEnd(t *testing.T) {
	end := time.Now().Truncate(time.Minute)
	for _, tc := range []struct {
		name string
		n    int
		span time.Duration
	}{
		{"an hour, as Generate spreads them", 3000, time.Hour},
		{"150k flows/s: 3,000 flows in 20 ms", 3000, 20 * time.Millisecond},
		{"a span that is not a multiple of n", 2500, 7 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var first, last time.Time
			count := 0
			for _, b := range GenerateSpan(tc.n, end, tc.span) {
				for _, f := range b.Flows {
					at := f.GetTime().AsTime()
					if at.Before(end.Add(-tc.span)) || !at.Before(end) {
						t.Fatalf("flow at %v, outside [%v, %v)", at, end.Add(-tc.span), end)
					}
					if count == 0 {
						first = at
					}
					last = at
					count++
				}
			}
			if count != tc.n {
				t.Fatalf("%d flows, want %d", count, tc.n)
			}
			// Evenly spread: the first flow at the span's start, the last one
			// step before its end.
			step := tc.span / time.Duration(tc.n)
			if !first.Equal(end.Add(-tc.span)) || last.Sub(first) != time.Duration(tc.n-1)*step {
				t.Errorf("flows from %v to %v, want from %v to %v", first, last, end.Add(-tc.span), end.Add(-tc.span).Add(time.Duration(tc.n-1)*step))
			}
		})
	}
}

func TestTheSpanChangesOnlyTheTimes(t *testing.T) {
	end := time.Now().Truncate(time.Minute)
	hour, live := Generate(2500, end), GenerateSpan(2500, end, 17*time.Millisecond)
	if len(hour) != len(live) {
		t.Fatalf("%d batches over the hour, %d over 17 ms", len(hour), len(live))
	}
	for i := range hour {
		h, l := hour[i], live[i]
		if h.Node != l.Node || h.Boot != l.Boot || h.Seq != l.Seq || len(h.Flows) != len(l.Flows) {
			t.Fatalf("batch %d: %s/%s/%d of %d flows against %s/%s/%d of %d", i, h.Node, h.Boot, h.Seq, len(h.Flows), l.Node, l.Boot, l.Seq, len(l.Flows))
		}
		for j := range h.Flows {
			a, b := withoutTimes(h.Flows[j]), withoutTimes(l.Flows[j])
			if !proto.Equal(a, b) {
				t.Fatalf("batch %d flow %d differs beyond its times:\n%v\n%v", i, j, a, b)
			}
			// FirstSeen lies as far before LastSeen whatever the span.
			dh := h.Flows[j].GetLastSeen().AsTime().Sub(h.Flows[j].GetFirstSeen().AsTime())
			dl := l.Flows[j].GetLastSeen().AsTime().Sub(l.Flows[j].GetFirstSeen().AsTime())
			if dh != dl {
				t.Fatalf("batch %d flow %d: first seen %v before last over the hour, %v over 17 ms", i, j, dh, dl)
			}
		}
	}
}

func withoutTimes(f *flowv1.Flow) *flowv1.Flow {
	c := proto.Clone(f).(*flowv1.Flow)
	c.Time, c.FirstSeen, c.LastSeen = nil, nil, nil
	return c
}
