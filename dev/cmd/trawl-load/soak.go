package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/trawl-dev/trawl/dev/e2e/scale"
)

// agentProc is one `trawl-load agent` process and its last status line.
type agentProc struct {
	node, boot string
	cmd        *exec.Cmd
	done       chan struct{}

	mu   sync.Mutex
	last agentStatus
}

func startAgentProc(self, addr, node, boot string, rate float64, buffer int, stderr io.Writer) (*agentProc, error) {
	p := &agentProc{node: node, boot: boot, done: make(chan struct{})}
	p.cmd = exec.Command(self, "agent", "-addr", addr, "-node", node, "-boot", boot, "-rate", fmt.Sprint(rate), "-buffer", fmt.Sprint(buffer))
	p.cmd.Stderr = stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var s agentStatus
			if json.Unmarshal(sc.Bytes(), &s) == nil {
				p.mu.Lock()
				p.last = s
				p.mu.Unlock()
			}
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *agentProc) status() agentStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// stop sends SIGTERM (the agent drains, then prints its final status).
func (p *agentProc) stop() agentStatus {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.status()
}

func runSoak(args []string) error {
	fs := flag.NewFlagSet("soak", flag.ExitOnError)
	relayBin := fs.String("relay", "bin/trawl-relay", "trawl-relay binary")
	minutes := fs.Float64("minutes", 30, "duration of the load")
	rate := fs.Float64("rate", 0, "flows per second in all (0: half the maximum measured first)")
	measureFlows := fs.Int("measure-flows", 400000, "flows of the maximum-rate measurement")
	agents := fs.Int("agents", 4, "agent processes")
	buffer := fs.Int("agent-buffer", 16<<20, "each agent's shipper buffer, bytes")
	chStop := fs.Duration("clickhouse-stop", 30*time.Second, "how long shard 1 is stopped")
	dir := fs.String("dir", "", "data directory (default: a temporary one, removed at the end)")
	verbose := fs.Bool("v", false, "show ClickHouse and relay output")
	agentBin := fs.String("agent-bin", "", "binary run as `<bin> agent ...` for each agent process (default: this one; another build's trawl-load measures its shipper)")
	relayArgs := fs.String("relay-args", "", "extra trawl-relay flags, space-separated (e.g. --memory-limit 280MiB)")
	_ = fs.Parse(args)
	ctx := context.Background()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if *agentBin != "" {
		self = *agentBin
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "trawl-soak-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	var out io.Writer
	if *verbose {
		out = os.Stderr
	}
	b, err := newBed(ctx, *relayBin, filepath.Join(*dir, "ch"), out, out, strings.Fields(*relayArgs))
	if err != nil {
		return err
	}
	defer b.close()
	lb, err := scale.NewBalancer(b.relays[0].Ingest, b.relays[1].Ingest)
	if err != nil {
		return err
	}
	defer lb.Close()

	measured := 0.0
	if *rate == 0 {
		el, ags, err := fullSpeed(lb.Addr, "measure", *agents, *measureFlows)
		if err != nil {
			return err
		}
		var n uint64
		for _, a := range ags {
			n += a.Published()
		}
		measured = float64(n) / el.Seconds()
		*rate = measured / 2
		logf("maximum through the pair: %.0f flows/s (%d flows in %s); soak at %.0f flows/s", measured, n, el.Round(time.Millisecond), *rate)
	}

	dur := time.Duration(*minutes * float64(time.Minute))
	procs := make([]*agentProc, *agents)
	var finished []agentStatus // final statuses of restarted agents
	var nodes []string
	for i := range procs {
		node := fmt.Sprintf("soak-node-%d", i)
		nodes = append(nodes, node)
		if procs[i], err = startAgentProc(self, lb.Addr, node, "boot-1", *rate/float64(*agents), *buffer, os.Stderr); err != nil {
			return err
		}
	}
	defer func() {
		for _, p := range procs {
			select {
			case <-p.done:
			default:
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
	}()
	start := time.Now()
	logf("soak: %s at %.0f flows/s, %d agents (buffer %d MiB each)", dur, *rate, *agents, *buffer>>20)

	type event struct {
		at          time.Duration
		name, short string
		do          func() error
	}
	var evMu sync.Mutex
	var evLog []string
	eventMinutes := map[int]string{} // minute → what happened in it
	note := func(s string) {
		el := time.Since(start)
		evMu.Lock()
		evLog = append(evLog, fmt.Sprintf("%s %s", el.Round(time.Second), s))
		evMu.Unlock()
		logf("%s", s)
	}
	// during marks the minutes from an event's start to its end.
	during := func(short string, from, to time.Duration) {
		evMu.Lock()
		defer evMu.Unlock()
		for m := max(minuteOf(from), 1); m <= max(minuteOf(to), 1); m++ {
			if eventMinutes[m] != "" {
				eventMinutes[m] += "; "
			}
			eventMinutes[m] += short
		}
	}
	var procsMu sync.Mutex // procs[0] and finished change at the agent restart
	// A shard that exits when the soak did not stop it is reported with
	// how it ended: the run's figures are then about that, not the code.
	var shardMu sync.Mutex // the shard stop replaces Servers[1]
	stoppingShard := -1
	watchShard := func(i int) {
		srv := b.shards.Servers[i]
		go func() {
			<-srv.Done()
			shardMu.Lock()
			defer shardMu.Unlock()
			if stoppingShard != i && time.Since(start) < dur {
				note(fmt.Sprintf("ClickHouse shard %d exited on its own (%v): the rest of this run measures that", i, srv.Err()))
			}
		}()
	}
	events := []event{
		{dur / 5, "relay 0 killed (SIGKILL), restarted 5 s later", "relay 0 killed", func() error {
			b.relays[0].Kill()
			time.Sleep(5 * time.Second)
			return b.relays[0].Start(ctx)
		}},
		{dur * 9 / 20, fmt.Sprintf("ClickHouse shard 1 stopped for %s, then started", *chStop), "shard 1 stopped", func() error {
			shardMu.Lock()
			stoppingShard = 1
			shardMu.Unlock()
			if err := b.shards.Stop(1); err != nil {
				return err
			}
			time.Sleep(*chStop)
			if err := b.shards.Start(ctx, 1); err != nil {
				return err
			}
			shardMu.Lock()
			stoppingShard = -1
			shardMu.Unlock()
			watchShard(1)
			return nil
		}},
		{dur * 7 / 10, "agent 0 restarted (SIGTERM, drain, new boot id)", "agent 0 restarted", func() error {
			procsMu.Lock()
			old := procs[0]
			procsMu.Unlock()
			st := old.stop()
			p, err := startAgentProc(self, lb.Addr, old.node, "boot-2", *rate/float64(*agents), *buffer, os.Stderr)
			procsMu.Lock()
			defer procsMu.Unlock()
			finished = append(finished, st)
			if err != nil {
				return err
			}
			procs[0] = p
			return nil
		}},
	}

	// RSS: every process sampled every rssEvery by one goroutine; a
	// minute's figure is its highest sample (rss.go says how it is read).
	var memMu sync.Mutex
	var mem []*procMem
	// The agents start with the load: minute 1 is their start. A new pid
	// under a name already seen is a restart, starting in the minute it is
	// first seen (sampled within rssEvery of its start).
	born := map[int]int{}
	for _, p := range procs {
		born[p.cmd.Process.Pid] = 1
	}
	record := func(name string, pid int) {
		if pid <= 0 {
			return
		}
		el := time.Since(start)
		if el > dur { // the load is over: the drain at the end is not a minute of it
			return
		}
		cpu, r, _ := scale.ProcStat(pid)
		m := max(minuteOf(el), 1)
		memMu.Lock()
		defer memMu.Unlock()
		for _, p := range mem {
			if p.name == name && p.pid == pid {
				p.add(m, r, cpu)
				return
			}
		}
		p := &procMem{name: name, pid: pid, startMinute: born[pid]}
		for _, q := range mem {
			if q.name == name {
				p.startMinute = m
			}
		}
		p.add(m, r, cpu)
		mem = append(mem, p)
	}
	sampleAll := func() {
		for i, r := range b.relays {
			record(fmt.Sprintf("relay %d", i), r.PID())
		}
		procsMu.Lock()
		ps := slices.Clone(procs)
		procsMu.Unlock()
		for i, p := range ps {
			select {
			case <-p.done:
			default:
				record(fmt.Sprintf("agent %d", i), p.cmd.Process.Pid)
			}
		}
	}
	samplerCtx, stopSampler := context.WithCancel(ctx)
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		t := time.NewTicker(rssEvery)
		defer t.Stop()
		for {
			sampleAll()
			select {
			case <-samplerCtx.Done():
				return
			case <-t.C:
			}
		}
	}()
	defer stopSampler()
	// peakIn is a process's figure for minute m: "down" when it had no
	// sample, "old→new" when a restart falls in the minute.
	peakIn := func(name string, m int) string {
		memMu.Lock()
		defer memMu.Unlock()
		var vals []string
		for _, p := range mem {
			if v, ok := p.peak[m]; p.name == name && ok {
				s := fmt.Sprintf("%.0f", v)
				if p.startMinute == m {
					s += " (started)"
				}
				vals = append(vals, s)
			}
		}
		if len(vals) == 0 {
			return "down"
		}
		return strings.Join(vals, "→")
	}
	type minuteCounts struct {
		sent, lost uint64
		stored     string
	}
	counts := map[int]minuteCounts{}
	minuteRow := func(m int) {
		var sent, lost uint64
		procsMu.Lock()
		for _, p := range procs {
			s := p.status()
			sent += s.Published
			lost += s.Lost
		}
		for _, s := range finished {
			sent += s.Published
			lost += s.Lost
		}
		procsMu.Unlock()
		stored := "?" // count() only: the exact distinct count is for the end
		var n uint64
		if err := b.conn.QueryRow(ctx, "SELECT count() FROM "+scale.Database+".flows WHERE node IN ?", nodes).Scan(&n); err == nil {
			stored = fmt.Sprint(n)
		}
		counts[m] = minuteCounts{sent: sent, lost: lost, stored: stored}
		logf("minute %d: sent %d, stored %s, lost %d", m, sent, stored, lost)
	}

	for i := range b.shards.Servers {
		watchShard(i)
	}
	var evWG sync.WaitGroup
	evErr := make(chan error, len(events))
	for _, e := range events {
		evWG.Add(1)
		go func() {
			defer evWG.Done()
			time.Sleep(time.Until(start.Add(e.at)))
			from := time.Since(start)
			note("start: " + e.name)
			err := e.do()
			during(e.short, from, time.Since(start))
			if err != nil {
				evErr <- fmt.Errorf("%s: %w", e.name, err)
				return
			}
			note("done: " + e.name)
		}()
	}
	for m := 1; time.Since(start) < dur; m++ {
		time.Sleep(time.Until(start.Add(time.Duration(m) * time.Minute)))
		if time.Since(start) > dur+30*time.Second {
			break
		}
		minuteRow(m)
	}
	evWG.Wait()
	select {
	case err := <-evErr:
		return err
	default:
	}
	stopSampler()
	<-samplerDone
	// The end: agents stop (drain), then ClickHouse is read.
	var final []agentStatus
	final = append(final, finished...)
	for _, p := range procs {
		final = append(final, p.stop())
	}
	var sent, lost, unacked uint64
	for _, s := range final {
		sent += s.Published
		lost += s.Lost
		unacked += uint64(s.Unacked)
	}
	c, err := scale.Count(ctx, b.conn, nodes)
	if err != nil {
		return err
	}
	missing := int64(sent) - int64(c.Distinct)
	fmt.Printf("## Soak: %s at %.0f flows/s through two relays and two shards\n\n", dur, *rate)
	if measured > 0 {
		fmt.Printf("Maximum measured first through the pair: %.0f flows/s (%d flows); soak rate half of it.\n\n", measured, *measureFlows)
	}
	fmt.Printf("Events (time since the load started):\n\n")
	for _, e := range evLog {
		fmt.Printf("- %s\n", e)
	}
	// A batch holds at most ChunkRecords records: what was unacknowledged
	// when an agent exited is at most that many per batch. Missing flows
	// beyond the drops and that bound were acknowledged and are not stored.
	abandoned := int64(unacked) * scale.ChunkRecords
	fmt.Printf("\n| flows sent | dropped by agents (shipper metric) | unacked batches at agent exit (≤ 1000 flows each) | stored distinct | missing (sent - stored) | missing beyond drops and unacked: lost of those acked | rows | duplicates | lost-event records (sum in ClickHouse) |\n|---|---|---|---|---|---|---|---|---|\n")
	lostAcked := max(missing-int64(lost)-abandoned, 0)
	fmt.Printf("| %d | %d | %d | %d | %d | %d | %d | %d | %d |\n\n", sent, lost, unacked, c.Distinct, missing, lostAcked, c.Rows, c.Duplicates(), c.LostEvents)
	if c.Duplicates() > 0 {
		// Where the duplicates come from: each batch's flows were made
		// when the agent published them, so their minute names the event.
		dups, total, err := scale.DuplicateBatches(ctx, b.conn, nodes, 20)
		if err != nil {
			return err
		}
		fmt.Printf("Batches stored more than once: %d (the oldest %d below; minute = when the agent made the batch, since the load started):\n\n| node | batch | minute | its oldest flow | extra rows |\n|---|---|---|---|---|\n", total, len(dups))
		for _, d := range dups {
			at := d.First.Sub(start)
			fmt.Printf("| %s | %d | %d (%s) | %s | %d |\n", d.Node, d.Batch, max(minuteOf(at), 1), at.Round(time.Second), d.First.UTC().Format("15:04:05.000"), d.Extra)
		}
		fmt.Println()
	}
	var table strings.Builder
	var names []string
	for i := range b.relays {
		names = append(names, fmt.Sprintf("relay %d", i))
	}
	for i := range procs {
		names = append(names, fmt.Sprintf("agent %d", i))
	}
	table.WriteString("| minute | events | " + strings.Join(names, " | ") + " | flows sent | flows stored (count()) | lost (agents) |\n|---|---|" + strings.Repeat("---|", len(names)) + "---|---|---|\n")
	lastMinute := 0
	for m := range counts {
		lastMinute = max(lastMinute, m)
	}
	for m := 1; m <= lastMinute; m++ {
		var cols []string
		for _, n := range names {
			cols = append(cols, peakIn(n, m))
		}
		c := counts[m]
		fmt.Fprintf(&table, "| %d | %s | %s | %d | %s | %d |\n", m, eventMinutes[m], strings.Join(cols, " | "), c.sent, c.stored, c.lost)
	}
	fmt.Printf("RSS (MiB) per minute, each the highest of the minute's samples (every %s); \"(started)\" marks a process's first minute, which is not counted:\n\n%s\n", rssEvery, table.String())
	evMinutes := map[int]bool{}
	for m := range eventMinutes {
		evMinutes[m] = true
	}
	var flat strings.Builder
	notFlat, notJudged := flatReport(&flat, mem, evMinutes)
	fmt.Printf("Memory flat within 10 %%: every minute after a process's start counts, event minutes included; spread = (highest - lowest) / lowest; trend = median of the last %d counted minutes against the first %d:\n\n%s\n", trendMinutes, trendMinutes, flat.String())
	var fails []string
	if lostAcked != 0 {
		fails = append(fails, fmt.Sprintf("%d acknowledged flows missing", lostAcked))
	}
	if c.Duplicates() != 0 {
		fails = append(fails, fmt.Sprintf("%d duplicate rows", c.Duplicates()))
	}
	if c.LostEvents != lost {
		fails = append(fails, fmt.Sprintf("lost-event records count %d, agents dropped %d", c.LostEvents, lost))
	}
	if unacked != 0 {
		fails = append(fails, fmt.Sprintf("%d batches unacknowledged at agent exit (lost without a lost-event record; their lost-event reports too)", unacked))
	}
	if len(fails) > 0 {
		fmt.Printf("Accounting: **FAIL**: %s\n\n", strings.Join(fails, "; "))
	} else {
		fmt.Printf("Accounting: **PASS**: 0 lost of those acked, 0 duplicates, lost-event records = agents' drops (%d)\n\n", lost)
	}
	judged := ""
	if len(notJudged) > 0 {
		judged = fmt.Sprintf(" (not judged, under 2 counted minutes of life: %s)", strings.Join(notJudged, "; "))
	}
	if len(notFlat) > 0 {
		fmt.Printf("Memory flat within 10 %%: **NOT MET**: %s%s\n", strings.Join(notFlat, "; "), judged)
		fails = append(fails, "memory not flat within 10 %: "+strings.Join(notFlat, "; "))
	} else {
		fmt.Printf("Memory flat within 10 %%: **MET** by every process judged%s\n", judged)
	}
	if len(fails) > 0 {
		return fmt.Errorf("soak failed: %s", strings.Join(fails, "; "))
	}
	return nil
}
