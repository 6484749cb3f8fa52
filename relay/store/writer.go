package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/prometheus/client_golang/prometheus"
	gproto "google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/internal/backoff"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Batch is one agent batch to store under its de-duplication key
// ("node/boot/sequence").
type Batch struct {
	Key       string
	Flows     []*flowv1.Flow
	Conntrack []*flowv1.ConntrackSample
	Lost      []*flowv1.LostEvent
	// Bytes is the batch's encoded size as received, what the queue's bound
	// (Config.QueueBytes) counts; 0: unknown, counted as EstimatedRowBytes
	// per row.
	Bytes int
}

// EstimatedRowBytes is the encoded size counted for a row of a batch of
// unknown size: about a fully labelled flow.
const EstimatedRowBytes = 512

// Rows is the number of rows the batch adds.
func (b *Batch) Rows() int { return len(b.Flows) + len(b.Conntrack) + len(b.Lost) }

func (b *Batch) size() int {
	if b.Bytes > 0 {
		return b.Bytes
	}
	return b.Rows() * EstimatedRowBytes
}

// ErrClosed is passed to done callbacks of batches that were not stored
// because the writer stopped; their senders must resend them.
var ErrClosed = errors.New("store writer stopped before the batch was written")

// Writer groups batches into large inserts (throughput needs tens of
// thousands of rows per insert) and stores each agent batch at most once,
// whichever relay's writer inserts it and however batches are grouped:
//
//   - Every stored record carries its batch (BatchID of the key), and
//     materialized views record (batch, node, table) in the batches table in
//     the same insert. Before every insert attempt, the first and each
//     retry, the writer asks batches which of the group's batches are stored
//     and leaves those out, table by table; their done still gets nil (they
//     are safely stored). So a batch resent to another relay after a
//     reconnect is not stored again, nor is the old relay's retry stored
//     after the new relay stored the batch.
//   - Every attempt at a table carries the insert_deduplication_token of
//     the group's first attempt (derived from the keys it carried), even
//     when the check left more batches out since: when an attempt stored
//     rows but failed, on some shards only or before the views recorded
//     its batches, ClickHouse drops what the retry sends again, in flows
//     and in the rollups (see send).
//   - An insert still running on the server after its client died or
//     gave up is waited for before the check (running.go): every insert
//     names its batches in log_comment, and the writer asks
//     system.processes first.
//
// What remains: two live writers that both check before either insert
// starts (truly concurrent first inserts of the same batch) both store it;
// with replicated tables the check may read a replica that lags behind.
// Batches with an empty key are never looked up.
//
// Flows are encoded into their insert's columns in Enqueue, on the caller's
// goroutine: the queue holds columns (chcols.go), which copy what they keep,
// not the Flow messages, so the writer keeps no reference to a batch's
// flows once Enqueue returns. (Conntrack samples and lost events, a few per
// batch, are kept as they are.)
//
// Back-pressure: the queue holds at most Config.QueueBytes of batches (their
// encoded size, Batch.Bytes: encoded as columns they take less, see
// TestColumnsOfAnInsertTakeLessMemoryThanItsEncodedBatches), the insert
// being sent included, and an insert takes at most half of it. When it is
// full, Enqueue blocks until the writer has stored enough to make room (or
// stops). The relay calls Enqueue from the agent's stream, so a ClickHouse
// outage stops acks and then reads, and agents buffer on their side.
//
// Memory: the writer makes its insert columns once, in NewWriter, with room
// for BatchRows rows each, and keeps them for its life: insertColumnSets
// sets, one being sent and one filling, so an idle writer, a loaded one and
// one catching up after an outage hold the same columns (the memory the
// relay is sized for is taken at start, not when the load comes). A batch
// that needs a new insert while both sets are in use waits in Enqueue, as
// it does for bytes, until the insert being sent is stored. What a row's
// strings and array elements take is not known ahead: those parts grow to
// the largest insert's needs once and are kept too, never released.
type Writer struct {
	s        *Store
	m        *writerMetrics
	maxBytes int

	mu      sync.Mutex
	cond    *sync.Cond
	groups  []*group // waiting, oldest first; only the last one takes batches
	rows    int      // rows queued and in flight
	bytes   int      // their Batch.size
	queued  int      // bytes queued only
	stopped bool
	wake    chan struct{}
	last    time.Time
	free    []*flowColumns // insert columns not in use, all made by NewWriter
	// partial holds the rows of an insert whose batches are partly stored
	// already (send); only Run's goroutine uses it. Made on first use and
	// kept, as the sets are.
	partial *flowColumns

	onDedup func(batches int)

	// sizes grows ch-go's buffer once per insert (blocksize.go).
	sizes blockSizes

	// afterInsert, set by tests, runs after each successful insert and
	// can fail it, as a connection lost before the answer does.
	afterInsert func(table string) error
}

