package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Batch is one agent batch to store under its de-duplication key
// ("node/boot/sequence").
type Batch struct {
	Key       string
	Flows     []*flowv1.Flow
	Conntrack []*flowv1.ConntrackSample
	Lost      []*flowv1.LostEvent
}

// Rows is the number of rows the batch adds.
func (b *Batch) Rows() int { return len(b.Flows) + len(b.Conntrack) + len(b.Lost) }

// ErrClosed is passed to done callbacks of batches that were not stored
// because the writer stopped; their senders must resend them.
var ErrClosed = errors.New("store writer stopped before the batch was written")

type pending struct {
	b    *Batch
	done func(error)
	at   time.Time
}

// Writer groups batches into large inserts and retries each insert, the
// same rows in the same order under the same insert_deduplication_token,
// until ClickHouse takes it: a retry after an insert that did succeed (but
// whose answer was lost) is de-duplicated by ClickHouse, in the flows table
// and in the rollups fed from it.
//
// The token is derived from the keys of the batches in the insert, so the
// guarantee covers retries of the same insert (this relay, and ClickHouse
// acknowledging an insert whose answer was lost). A batch resent to another
// relay replica is de-duplicated by ClickHouse only if it lands in an insert
// with the same batch keys; otherwise the relays' own key checks apply.
//
// Back-pressure: the queue holds at most Config.QueueRows rows. When it is
// full, Enqueue blocks until the writer has stored enough to make room (or
// stops). The relay calls Enqueue from the agent's stream, so a ClickHouse
// outage stops acks and then reads, and agents buffer on their side.
type Writer struct {
	s   *Store
	m   *writerMetrics
	max int

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []pending
	rows    int // rows in queue and in flight
	stopped bool
	wake    chan struct{}
	last    time.Time

	flows flowColumns
}

// NewWriter makes a writer; run it with Run. reg may be nil.
func (s *Store) NewWriter(reg prometheus.Registerer) *Writer {
	w := &Writer{s: s, m: newWriterMetrics(reg), max: s.cfg.QueueRows, wake: make(chan struct{}, 1)}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// Enqueue queues a batch; done is called exactly once: with nil after the
// insert containing the batch succeeded, or with an error when the writer
// stopped first. Enqueue blocks while the queue is full (see Writer).
func (w *Writer) Enqueue(b *Batch, done func(error)) {
	n := b.Rows()
	w.mu.Lock()
	for !w.stopped && w.rows > 0 && w.rows+n > w.max {
		w.cond.Wait()
	}
	if w.stopped {
		w.mu.Unlock()
		done(ErrClosed)
		return
	}
	w.queue = append(w.queue, pending{b: b, done: done, at: time.Now()})
	w.rows += n
	w.m.queue.Set(float64(w.rows))
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// QueueRows is the number of rows waiting or being written.
func (w *Writer) QueueRows() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rows
}

// LastInsert is when the last insert succeeded (zero before the first).
func (w *Writer) LastInsert() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Run writes until ctx ends. Batches not yet stored then get ErrClosed.
//
// Two stages overlap: while one insert is in flight (or being retried), the
// next group is taken from the queue and encoded into columns. Inserts are
// still sent one at a time and in order.
func (w *Writer) Run(ctx context.Context) error {
	defer w.stop()
	free := make(chan *flowColumns, 2)
	free <- &flowColumns{}
	free <- &flowColumns{}
	ready := make(chan *prepared, 1)
	sent := make(chan struct{})
	go func() { // sender: owned by Run, ends when ready is closed
		defer close(sent)
		failed := false
		for p := range ready {
			err := ErrClosed
			if !failed {
				err = w.send(ctx, p)
				failed = err != nil
			}
			w.finish(p.group, err)
			free <- p.flows
		}
	}()
	defer func() { close(ready); <-sent }()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		group, wait := w.take()
		if group == nil {
			if wait > 0 {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-w.wake:
			case <-timer.C:
			}
			continue
		}
		var cols *flowColumns
		select {
		case cols = <-free:
		case <-ctx.Done():
			w.finish(group, ErrClosed)
			return nil
		}
		ready <- w.prepare(group, cols)
	}
}

