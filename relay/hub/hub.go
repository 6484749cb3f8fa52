// Package hub is the relay's live fan-out: every record an agent sends is
// published here (before it reaches ClickHouse) and copied to each --follow
// subscriber whose filter matches.
//
// Each subscriber has a bounded buffer. Publishing never waits: when a
// subscriber's buffer is full the record is dropped for that subscriber only
// and counted; the observer turns the count into a LostEvent record
// (OBSERVER_EVENTS_QUEUE). Ingest and other subscribers are never slowed.
//
// The hub also counts the records of inserts in flight: published with a
// key, not yet settled (Settled with the key when its insert succeeded or
// will not be made by this relay). It keeps their number, not the records:
// the records die once the writer has them as columns. A subscriber that
// reads history before going live (SubscribeSeam) gets the inserts in
// flight at the moment it subscribed and waits for them before it queries
// ClickHouse. A record is then either in ClickHouse before the history
// query runs, delivered live, or counted as lost to that subscriber (its
// insert did not succeed in time) — so history followed by live has no
// silent gap. Records that appear twice (stored after subscribing, so both
// live and in history) share a uuid; the observer drops the repeat.
package hub

import (
	"slices"
	"sync"
	"sync/atomic"

	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Config sizes the hub. Zero values pick defaults.
type Config struct {
	// SubscriberBuffer is the records buffered per subscriber (default 8192).
	SubscriberBuffer int
	// OnLost is called with records dropped for a slow subscriber (metrics).
	OnLost func(n int)
	// OnSubscribers is called with the subscriber count when it changes.
	OnSubscribers func(n int)
}

// Hub fans records out to subscribers. The zero value is not usable; use New.
//
// The inserts in flight need no bound of their own: the relay publishes a
// batch just before handing it to the writer, whose queue is bounded and
// blocks the stream, so they are at most the writer's queue plus one batch
// per ingest stream (a key and a count each).
type Hub struct {
	cfg Config

	mu   sync.RWMutex
	subs map[*Subscription]struct{}

	fmu       sync.Mutex
	flights   map[string]*flight
	flightRec int // records of all flights
}

// flight is one insert's records in flight: their number and the seams
// waiting for them.
type flight struct {
	n       int
	waiters []*InFlight
}

// New returns an empty hub.
func New(cfg Config) *Hub {
	if cfg.SubscriberBuffer <= 0 {
		cfg.SubscriberBuffer = 8192
	}
	return &Hub{cfg: cfg, subs: map[*Subscription]struct{}{}, flights: map[string]*flight{}}
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

// InFlight is the inserts that were in flight when a subscriber subscribed:
// their records were published before it (so it does not get them live)
// and may not be in ClickHouse yet (so a history query may miss them).
type InFlight struct {
	hub     *Hub
	keys    []string
	done    chan struct{} // closed when every key has settled
	left    int           // keys not settled
	pending int           // records of keys not settled
	failed  int           // records of keys settled without being stored
	gone    bool          // released: settles no longer change it
}

// Done is closed when every insert has settled.
func (f *InFlight) Done() <-chan struct{} { return f.done }

// Release stops following the inserts and returns how many of their
// records are not in ClickHouse: still in flight, or settled without being
// stored. Later calls return the same number.
func (f *InFlight) Release() (notStored int) {
	f.hub.fmu.Lock()
	defer f.hub.fmu.Unlock()
	if !f.gone {
		f.gone = true
		for _, k := range f.keys {
			if fl := f.hub.flights[k]; fl != nil {
				fl.waiters = slices.DeleteFunc(fl.waiters, func(w *InFlight) bool { return w == f })
			}
		}
		f.keys = nil
	}
	return f.pending + f.failed
}

func (h *Hub) subscribe(match func(*observerv1.GetFlowsResponse) bool, buffer int, seam bool) (*Subscription, *InFlight) {
	if buffer <= 0 {
		buffer = h.cfg.SubscriberBuffer
	}
	s := &Subscription{hub: h, match: match, ch: make(chan *observerv1.GetFlowsResponse, buffer)}
	var f *InFlight
	// Hold the subscriber lock while taking the inserts in flight so no
	// Publish falls between the two (Publish adds flights under mu's read
	// lock): a record is either in a flight taken here or delivered live.
	h.mu.Lock()
	h.subs[s] = struct{}{}
	n := len(h.subs)
	if seam {
		f = &InFlight{hub: h, done: make(chan struct{})}
		h.fmu.Lock()
		for k, fl := range h.flights {
			fl.waiters = append(fl.waiters, f)
			f.keys = append(f.keys, k)
			f.pending += fl.n
		}
		f.left = len(f.keys)
		if f.left == 0 {
			close(f.done)
		}
		h.fmu.Unlock()
	}
	h.mu.Unlock()
	if h.cfg.OnSubscribers != nil {
		h.cfg.OnSubscribers(n)
	}
	return s, f
}

// Subscribe registers a subscriber for records match accepts (all when nil)
// published from now on. buffer <= 0 uses the configured default.
func (h *Hub) Subscribe(match func(*observerv1.GetFlowsResponse) bool, buffer int) *Subscription {
	s, _ := h.subscribe(match, buffer, false)
	return s
}

// SubscribeSeam is Subscribe for a subscriber that reads ClickHouse's
// history before it goes live: it also returns the inserts in flight at
// the moment it subscribed. Wait for them (InFlight.Done) before querying
// history, then Release them and report what was not stored as lost.
func (h *Hub) SubscribeSeam(match func(*observerv1.GetFlowsResponse) bool, buffer int) (*Subscription, *InFlight) {
	return h.subscribe(match, buffer, true)
}

// Publish sends records to every matching subscriber without waiting. With a
// non-empty key their number is counted in flight until Settled(key).
// Records are shared between subscribers and must not be modified.
func (h *Hub) Publish(key string, recs []*observerv1.GetFlowsResponse) {
	if len(recs) == 0 {
		return
	}
	h.publish(key, len(recs), func() []*observerv1.GetFlowsResponse { return recs })
}

// PublishFunc is Publish for n records that build returns when asked: it
// is called before PublishFunc returns and only if there are subscribers,
// so ingest without --follow subscribers allocates no GetFlowsResponse per
// record. The hub keeps neither build nor the records.
func (h *Hub) PublishFunc(key string, n int, build func() []*observerv1.GetFlowsResponse) {
	if n <= 0 {
		return
	}
	h.publish(key, n, build)
}

func (h *Hub) publish(key string, n int, build func() []*observerv1.GetFlowsResponse) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if key != "" {
		h.fmu.Lock()
		if _, dup := h.flights[key]; !dup {
			h.flights[key] = &flight{n: n}
			h.flightRec += n
		}
		h.fmu.Unlock()
	}
	if len(h.subs) == 0 {
		return
	}
	recs := build()
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

// Settled ends key's flight: stored says whether its records are in
// ClickHouse now (false: this relay will not store them, e.g. it is
// stopping; the agent resends them).
func (h *Hub) Settled(key string, stored bool) {
	h.fmu.Lock()
	defer h.fmu.Unlock()
	fl, ok := h.flights[key]
	if !ok {
		return
	}
	delete(h.flights, key)
	h.flightRec -= fl.n
	for _, w := range fl.waiters {
		w.pending -= fl.n
		if !stored {
			w.failed += fl.n
		}
		w.left--
		if w.left == 0 {
			close(w.done)
		}
	}
}

// Subscribers returns the number of live subscribers.
func (h *Hub) Subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

// InFlightRecords returns the number of records published with a key and
// not yet settled.
func (h *Hub) InFlightRecords() int {
	h.fmu.Lock()
	defer h.fmu.Unlock()
	return h.flightRec
}
