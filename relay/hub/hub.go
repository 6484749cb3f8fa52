// Package hub is the relay's live fan-out: every record an agent sends is
// published here (before it reaches ClickHouse) and copied to each --follow
// subscriber whose filter matches.
//
// Each subscriber has a bounded buffer. Publishing never waits: when a
// subscriber's buffer is full the record is dropped for that subscriber only
// and counted; the observer turns the count into a LostEvent record
// (OBSERVER_EVENTS_QUEUE). Ingest and other subscribers are never slowed.
//
// The hub also remembers records published but not yet stored (Publish with a
// key, Stored when the key's insert succeeded). Subscribe returns them along
// with the subscription, atomically: a record is then either in ClickHouse
// before the history query runs, in that snapshot, or delivered live — so
// history followed by live has no gap. Records that appear twice (in history
// and the snapshot) share a uuid; the observer drops the repeat.
package hub

import (
	"sync"
	"sync/atomic"

	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Config sizes the hub. Zero values pick defaults.
type Config struct {
	// SubscriberBuffer is the records buffered per subscriber (default 8192).
	SubscriberBuffer int
	// MaxUnstored bounds the records kept while waiting for their insert
	// (default 1,000,000); beyond it the oldest keys are forgotten, which
	// only weakens the seam guarantee during a long ClickHouse outage.
	MaxUnstored int
	// OnLost is called with records dropped for a slow subscriber (metrics).
	OnLost func(n int)
	// OnSubscribers is called with the subscriber count when it changes.
	OnSubscribers func(n int)
}

// Hub fans records out to subscribers. The zero value is not usable; use New.
type Hub struct {
	cfg Config

	mu   sync.RWMutex
	subs map[*Subscription]struct{}

	umu       sync.Mutex
	unstored  map[string]*pending
	order     []string // keys in publish order
	unstoredN int
}

// pending is the records of one key waiting for their insert. They are
// built only when needed (a subscriber exists when they are published, or
// one subscribes before they are stored), so ingest without --follow
// subscribers allocates no GetFlowsResponse per record. build is called at
// most once, either before the entry is shared or under the hub's write
// lock, so it never runs concurrently with a reader of recs.
type pending struct {
	n     int
	recs  []*observerv1.GetFlowsResponse
	build func() []*observerv1.GetFlowsResponse
}

func (p *pending) get() []*observerv1.GetFlowsResponse {
	if p.build != nil {
		p.recs, p.build = p.build(), nil
	}
	return p.recs
}

// New returns an empty hub.
func New(cfg Config) *Hub {
	if cfg.SubscriberBuffer <= 0 {
		cfg.SubscriberBuffer = 8192
	}
	if cfg.MaxUnstored <= 0 {
		cfg.MaxUnstored = 1_000_000
	}
	return &Hub{cfg: cfg, subs: map[*Subscription]struct{}{}, unstored: map[string]*pending{}}
}

// Subscription receives matching records published after it was created.
type Subscription struct {
	hub   *Hub
	match func(*observerv1.GetFlowsResponse) bool
	ch    chan *observerv1.GetFlowsResponse
	lost  atomic.Uint64
	once  sync.Once
}

// C delivers records in publish order.
func (s *Subscription) C() <-chan *observerv1.GetFlowsResponse { return s.ch }

// TakeLost returns the records dropped for this subscriber since the last
// call, and resets the count.
func (s *Subscription) TakeLost() uint64 { return s.lost.Swap(0) }

// AddLost counts n records lost for this subscriber outside the hub (e.g.
// from a peer relay's stream); they are reported with the hub's own.
func (s *Subscription) AddLost(n uint64) {
	s.lost.Add(n)
	if s.hub.cfg.OnLost != nil {
		s.hub.cfg.OnLost(int(n))
	}
}

// Close unsubscribes.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.hub.mu.Lock()
		delete(s.hub.subs, s)
		n := len(s.hub.subs)
		s.hub.mu.Unlock()
		if s.hub.cfg.OnSubscribers != nil {
			s.hub.cfg.OnSubscribers(n)
		}
	})
}