// take returns the next group to insert when it is due: BatchRows rows
// queued or BatchInterval since the first one arrived. Otherwise it returns
// how long to wait (0: until woken).
func (w *Writer) take() ([]pending, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return nil, 0
	}
	if age := time.Since(w.queue[0].at); w.rows < w.s.cfg.BatchRows && age < w.s.cfg.BatchInterval {
		return nil, w.s.cfg.BatchInterval - age
	}
	n, rows := 0, 0
	for n < len(w.queue) && (n == 0 || rows+w.queue[n].b.Rows() <= w.s.cfg.BatchRows) {
		rows += w.queue[n].b.Rows()
		n++
	}
	group := append([]pending(nil), w.queue[:n]...)
	w.queue = append(w.queue[:0], w.queue[n:]...)
	return group, 0
}

func (w *Writer) finish(group []pending, err error) {
	rows := 0
	for _, p := range group {
		rows += p.b.Rows()
	}
	w.mu.Lock()
	w.rows -= rows
	if err == nil {
		w.last = time.Now()
	}
	w.m.queue.Set(float64(w.rows))
	w.cond.Broadcast()
	w.mu.Unlock()
	for _, p := range group {
		p.done(err)
	}
}

func (w *Writer) stop() {
	w.mu.Lock()
	w.stopped = true
	rest := w.queue
	w.queue = nil
	w.rows = 0
	w.m.queue.Set(0)
	w.cond.Broadcast()
	w.mu.Unlock()
	for _, p := range rest {
		p.done(ErrClosed)
	}
}

