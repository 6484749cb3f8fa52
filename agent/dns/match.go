package dns

import "sync"

// Key identifies a query and its response (docs/dns.md): the client's and
// the server's address and port, the protocol and the message id. Addresses
// are 16 bytes, IPv4 in the first 4 as the flow program writes them.
type Key struct {
	Client, Server         [16]byte
	ClientPort, ServerPort uint16
	Proto, Family          uint8
	ID                     uint16
}

// MatchResult says what became of a query or response; label values of
// trawl_agent_dns_matching_total.
type MatchResult string

const (
	// Matched: a response found its query.
	Matched MatchResult = "matched"
	// Unmatched: a response without a query in the table (sent before the
	// agent started, expired, evicted, or translated by NAT between the
	// two observation points).
	Unmatched MatchResult = "unmatched_response"
	// Expired: a query without a response within the expiry.
	Expired MatchResult = "expired"
	// Evicted: a query pushed out of the full table.
	Evicted MatchResult = "evicted_full"
)

// MatchResults lists every MatchResult, for metrics that start at zero.
var MatchResults = []MatchResult{Matched, Unmatched, Expired, Evicted}

// Matcher pairs responses with queries: a table bounded in size and in the
// age of its entries. Times are the kernel's CLOCK_MONOTONIC nanoseconds of
// the packets, so a latency is the time between the two packets on the node.
// Safe for concurrent use.
type Matcher struct {
	mu      sync.Mutex
	max     int
	expiry  uint64
	pending map[Key]uint64 // query time
	order   []queued       // queries in arrival order; stale ones are skipped
	head    int
	counts  map[MatchResult]uint64
	report  func(MatchResult)
}

type queued struct {
	k  Key
	ts uint64
}

// NewMatcher makes a table of at most max queries, each kept for at most
// expiry nanoseconds. report, if not nil, is called with every result (under
// the table's lock: keep it short, e.g. a metric's Inc).
func NewMatcher(max int, expiry uint64, report func(MatchResult)) *Matcher {
	if max < 1 {
		max = 1
	}
	return &Matcher{max: max, expiry: expiry, pending: make(map[Key]uint64, min(max, 4096)),
		counts: map[MatchResult]uint64{}, report: report}
}

func (m *Matcher) count(r MatchResult) {
	m.counts[r]++
	if m.report != nil {
		m.report(r)
	}
}

// Query records a query seen at ts. A repeated query (same key: a
// retransmission) keeps the first one's time, as the client waits from it.
func (m *Matcher) Query(k Key, ts uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(ts)
	if _, ok := m.pending[k]; ok {
		return
	}
	for len(m.pending) >= m.max && m.head < len(m.order) {
		q := m.order[m.head]
		m.head++
		if t, ok := m.pending[q.k]; ok && t == q.ts {
			delete(m.pending, q.k)
			m.count(Evicted)
		}
	}
	m.pending[k] = ts
	m.order = append(m.order, queued{k, ts})
	m.compact()
}

// Response looks up the query of a response seen at ts (k as the query's:
// client and server, not the packet's source and destination) and returns
// the time between the two.
func (m *Matcher) Response(k Key, ts uint64) (latency uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(ts)
	q, ok := m.pending[k]
	if !ok || q > ts {
		m.count(Unmatched)
		return 0, false
	}
	delete(m.pending, k)
	m.count(Matched)
	return ts - q, true
}

// expire drops queries older than the expiry at now.
func (m *Matcher) expire(now uint64) {
	for m.head < len(m.order) {
		q := m.order[m.head]
		if now < q.ts || now-q.ts < m.expiry {
			break
		}
		m.head++
		if t, ok := m.pending[q.k]; ok && t == q.ts {
			delete(m.pending, q.k)
			m.count(Expired)
		}
	}
}

// compact drops the consumed head of the queue and, when answered queries
// make up most of it, the stale entries, so the queue stays within a
// small multiple of the table.
func (m *Matcher) compact() {
	if m.head > 0 && m.head >= len(m.order)/2 {
		n := copy(m.order, m.order[m.head:])
		clear(m.order[n:])
		m.order = m.order[:n]
		m.head = 0
	}
	if len(m.order) > 2*m.max+64 {
		live := m.order[:0]
		for _, q := range m.order[m.head:] {
			if t, ok := m.pending[q.k]; ok && t == q.ts {
				live = append(live, q)
			}
		}
		clear(m.order[len(live):])
		m.order = live
		m.head = 0
	}
}

// Len is the number of queries waiting for a response.
func (m *Matcher) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending)
}

// Counts returns how often each result happened so far.
func (m *Matcher) Counts() map[MatchResult]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[MatchResult]uint64, len(m.counts))
	for k, v := range m.counts {
		out[k] = v
	}
	return out
}