// Subscribe registers a subscriber for records match accepts (all when nil)
// and returns the matching records published but not yet stored, oldest
// first. buffer <= 0 uses the configured default.
func (h *Hub) Subscribe(match func(*observerv1.GetFlowsResponse) bool, buffer int) (*Subscription, []*observerv1.GetFlowsResponse) {
	if buffer <= 0 {
		buffer = h.cfg.SubscriberBuffer
	}
	s := &Subscription{hub: h, match: match, ch: make(chan *observerv1.GetFlowsResponse, buffer)}
	// Hold the subscriber lock while taking the snapshot so no Publish
	// falls between the two (Publish adds to unstored under mu's read lock).
	h.mu.Lock()
	h.subs[s] = struct{}{}
	n := len(h.subs)
	h.umu.Lock()
	var snap []*observerv1.GetFlowsResponse
	for _, k := range h.order {
		for _, r := range h.unstored[k].get() {
			if match == nil || match(r) {
				snap = append(snap, r)
			}
		}
	}
	h.umu.Unlock()
	h.mu.Unlock()
	if h.cfg.OnSubscribers != nil {
		h.cfg.OnSubscribers(n)
	}
	return s, snap
}

// Publish sends records to every matching subscriber without waiting. With a
// non-empty key the records are remembered as unstored until Stored(key).
// Records are shared between subscribers and must not be modified.
func (h *Hub) Publish(key string, recs []*observerv1.GetFlowsResponse) {
	if len(recs) == 0 {
		return
	}
	h.publish(key, &pending{n: len(recs), recs: recs})
}

// PublishFunc is Publish for n records that build returns when asked: it
// is called at most once, only if a subscriber needs the records (now, or
// by subscribing before Stored(key)), possibly after PublishFunc returned
// and on another goroutine. It must return the same n records each time
// it could be called, and what it reads must not change meanwhile.
func (h *Hub) PublishFunc(key string, n int, build func() []*observerv1.GetFlowsResponse) {
	if n <= 0 {
		return
	}
	h.publish(key, &pending{n: n, build: build})
}

func (h *Hub) publish(key string, p *pending) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var recs []*observerv1.GetFlowsResponse
	if len(h.subs) > 0 {
		recs = p.get() // before p is shared
	}
	if key != "" {
		h.umu.Lock()
		if _, dup := h.unstored[key]; !dup {
			h.unstored[key] = p
			h.order = append(h.order, key)
			h.unstoredN += p.n
			for h.unstoredN > h.cfg.MaxUnstored && len(h.order) > 1 {
				old := h.order[0]
				h.order = h.order[1:]
				h.unstoredN -= h.unstored[old].n
				delete(h.unstored, old)
			}
		}
		h.umu.Unlock()
	}
	for s := range h.subs {
		dropped := 0
		for _, r := range recs {
			if s.match != nil && !s.match(r) {
				continue
			}
			select {
			case s.ch <- r:
			default:
				dropped++
			}
		}
		if dropped > 0 {
			s.lost.Add(uint64(dropped))
			if h.cfg.OnLost != nil {
				h.cfg.OnLost(dropped)
			}
		}
	}
}

// Stored forgets the unstored records of key: they are in ClickHouse now.
func (h *Hub) Stored(key string) {
	h.umu.Lock()
	defer h.umu.Unlock()
	p, ok := h.unstored[key]
	if !ok {
		return
	}
	delete(h.unstored, key)
	h.unstoredN -= p.n
	for i, k := range h.order {
		if k == key {
			h.order = append(h.order[:i], h.order[i+1:]...)
			break
		}
	}
}

// Subscribers returns the number of live subscribers.
func (h *Hub) Subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

// Unstored returns the number of records waiting for their insert.
func (h *Hub) Unstored() int {
	h.umu.Lock()
	defer h.umu.Unlock()
	return h.unstoredN
}
