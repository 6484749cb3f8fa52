package main

import (
	"testing"
	"time"
)

func TestSpanIsLiveOrADuration(t *testing.T) {
	defer func(s string) { *span = s }(*span)
	for _, tc := range []struct {
		span  string
		flows int
		want  time.Duration // 0: refused
	}{
		{"live", 1_500_000, 10 * time.Second},
		{"live", 1_000_000, 6666666666 * time.Nanosecond},
		{"1h", 1_000_000, time.Hour},
		{"7s", 1_000_000, 7 * time.Second},
		{"0s", 1_000_000, 0},
		{"-1m", 1_000_000, 0},
		{"an hour", 1_000_000, 0},
	} {
		*span = tc.span
		got, err := dataSpan(tc.flows)
		switch {
		case tc.want == 0 && err == nil:
			t.Errorf("-span %q: %v, want refused", tc.span, got)
		case tc.want != 0 && (err != nil || got != tc.want):
			t.Errorf("-span %q with %d flows: %v (%v), want %v", tc.span, tc.flows, got, err, tc.want)
		}
	}
}
