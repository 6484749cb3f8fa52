package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// How the soak reads "memory flat within 10 %", as an operator would: a
// process's resident memory must hold one level through the whole soak,
// whatever the soak does to the system around it, and must not grow.
//
//   - RSS is sampled every rssEvery; a minute's figure is the highest sample
//     of that minute, so a short peak is not missed between two readings.
//   - The minute a process started in is its start, not drift: a restarted
//     relay or agent begins empty. That minute is shown and not counted;
//     every later minute is, event minutes included (a relay that carries
//     its peer's agents or waits for a stopped shard is what the operator
//     sizes for).
//   - spread = (highest - lowest) / lowest over the counted minutes; flat
//     means spread ≤ flatLimit.
//   - trend = median of the last trendMinutes counted minutes against the
//     median of the first trendMinutes: growth shows here even when the
//     spread is small.
//   - The spread outside the event minutes is printed beside it to tell
//     what moved the level; it is not the verdict.
const (
	rssEvery     = 5 * time.Second
	flatLimit    = 0.10
	trendMinutes = 3
)

// procMem is one process's RSS per minute of the load (minute m covers
// (m-1, m] minutes after the load started).
type procMem struct {
	name string
	pid  int
	// startMinute is the minute the process started in (1 for the agents
	// started with the load); 0 when it was running before the load began.
	startMinute int
	peak        map[int]float64 // minute → highest RSS sample, MiB
	cpu         map[int]float64 // minute → CPU seconds used (utime+stime) at its last sample
}

func minuteOf(since time.Duration) int {
	if since <= 0 {
		return 0
	}
	return int((since + time.Minute - 1) / time.Minute)
}

func (p *procMem) add(minute int, mib, cpu float64) {
	if mib <= 0 { // the process was gone when read
		return
	}
	if p.peak == nil {
		p.peak, p.cpu = map[int]float64{}, map[int]float64{}
	}
	p.peak[minute] = max(p.peak[minute], mib)
	p.cpu[minute] = max(p.cpu[minute], cpu)
}

// cpuPerMinute is the CPU seconds the process used per minute over the
// counted minutes (from the end of the first to the end of the last).
func (p *procMem) cpuPerMinute(counted []int) float64 {
	if len(counted) < 2 {
		return 0
	}
	first, last := counted[0], counted[len(counted)-1]
	return (p.cpu[last] - p.cpu[first]) / float64(last-first)
}

// flatness is the verdict's figures for one process.
type flatness struct {
	counted      []int // minutes counted, in order
	lo, hi       float64
	spread       float64 // (hi - lo) / lo
	trend        float64 // last minutes' median / first minutes' median - 1
	quietSpread  float64 // spread over counted minutes without events; -1: none
	flat         bool
	enoughToTell bool // at least two counted minutes
}

// flatnessOf computes p's figures; eventMinutes are minutes in which a soak
// event started, ran or ended.
func flatnessOf(p *procMem, eventMinutes map[int]bool) flatness {
	var f flatness
	var mins []int
	for m := range p.peak {
		if m > p.startMinute {
			mins = append(mins, m)
		}
	}
	slices.Sort(mins)
	f.counted = mins
	if len(mins) < 2 {
		f.quietSpread = -1
		return f
	}
	f.enoughToTell = true
	vals := make([]float64, len(mins))
	var quiet []float64
	for i, m := range mins {
		vals[i] = p.peak[m]
		if !eventMinutes[m] {
			quiet = append(quiet, vals[i])
		}
	}
	f.lo, f.hi = slices.Min(vals), slices.Max(vals)
	f.spread = (f.hi - f.lo) / f.lo
	f.flat = f.spread <= flatLimit
	k := min(trendMinutes, len(vals)/2)
	f.trend = median(vals[len(vals)-k:])/median(vals[:k]) - 1
	f.quietSpread = -1
	if len(quiet) >= 2 {
		f.quietSpread = (slices.Max(quiet) - slices.Min(quiet)) / slices.Min(quiet)
	}
	return f
}

// flatReport writes the per-process figures as a Markdown table and returns
// the processes that are not flat, and those that lived too short to judge
// (a relay killed in its first minutes, an agent restarted near the end).
func flatReport(b *strings.Builder, procs []*procMem, eventMinutes map[int]bool) (notFlat, notJudged []string) {
	b.WriteString("| process | pid | started (minute) | minutes counted | lowest MiB | highest MiB | spread | trend (last vs first minutes) | spread outside event minutes (diagnostic) | CPU s per minute | flat within 10 % |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range procs {
		f := flatnessOf(p, eventMinutes)
		started := "before the load"
		if p.startMinute > 0 {
			started = fmt.Sprint(p.startMinute)
		}
		if !f.enoughToTell {
			fmt.Fprintf(b, "| %s | %d | %s | %d | | | | | | | not judged (under 2 minutes) |\n", p.name, p.pid, started, len(f.counted))
			notJudged = append(notJudged, fmt.Sprintf("%s (pid %d)", p.name, p.pid))
			continue
		}
		quiet := "none"
		if f.quietSpread >= 0 {
			quiet = fmt.Sprintf("%.1f %%", 100*f.quietSpread)
		}
		verdict := "yes"
		if !f.flat {
			verdict = "**no**"
			notFlat = append(notFlat, fmt.Sprintf("%s (pid %d) %.1f %%", p.name, p.pid, 100*f.spread))
		}
		fmt.Fprintf(b, "| %s | %d | %s | %d–%d (%d) | %.0f | %.0f | %.1f %% | %+.1f %% | %s | %.1f | %s |\n",
			p.name, p.pid, started, f.counted[0], f.counted[len(f.counted)-1], len(f.counted), f.lo, f.hi,
			100*f.spread, 100*f.trend, quiet, p.cpuPerMinute(f.counted), verdict)
	}
	return notFlat, notJudged
}
