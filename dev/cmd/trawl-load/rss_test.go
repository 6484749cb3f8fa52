package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func mem(start int, perMinute ...float64) *procMem {
	p := &procMem{name: "p", pid: 1, startMinute: start}
	for i, v := range perMinute {
		p.add(i+1, v, float64(i))
	}
	return p
}

func TestFlatnessCountsEveryMinuteAfterAProcesssStart(t *testing.T) {
	tests := []struct {
		name        string
		p           *procMem
		events      map[int]bool
		counted     int
		spread      float64
		trend       float64
		quietSpread float64
		flat        bool
	}{
		{
			name:    "a process running before the load counts from minute 1",
			p:       mem(0, 100, 105, 100, 104),
			counted: 4, spread: 0.05, trend: -0.0049, quietSpread: 0.05, flat: true,
		},
		{
			name:    "the minute a restarted process started in is not counted",
			p:       &procMem{peak: map[int]float64{3: 40, 4: 200, 5: 210, 6: 200}, startMinute: 3},
			counted: 3, spread: 0.05, trend: 0, quietSpread: 0.05, flat: true,
		},
		{
			name:    "an event minute counts in the verdict and not in the diagnostic spread",
			p:       mem(0, 100, 100, 130, 100, 100),
			events:  map[int]bool{3: true},
			counted: 5, spread: 0.30, trend: 0, quietSpread: 0, flat: false,
		},
		{
			name:    "steady growth shows in the trend",
			p:       mem(0, 100, 104, 108, 112, 116, 120),
			counted: 6, spread: 0.20, trend: 0.1154, quietSpread: 0.20, flat: false,
		},
		{
			name:    "a process with one counted minute cannot be judged",
			p:       mem(1, 50, 60),
			counted: 1, quietSpread: -1, flat: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := flatnessOf(tt.p, tt.events)
			if len(f.counted) != tt.counted {
				t.Fatalf("counted %v, want %d minutes", f.counted, tt.counted)
			}
			for _, c := range []struct {
				what      string
				got, want float64
			}{{"spread", f.spread, tt.spread}, {"trend", f.trend, tt.trend}, {"spread outside events", f.quietSpread, tt.quietSpread}} {
				if math.Abs(c.got-c.want) > 0.001 {
					t.Errorf("%s %.4f, want %.4f", c.what, c.got, c.want)
				}
			}
			if f.flat != tt.flat {
				t.Errorf("flat %v, want %v", f.flat, tt.flat)
			}
		})
	}
}

func TestAMinuteFigureIsTheHighestSampleInIt(t *testing.T) {
	p := &procMem{}
	for _, s := range []struct {
		at  time.Duration
		mib float64
	}{{5 * time.Second, 100}, {30 * time.Second, 140}, {60 * time.Second, 120}, {65 * time.Second, 90}, {70 * time.Second, 0}} {
		p.add(minuteOf(s.at), s.mib, 1)
	}
	if p.peak[1] != 140 || p.peak[2] != 90 || len(p.peak) != 2 {
		t.Fatalf("minutes %v, want 1: 140 and 2: 90 (a zero reading is a process gone, not a figure)", p.peak)
	}
}

func TestTheReportNamesEveryProcessThatIsNotFlatAndThoseTooShortToJudge(t *testing.T) {
	var b strings.Builder
	notFlat, notJudged := flatReport(&b, []*procMem{
		{name: "relay 0", pid: 10, peak: map[int]float64{1: 250, 2: 255, 3: 252}},
		{name: "relay 1", pid: 11, peak: map[int]float64{1: 240, 2: 290, 3: 250}},
		{name: "agent 0", pid: 12, startMinute: 3, peak: map[int]float64{3: 40}},
	}, nil)
	if len(notFlat) != 1 || !strings.HasPrefix(notFlat[0], "relay 1 (pid 11) 20.8 %") {
		t.Errorf("not flat: %q, want relay 1 alone", notFlat)
	}
	if len(notJudged) != 1 || notJudged[0] != "agent 0 (pid 12)" {
		t.Errorf("not judged: %q, want agent 0 alone", notJudged)
	}
	if got := strings.Count(b.String(), "\n"); got != 5 {
		t.Fatalf("report has %d lines, want a header, a rule and one row per process:\n%s", got, b.String())
	}
}
