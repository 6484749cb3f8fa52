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

type series struct {
	name string
	pid  int
	rss  []float64
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
	_ = fs.Parse(args)
	ctx := context.Background()
	self, err := os.Executable()
	if err != nil {
		return err
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
	b, err := newBed(ctx, *relayBin, filepath.Join(*dir, "ch"), out, out, nil)
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
		at   time.Duration
		name string
		do   func() error
	}
	var evLog []string
	note := func(s string) {
		evLog = append(evLog, fmt.Sprintf("%s %s", time.Since(start).Round(time.Second), s))
		logf("%s", s)
	}
	events := []event{
		{dur / 5, "relay 0 killed (SIGKILL), restarted 5 s later", func() error {
			b.relays[0].Kill()
			time.Sleep(5 * time.Second)
			return b.relays[0].Start(ctx)
		}},
		{dur * 9 / 20, fmt.Sprintf("ClickHouse shard 1 stopped for %s, then started", *chStop), func() error {
			if err := b.shards.Stop(1); err != nil {
				return err
			}
			time.Sleep(*chStop)
			return b.shards.Start(ctx, 1)
		}},
		{dur * 7 / 10, "agent 0 restarted (SIGTERM, drain, new boot id)", func() error {
			finished = append(finished, procs[0].stop())
			p, err := startAgentProc(self, lb.Addr, procs[0].node, "boot-2", *rate/float64(*agents), *buffer, os.Stderr)
			if err != nil {
				return err
			}
			procs[0] = p
			return nil
		}},
	}

	var rssMu sync.Mutex
	var rss []*series
	sample := func(name string, pid int) float64 {
		_, r, _ := scale.ProcStat(pid)
		rssMu.Lock()
		defer rssMu.Unlock()
		for _, s := range rss {
			if s.name == name && s.pid == pid {
				s.rss = append(s.rss, r)
				return r
			}
		}
		rss = append(rss, &series{name: name, pid: pid, rss: []float64{r}})
		return r
	}
	var table strings.Builder
	table.WriteString("| minute | relay 0 RSS MiB | relay 1 RSS MiB | agent RSS MiB (0..n) | flows sent | flows stored | lost (agents) |\n|---|---|---|---|---|---|---|\n")
	minuteRow := func(m int) {
		var cols []string
		for i, r := range b.relays {
			if _, rss, _ := scale.ProcStat(r.PID()); r.PID() > 0 && rss > 0 {
				cols = append(cols, fmt.Sprintf("%.0f", sample(fmt.Sprintf("relay %d", i), r.PID())))
			} else {
				cols = append(cols, "down")
			}
		}
		var ar []string
		var sent, lost uint64
		for i, p := range procs {
			ar = append(ar, fmt.Sprintf("%.0f", sample(fmt.Sprintf("agent %d", i), p.cmd.Process.Pid)))
			s := p.status()
			sent += s.Published
			lost += s.Lost
		}
		for _, s := range finished {
			sent += s.Published
			lost += s.Lost
		}
		stored := "?" // count() only: the exact distinct count is for the end
		var n uint64
		if err := b.conn.QueryRow(ctx, "SELECT count() FROM "+scale.Database+".flows WHERE node IN ?", nodes).Scan(&n); err == nil {
			stored = fmt.Sprint(n)
		}
		row := fmt.Sprintf("| %d | %s | %s | %s | %d | %s | %d |\n", m, cols[0], cols[1], strings.Join(ar, " "), sent, stored, lost)
		table.WriteString(row)
		logf("%s", strings.TrimSpace(row))
	}

	var evWG sync.WaitGroup
	evErr := make(chan error, len(events))
	for _, e := range events {
		evWG.Add(1)
		go func() {
			defer evWG.Done()
			time.Sleep(time.Until(start.Add(e.at)))
			note("start: " + e.name)
			if err := e.do(); err != nil {
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
	fmt.Printf("RSS every minute:\n\n%s\n", table.String())
	fmt.Printf("RSS spread per process (from minute 3 of the process on; (max - min) / min):\n\n")
	for _, s := range rss {
		xs := s.rss
		if len(xs) > 2 {
			xs = xs[2:]
		}
		lo, hi := xs[0], xs[0]
		for _, x := range xs {
			lo, hi = min(lo, x), max(hi, x)
		}
		fmt.Printf("- %s (pid %d): %d samples used, %.0f–%.0f MiB, spread %.1f %%\n", s.name, s.pid, len(xs), lo, hi, 100*(hi-lo)/lo)
	}
	fmt.Println()
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
		fmt.Printf("**FAIL**: %s\n", strings.Join(fails, "; "))
		return fmt.Errorf("soak failed: %s", strings.Join(fails, "; "))
	}
	fmt.Printf("**PASS**: 0 lost of those acked, 0 duplicates, lost-event records = agents' drops (%d)\n", lost)
	return nil
}