// maxRunningWait bounds the wait for inserts of the same batches still
// running on the server (running.go).
const maxRunningWait = 30 * time.Second

// insertColumnSets is how many sets of insert columns a writer has: one
// being sent while the next fills is all the inserts need to follow each
// other (they are sent one at a time); a batch arriving while both are in
// use waits, as it would for the queue's bytes.
const insertColumnSets = 2

// group is the batches of one insert, their flows already columns.
type group struct {
	cols  *flowColumns
	items []item
	rows  int // of the batches in items and those being added
	size  int // their Batch.size
	at    time.Time
	// closed: a batch did not fit, so the group is sent without waiting
	// for BatchInterval (the batch waits for columns of its own).
	closed bool
	// adding counts Enqueue calls still encoding into cols; fill orders
	// them (rows and items are appended in the same order).
	adding sync.WaitGroup
	fill   sync.Mutex
}

// item is what the insert needs of one batch once its flows are columns.
type item struct {
	key       string
	id        uint64 // BatchID(key)
	size      int
	flows     [2]int // [start, end) of its rows in the group's columns
	flowsNode string // the node of its first flow
	ct        []*flowv1.ConntrackSample
	lost      []*flowv1.LostEvent
	done      func(error)
}

// NewWriter makes a writer and its insert columns; run it with Run. reg may
// be nil.
func (s *Store) NewWriter(reg prometheus.Registerer) *Writer {
	w := newWriter(s, reg)
	for range insertColumnSets {
		c := newFlowColumns()
		c.reserve(s.cfg.BatchRows)
		w.free = append(w.free, c)
	}
	return w
}