// dedupToken identifies a group by its batch keys, so that every retry of
// the insert carries the same token.
func dedupToken(group []pending) string {
	h := sha256.New()
	for _, p := range group {
		h.Write([]byte(p.b.Key))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// prepared is a group encoded for insertion.
type prepared struct {
	group []pending
	token string
	flows *flowColumns
	ct    []*flowv1.ConntrackSample
	lost  []*flowv1.LostEvent
}

func (w *Writer) prepare(group []pending, cols *flowColumns) *prepared {
	p := &prepared{group: group, token: dedupToken(group), flows: cols}
	cols.reset()
	for _, g := range group {
		for _, f := range g.b.Flows {
			cols.add(f)
		}
		p.ct = append(p.ct, g.b.Conntrack...)
		p.lost = append(p.lost, g.b.Lost...)
	}
	return p
}

// write prepares and sends a group (tests use it to repeat an insert).
func (w *Writer) write(ctx context.Context, group []pending) error {
	return w.send(ctx, w.prepare(group, &flowColumns{}))
}

// send inserts a prepared group, retrying the identical insert with backoff
// until it succeeds or ctx ends (then ErrClosed).
func (w *Writer) send(ctx context.Context, p *prepared) error {
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := w.insertAll(ctx, p)
		if err == nil {
			if attempt > 0 {
				w.s.log.Info("ClickHouse insert succeeded after retries", "attempts", attempt+1, "rows", p.flows.len()+len(p.ct)+len(p.lost))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ErrClosed
		}
		w.s.log.Warn("ClickHouse insert failed; retrying the same insert", "err", err, "attempt", attempt+1, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ErrClosed
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *Writer) insertAll(ctx context.Context, p *prepared) error {
	token, ct, lost := p.token, p.ct, p.lost
	if p.flows.len() > 0 {
		if err := w.insert(ctx, "flows", token, flowColumnNames, p.flows.len(), p.flows.columns()); err != nil {
			return err
		}
	}
	if len(ct) > 0 {
		names, cols := conntrackColumns(ct)
		if err := w.insert(ctx, "conntrack", token, names, len(ct), cols); err != nil {
			return err
		}
	}
	if len(lost) > 0 {
		names, cols := lostColumns(lost)
		if err := w.insert(ctx, "lost_events", token, names, len(lost), cols); err != nil {
			return err
		}
	}
	return nil
}

func (w *Writer) insert(ctx context.Context, table, token string, names []string, rows int, cols []any) error {
	start := time.Now()
	err := w.s.insertColumns(ctx, table, token, names, cols)
	if err != nil {
		w.m.errors.WithLabelValues(table).Inc()
		return fmt.Errorf("insert %d rows into %s: %w", rows, table, err)
	}
	w.m.duration.WithLabelValues(table).Observe(time.Since(start).Seconds())
	w.m.rows.WithLabelValues(table).Add(float64(rows))
	return nil
}

// insertColumns sends one columnar insert with its de-duplication token.
func (s *Store) insertColumns(ctx context.Context, table, token string, names []string, cols []any) error {
	settings := clickhouse.Settings{
		"insert_deduplicate":                                 1,
		"insert_deduplication_token":                         token + "/" + table,
		"deduplicate_blocks_in_dependent_materialized_views": 1,
	}
	if s.cfg.Cluster != "" {
		settings["insert_distributed_sync"] = 1 // ack only once the shards have it
	}
	ictx := clickhouse.Context(ctx, clickhouse.WithSettings(settings))
	b, err := s.conn.PrepareBatch(ictx, "INSERT INTO "+s.d.table(table)+" ("+strings.Join(names, ", ")+")")
	if err != nil {
		return err
	}
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			_ = b.Abort()
			return fmt.Errorf("column %s: %w", names[i], err)
		}
	}
	return b.Send()
}

var conntrackColumnNames = []string{"time", "node", "netns", "entries", "max", "utilization", "trigger",
	"new", "drop", "early_drop", "insert_failed", "invalid", "search_restart", "creators", "creator_ips", "creator_new", "sample"}

func conntrackColumns(ss []*flowv1.ConntrackSample) ([]string, []any) {
	n := len(ss)
	t := make([]time.Time, 0, n)
	node, trig, sample := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	netns, entries, max := make([]uint64, 0, n), make([]uint64, 0, n), make([]uint64, 0, n)
	util := make([]float64, 0, n)
	var st [6][]uint64
	creators, ips := make([][]string, 0, n), make([][]string, 0, n)
	newE := make([][]uint64, 0, n)
	for _, s := range ss {
		ts := time.Unix(0, 0).UTC()
		if s.Time != nil {
			ts = s.Time.AsTime()
		}
		t = append(t, ts)
		node, trig = append(node, s.GetNodeName()), append(trig, s.GetTrigger().String())
		netns, entries, max = append(netns, s.GetNetns()), append(entries, s.GetEntries()), append(max, s.GetMax())
		util = append(util, s.GetUtilization())
		d := s.GetDeltas()
		for i, v := range []uint64{d.GetNew(), d.GetDrop(), d.GetEarlyDrop(), d.GetInsertFailed(), d.GetInvalid(), d.GetSearchRestart()} {
			st[i] = append(st[i], v)
		}
		var cs, is []string
		var ns []uint64
		for _, c := range s.GetTopCreators() {
			name := c.GetIp()
			if ep := c.GetEndpoint(); ep.GetPodName() != "" {
				name = ep.GetNamespace() + "/" + ep.GetPodName()
			}
			cs, is, ns = append(cs, name), append(is, c.GetIp()), append(ns, c.GetNewEntries())
		}
		if ns == nil {
			ns = []uint64{}
		}
		creators, ips, newE = append(creators, nonNil(cs)), append(ips, nonNil(is)), append(newE, ns)
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(s)
		sample = append(sample, string(b))
	}
	return conntrackColumnNames, []any{t, node, netns, entries, max, util, trig, st[0], st[1], st[2], st[3], st[4], st[5], creators, ips, newE, sample}
}

var lostColumnNames = []string{"time", "node", "source", "num_events_lost", "has_cpu", "cpu", "detail", "present"}

func lostColumns(ls []*flowv1.LostEvent) ([]string, []any) {
	n := len(ls)
	t := make([]time.Time, 0, n)
	node, src, detail := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	num := make([]uint64, 0, n)
	hasCPU, present := make([]uint8, 0, n), make([]uint8, 0, n)
	cpu := make([]int32, 0, n)
	for _, l := range ls {
		ts, p := time.Unix(0, 0).UTC(), uint8(0)
		if l.Time != nil {
			ts, p = l.Time.AsTime(), 1
		}
		t, present = append(t, ts), append(present, p)
		node, src, detail = append(node, l.GetNodeName()), append(src, l.GetSource().String()), append(detail, l.GetDetail())
		num = append(num, l.GetNumEventsLost())
		var h uint8
		if l.Cpu != nil {
			h = 1
		}
		hasCPU, cpu = append(hasCPU, h), append(cpu, l.GetCpu().GetValue())
	}
	return lostColumnNames, []any{t, node, src, num, hasCPU, cpu, detail, present}
}