// newWriter is a writer without insert columns (write, for tests, brings
// its own).
func newWriter(s *Store, reg prometheus.Registerer) *Writer {
	w := &Writer{s: s, m: newWriterMetrics(reg), maxBytes: s.cfg.QueueBytes, wake: make(chan struct{}, 1)}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// Enqueue queues a batch; done is called exactly once: with nil after the
// insert containing the batch succeeded, or with an error when the writer
// stopped first. Enqueue blocks while the queue is full or both sets of
// insert columns are taken (see Writer), then encodes the batch's flows
// into the columns of its insert.
func (w *Writer) Enqueue(b *Batch, done func(error)) {
	n, size := b.Rows(), b.size()
	w.mu.Lock()
	var g *group
	for !w.stopped {
		if w.bytes == 0 || w.bytes+size <= w.maxBytes {
			if g = w.groupFor(n, size); g != nil {
				break
			}
		}
		w.cond.Wait()
	}
	if w.stopped {
		w.mu.Unlock()
		done(ErrClosed)
		return
	}
	g.adding.Add(1)
	g.rows += n
	g.size += size
	w.rows += n
	w.bytes += size
	w.queued += size
	w.m.queue.Set(float64(w.rows))
	w.mu.Unlock()
	g.add(b, done)
	g.adding.Done()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// groupFor returns the group a batch of n rows and size bytes joins: the
// last one while it has room (BatchRows rows, half the queue's bytes), else
// a new one on free insert columns; nil when there are none (the last group
// is then closed, so Run sends it and frees its predecessor's columns).
// Called with mu held.
func (w *Writer) groupFor(n, size int) *group {
	var last *group
	if k := len(w.groups); k > 0 {
		last = w.groups[k-1]
		if !last.closed && last.rows+n <= w.s.cfg.BatchRows && last.size+size <= w.maxBytes/2 {
			return last
		}
	}
	k := len(w.free)
	if k == 0 {
		if last != nil && !last.closed {
			last.closed = true
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
		return nil
	}
	g := &group{at: time.Now(), cols: w.free[k-1]}
	w.free = w.free[:k-1]
	w.groups = append(w.groups, g)
	return g
}

// add encodes a batch into the group.
func (g *group) add(b *Batch, done func(error)) {
	it := item{key: b.Key, id: BatchID(b.Key), size: b.size(), ct: b.Conntrack, lost: b.Lost, done: done}
	if len(b.Flows) > 0 {
		it.flowsNode = strings.Clone(b.Flows[0].GetNodeName()) // keeps no part of the batch reachable
	}
	g.fill.Lock()
	defer g.fill.Unlock()
	it.flows[0] = g.cols.len()
	addFlows(g.cols, b.Flows, it.id)
	it.flows[1] = g.cols.len()
	g.items = append(g.items, it)
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
// Inserts are sent one at a time and in order; meanwhile Enqueue fills the
// next one.
func (w *Writer) Run(ctx context.Context) error {
	defer w.stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		g, wait := w.take()
		if g == nil {
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
		err := w.send(ctx, g)
		w.finish(g, err)
		if err != nil {
			return nil // ctx ended: the rest get ErrClosed from stop
		}
		w.recycle(g)
	}
}

// take returns the next group to insert, its batches all encoded, when it
// is due: full (BatchRows rows, half the queue's bytes, or a later group
// started), or BatchInterval since its first batch arrived. Otherwise it
// returns how long to wait (0: until woken).
func (w *Writer) take() (*group, time.Duration) {
	w.mu.Lock()
	if len(w.groups) == 0 {
		w.mu.Unlock()
		return nil, 0
	}
	g := w.groups[0]
	full := len(w.groups) > 1 || g.closed || g.rows >= w.s.cfg.BatchRows || g.size >= w.maxBytes/2
	if age := time.Since(g.at); !full && age < w.s.cfg.BatchInterval {
		w.mu.Unlock()
		return nil, w.s.cfg.BatchInterval - age
	}
	w.groups = append(w.groups[:0], w.groups[1:]...)
	w.queued -= g.size
	w.mu.Unlock()
	g.adding.Wait() // no batch joins a group that left groups
	return g, 0
}

// recycle empties the columns of a sent insert, keeping their memory, for
// the next insert, and wakes a batch that waits for them.
func (w *Writer) recycle(g *group) {
	g.cols.reset()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.free = append(w.free, g.cols)
	w.cond.Broadcast()
}

func (w *Writer) finish(g *group, err error) {
	w.mu.Lock()
	w.rows -= g.rows
	w.bytes -= g.size
	if err == nil {
		w.last = time.Now()
	}
	w.m.queue.Set(float64(w.rows))
	w.cond.Broadcast()
	w.mu.Unlock()
	for _, it := range g.items {
		it.done(err)
	}
}

func (w *Writer) stop() {
	w.mu.Lock()
	w.stopped = true
	rest := w.groups
	w.groups = nil
	w.rows, w.bytes, w.queued = 0, 0, 0
	w.m.queue.Set(0)
	w.cond.Broadcast()
	w.mu.Unlock()
	for _, g := range rest {
		g.adding.Wait()
		for _, it := range g.items {
			it.done(ErrClosed)
		}
	}
}

// BatchID is the 64-bit id of an agent batch key that stored records carry
// in their batch column: the first 8 bytes of the key's SHA-256, never 0
// (0 marks rows written without a key, which are never looked up).
func BatchID(key string) uint64 {
	if key == "" {
		return 0
	}
	h := sha256.Sum256([]byte(key))
	if id := binary.BigEndian.Uint64(h[:8]); id != 0 {
		return id
	}
	return 1
}

// parts are the tables a batch has rows for, one bit each.
type parts uint8

const (
	partFlows parts = 1 << iota
	partConntrack
	partLost
)

var partTables = [...]struct {
	part parts
	name string
}{{partFlows, "flows"}, {partConntrack, "conntrack"}, {partLost, "lost_events"}}

func (it *item) parts() parts {
	var p parts
	if it.flows[1] > it.flows[0] {
		p |= partFlows
	}
	if len(it.ct) > 0 {
		p |= partConntrack
	}
	if len(it.lost) > 0 {
		p |= partLost
	}
	return p
}

// node is the node of the first record of a part: the batches table keeps
// (batch, node), so two keys whose 64-bit ids collide are confused only if
// they also come from the same node.
func (it *item) node(p parts) string {
	switch p {
	case partFlows:
		return it.flowsNode
	case partConntrack:
		return it.ct[0].GetNodeName()
	default:
		return it.lost[0].GetNodeName()
	}
}

// dedupToken identifies the batches of one insert by their keys, so that
// every retry of an identical insert carries the same token.
func dedupToken(items []item, include []bool) string {
	h := sha256.New()
	for i, it := range items {
		if include[i] {
			h.Write([]byte(it.key))
			h.Write([]byte{0})
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func addFlows(cols *flowColumns, fs []*flowv1.Flow, id uint64) {
	for _, f := range fs {
		cols.add(f)
	}
	*cols.batch = appendN(*cols.batch, id, len(fs))
}

func appendN(s []uint64, v uint64, n int) []uint64 {
	for range n {
		s = append(s, v)
	}
	return s
}

// write encodes batches into one group of its own columns and sends it as
// Run would (tests use it to repeat an insert).
func (w *Writer) write(ctx context.Context, batches []*Batch) error {
	g := &group{cols: newFlowColumns()}
	for _, b := range batches {
		g.add(b, func(error) {})
	}
	return w.send(ctx, g)
}

// OnDedupHits sets a function told how many batches of each insert were
// found already stored (by another relay, or by this one before a restart)
// and left out. The relay counts them in trawl_relay_dedup_hits_total, which
// its ingest server registers. Call it before Run.
func (w *Writer) OnDedupHits(f func(batches int)) { w.onDedup = f }

// send inserts a group, retrying with backoff until it succeeds or ctx ends
// (then ErrClosed). Before every attempt it asks ClickHouse which of the
// group's batches are stored and leaves those parts out.
//
// Every attempt at a table carries the token of the group's first attempt
// at it, whatever was left out since. An attempt that failed may have
// stored its rows on some shards, or stored a shard's rows without the
// batches records its views write after them (views are not atomic with
// their table): the check then finds some of those batches and not the
// others, and a retry of the others under a new token would store them a
// second time. Under the first token each shard drops a block it already
// holds; a retry only ever carries a subset of the first attempt's rows,
// so a block dropped so was stored by that attempt.
func (w *Writer) send(ctx context.Context, g *group) error {
	tokens := map[string]string{} // table → the token of its first attempt
	retry := backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	hits := -1 // batches found stored by the first check that answered
	logged := false
	var waitingSince time.Time // of the wait for running inserts, bounded
	for attempt := 0; ; attempt++ {
		running, err := w.s.insertsRunning(ctx, g.items)
		if waitingSince.IsZero() && (err != nil || running > 0) {
			waitingSince = time.Now()
		}
		// An insert still running after maxRunningWait, or a check that
		// keeps failing, does not stop the writer: the batches check
		// decides alone then, as it did before the wait existed.
		if (err != nil || running > 0) && time.Since(waitingSince) < maxRunningWait {
			// Not stored yet does not mean not being stored: wait for
			// those inserts to end (running.go).
			if err == nil {
				w.m.waits.Inc()
				if !logged {
					w.s.log.Info("an insert of some of these batches is still running on ClickHouse (its relay died or gave up); waiting for it to end", "inserts", running, "batches", len(g.items))
					logged = true
				}
			} else {
				w.m.errors.WithLabelValues("processes").Inc()
				w.s.log.Warn("ClickHouse insert postponed; retrying", "err", err, "attempt", attempt+1)
			}
			if !retry.Wait(ctx) {
				return ErrClosed
			}
			continue
		}
		stored, err := w.s.storedParts(ctx, g.items)
		if err != nil {
			w.m.errors.WithLabelValues("batches").Inc()
			err = fmt.Errorf("ask which batches are stored: %w", err)
		} else {
			if hits < 0 {
				// Only the first answer: on later ones, parts this
				// writer stored itself in a failed attempt show too.
				hits = 0
				for _, s := range stored {
					if s != 0 {
						hits++
					}
				}
			}
			err = w.insertAll(ctx, g, stored, tokens)
		}
		if err == nil {
			if attempt > 0 {
				w.s.log.Info("ClickHouse insert succeeded after retries", "attempts", attempt+1, "rows", g.rows)
			}
			if hits > 0 {
				w.s.log.Debug("left out batches already stored", "batches", hits, "of", len(g.items))
				if w.onDedup != nil {
					w.onDedup(hits)
				}
			}
			return nil
		}
		if ctx.Err() != nil {
			return ErrClosed
		}
		w.s.log.Warn("ClickHouse insert failed; retrying", "err", err, "attempt", attempt+1)
		if !retry.Wait(ctx) {
			return ErrClosed
		}
	}
}

// storedParts asks the batches table which parts of the items' batches are
// stored. One query per insert attempt, by primary key.
func (s *Store) storedParts(ctx context.Context, items []item) ([]parts, error) {
	out := make([]parts, len(items))
	var q strings.Builder
	for _, it := range items {
		if it.id == 0 {
			continue
		}
		if q.Len() == 0 {
			q.WriteString("SELECT batch, node, tbl FROM " + s.d.table("batches") + " WHERE batch IN (")
		} else {
			q.WriteByte(',')
		}
		q.WriteString(strconv.FormatUint(it.id, 10))
	}
	if q.Len() == 0 {
		return out, nil
	}
	q.WriteByte(')')
	type part struct {
		id         uint64
		node, name string
	}
	found := map[part]bool{}
	rows, err := s.conn.Query(ctx, q.String())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var k part
		if err := rows.Scan(&k.id, &k.node, &k.name); err != nil {
			return nil, err
		}
		found[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return out, nil
	}
	for i, it := range items {
		have := it.parts()
		for _, t := range partTables {
			if have&t.part != 0 && found[part{it.id, it.node(t.part), t.name}] {
				out[i] |= t.part
			}
		}
	}
	return out, nil
}

// flowInsertNames are the flows columns inserted: the read columns and batch.
var flowInsertNames = append(append([]string(nil), flowColumnNames...), "batch")

// insertAll inserts the parts of the group's batches that stored does not
// hold: the group's columns when nothing is left out (the usual case), else
// a copy of the remaining batches' rows.
func (w *Writer) insertAll(ctx context.Context, g *group, stored []parts, tokens map[string]string) error {
	include := make([]bool, len(g.items))
	for _, t := range partTables {
		all, any := true, false
		for i, it := range g.items {
			include[i] = it.parts()&t.part != 0 && stored[i]&t.part == 0
			any = any || include[i]
			all = all && (include[i] || it.parts()&t.part == 0)
		}
		if !any {
			continue
		}
		token := tokens[t.name]
		if token == "" {
			token = dedupToken(g.items, include)
			tokens[t.name] = token
		}
		comment := batchComment(w.s.d.db, g.items, include)
		switch t.part {
		case partFlows:
			cols := g.cols
			if !all {
				if w.partial == nil {
					w.partial = newFlowColumns()
				}
				cols = w.partial
				for i, it := range g.items {
					if include[i] {
						cols.copyRows(g.cols, it.flows[0], it.flows[1])
					}
				}
			}
			err := w.insert(ctx, t.name, token, comment, cols.len(), cols.input)
			if !all {
				cols.reset()
			}
			if err != nil {
				return err
			}
		case partConntrack:
			var ct []*flowv1.ConntrackSample
			var ids []uint64
			for i, it := range g.items {
				if include[i] {
					ct, ids = append(ct, it.ct...), appendN(ids, it.id, len(it.ct))
				}
			}
			if err := w.insert(ctx, t.name, token, comment, len(ct), conntrackInput(ct, ids)); err != nil {
				return err
			}
		case partLost:
			var lost []*flowv1.LostEvent
			var ids []uint64
			for i, it := range g.items {
				if include[i] {
					lost, ids = append(lost, it.lost...), appendN(ids, it.id, len(it.lost))
				}
			}
			if err := w.insert(ctx, t.name, token, comment, len(lost), lostInput(lost, ids)); err != nil {
				return err
			}
		}
	}
	return nil
}
func (w *Writer) insert(ctx context.Context, table, token, comment string, rows int, input proto.Input) error {
	start := time.Now()
	err := w.s.insertInput(ctx, table, token, comment, w.sizes.input(table, rows, input))
	if err != nil {
		w.m.errors.WithLabelValues(table).Inc()
		return fmt.Errorf("insert %d rows into %s: %w", rows, table, err)
	}
	w.m.duration.WithLabelValues(table).Observe(time.Since(start).Seconds())
	w.m.rows.WithLabelValues(table).Add(float64(rows))
	// Which insert stored which batches, when the server keeps no
	// query_log: the comment lists them.
	w.s.log.Debug("inserted", "table", table, "rows", rows, "token", token, "took", time.Since(start), "batches", comment)
	if w.afterInsert != nil {
		return w.afterInsert(table)
	}
	return nil
}

var conntrackColumnNames = []string{"time", "node", "netns", "entries", "max", "utilization", "trigger",
	"new", "drop", "early_drop", "insert_failed", "invalid", "search_restart", "creators", "creator_ips", "creator_new", "sample", "batch"}

// conntrackInput encodes samples; batch[i] is the BatchID of ss[i].
func conntrackInput(ss []*flowv1.ConntrackSample, batch []uint64) proto.Input {
	t, node, trig, sample := dateTime64(), newLowCardinalityString(), newLowCardinalityString(), new(proto.ColStr)
	netns, entries, max := new(proto.ColUInt64), new(proto.ColUInt64), new(proto.ColUInt64)
	util := new(proto.ColFloat64)
	var st [6]proto.ColUInt64
	creators, ips, newE := newStringArray(), newStringArray(), newUint64Array()
	for _, s := range ss {
		ts := time.Unix(0, 0).UTC()
		if s.Time != nil {
			ts = s.Time.AsTime()
		}
		t.Append(ts)
		node.add(s.GetNodeName())
		trig.add(s.GetTrigger().String())
		netns.Append(s.GetNetns())
		entries.Append(s.GetEntries())
		max.Append(s.GetMax())
		util.Append(s.GetUtilization())
		d := s.GetDeltas()
		for i, v := range []uint64{d.GetNew(), d.GetDrop(), d.GetEarlyDrop(), d.GetInsertFailed(), d.GetInvalid(), d.GetSearchRestart()} {
			st[i].Append(v)
		}
		for _, c := range s.GetTopCreators() {
			name := c.GetIp()
			if ep := c.GetEndpoint(); ep.GetPodName() != "" {
				name = ep.GetNamespace() + "/" + ep.GetPodName()
			}
			creators.push(name)
			ips.push(c.GetIp())
			newE.push(c.GetNewEntries())
		}
		creators.endRow()
		ips.endRow()
		newE.endRow()
		b, _ := gproto.MarshalOptions{Deterministic: true}.Marshal(s)
		sample.AppendBytes(b)
	}
	ids := proto.ColUInt64(batch)
	return namedInput(conntrackColumnNames, t, node, netns, entries, max, util, trig,
		&st[0], &st[1], &st[2], &st[3], &st[4], &st[5], creators, ips, newE, sample, &ids)
}

// lostColumnNames are also the columns query.go reads (lostInsertNames add batch).
var lostColumnNames = []string{"time", "node", "source", "num_events_lost", "has_cpu", "cpu", "detail", "present"}

var lostInsertNames = append(append([]string(nil), lostColumnNames...), "batch")

// lostInput encodes lost events; batch[i] is the BatchID of ls[i].
func lostInput(ls []*flowv1.LostEvent, batch []uint64) proto.Input {
	t, node, src, detail := dateTime64(), newLowCardinalityString(), newLowCardinalityString(), new(proto.ColStr)
	num := new(proto.ColUInt64)
	hasCPU, present := new(proto.ColUInt8), new(proto.ColUInt8)
	cpu := new(proto.ColInt32)
	for _, l := range ls {
		ts, p := time.Unix(0, 0).UTC(), uint8(0)
		if l.Time != nil {
			ts, p = l.Time.AsTime(), 1
		}
		t.Append(ts)
		present.Append(p)
		node.add(l.GetNodeName())
		src.add(l.GetSource().String())
		detail.Append(l.GetDetail())
		num.Append(l.GetNumEventsLost())
		var h uint8
		if l.Cpu != nil {
			h = 1
		}
		hasCPU.Append(h)
		cpu.Append(l.GetCpu().GetValue())
	}
	ids := proto.ColUInt64(batch)
	return namedInput(lostInsertNames, t, node, src, num, hasCPU, cpu, detail, present, &ids)
}

// namedInput pairs columns with their names.
func namedInput(names []string, cols ...proto.ColInput) proto.Input {
	if len(names) != len(cols) {
		panic(fmt.Sprintf("%d column names for %d columns", len(names), len(cols)))
	}
	in := make(proto.Input, len(cols))
	for i, c := range cols {
		in[i] = proto.InputColumn{Name: names[i], Data: c}
	}
	return in
}
