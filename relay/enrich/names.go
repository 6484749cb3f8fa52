package enrich

import (
	"container/list"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Names is the relay's FQDN cache, Hubble's per-endpoint DNS history done
// centrally: it learns from DNS RESPONSE records which names a client
// resolved to which addresses, and names the flows between that client and
// those addresses (destination_names on the client's flows to them,
// source_names on the way back), as Hubble does. Entries are kept per node
// and client address (a client on another node, or another client, did not
// resolve the name), for the answer's TTL but at least MinTTL, measured in
// record time (so a batch resent later is named as it was first), and at
// most max entries, the least recently used going first. Names are stored
// as Hubble shows them: without the trailing dot.
//
// A CNAME in an answer makes its target an alias of the query for that
// client: a later answer for the target names its addresses with the
// query as well (resolvers that return the chain in one answer need no
// alias: the addresses come with the query's answer).
//
// Safe for concurrent use.
type Names struct {
	mu      sync.Mutex
	max     int
	addrs   map[addrKey]*list.Element // → *nameEntry
	aliases map[aliasKey]*list.Element
	lru     list.List // front: most recently used
}

// MinTTL is the shortest time a learned name is kept (docs/dns.md: "within
// the answer's TTL, at least 60 s").
const MinTTL = 60 * time.Second

// DefaultNameEntries bounds the cache by default: one entry per (node,
// client, address) and per (node, client, alias).
const DefaultNameEntries = 100_000

// maxNamesPerEntry bounds the names one address carries (the newest win).
const maxNamesPerEntry = 8

type addrKey struct {
	node         string
	client, addr netip.Addr
}

type aliasKey struct {
	node   string
	client netip.Addr
	name   string
}

type nameEntry struct {
	addr    *addrKey  // one of addr, alias is set
	alias   *aliasKey //
	names   []string
	expires time.Time
}

// NewNames returns a cache of at most entries entries (DefaultNameEntries
// when entries <= 0).
func NewNames(entries int) *Names {
	if entries <= 0 {
		entries = DefaultNameEntries
	}
	return &Names{max: entries, addrs: map[addrKey]*list.Element{}, aliases: map[aliasKey]*list.Element{}}
}

// Len is the number of entries.
func (n *Names) Len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lru.Len()
}

// Batch learns from the DNS responses of a batch node sent, then names its
// flows (those that carry no names yet). Responses first: a connection
// reported in the same batch as the answer it follows is named too.
func (n *Names) Batch(node string, flows []*flowv1.Flow) {
	if n == nil || len(flows) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, f := range flows {
		if f.GetL7().GetType() == flowv1.L7FlowType_RESPONSE && f.GetL7().GetDns() != nil && f.GetVerdict() != flowv1.Verdict_DROPPED {
			n.learn(node, f)
		}
	}
	if n.lru.Len() == 0 {
		return
	}
	for _, f := range flows {
		n.name(node, f)
	}
}

func trimDot(s string) string { return strings.TrimSuffix(s, ".") }

// learn records a response: the client is its destination.
func (n *Names) learn(node string, f *flowv1.Flow) {
	d := f.GetL7().GetDns()
	query := trimDot(d.GetQuery())
	client, ok := addr(f.GetIP().GetDestination())
	if query == "" || !ok || len(d.GetIps()) == 0 && len(d.GetCnames()) == 0 {
		return
	}
	t := flowTime(f)
	ttl := time.Duration(d.GetTtl()) * time.Second
	expires := t.Add(max(ttl, MinTTL))
	n.expire(t)
	// The query, and the names it is an alias of for this client.
	names := []string{query}
	if e, ok := n.aliases[aliasKey{node, client, query}]; ok {
		if ent := e.Value.(*nameEntry); !t.After(ent.expires) {
			names = append(names, ent.names...)
		}
	}
	for _, ip := range d.GetIps() {
		a, ok := addr(ip)
		if !ok {
			continue
		}
		k := addrKey{node, client, a}
		e, ok := n.addrs[k]
		if !ok {
			e = n.add(&nameEntry{addr: &k})
			n.addrs[k] = e
		}
		n.update(e, names, expires)
	}
	for _, c := range d.GetCnames() {
		c = trimDot(c)
		if c == "" || c == query {
			continue
		}
		k := aliasKey{node, client, c}
		e, ok := n.aliases[k]
		if !ok {
			e = n.add(&nameEntry{alias: &k})
			n.aliases[k] = e
		}
		n.update(e, names, expires)
	}
}

// add inserts an entry as the most recent, evicting the least recent when
// full.
func (n *Names) add(ent *nameEntry) *list.Element {
	for n.lru.Len() >= n.max {
		n.remove(n.lru.Back())
	}
	return n.lru.PushFront(ent)
}

func (n *Names) remove(e *list.Element) {
	ent := n.lru.Remove(e).(*nameEntry)
	if ent.addr != nil {
		delete(n.addrs, *ent.addr)
	} else {
		delete(n.aliases, *ent.alias)
	}
}

// update adds names (newest last, at most maxNamesPerEntry) and extends
// the expiry; it makes the entry the most recent.
func (n *Names) update(e *list.Element, names []string, expires time.Time) {
	ent := e.Value.(*nameEntry)
	for _, nm := range names {
		if i := slices.Index(ent.names, nm); i >= 0 {
			ent.names = slices.Delete(ent.names, i, i+1)
		}
		ent.names = append(ent.names, nm)
	}
	if over := len(ent.names) - maxNamesPerEntry; over > 0 {
		ent.names = slices.Delete(ent.names, 0, over)
	}
	if expires.After(ent.expires) {
		ent.expires = expires
	}
	n.lru.MoveToFront(e)
}

// expire drops a few least recently used entries that expired before t
// (the cache's own clock is the records' time).
func (n *Names) expire(t time.Time) {
	for range 4 {
		e := n.lru.Back()
		if e == nil || !e.Value.(*nameEntry).expires.Before(t) {
			return
		}
		n.remove(e)
	}
}

// name sets destination_names and source_names of f from the entries of
// node: the source as the client for the destination's names, the
// destination as the client for the source's.
func (n *Names) name(node string, f *flowv1.Flow) {
	if f.GetIP() == nil || len(f.DestinationNames) > 0 && len(f.SourceNames) > 0 {
		return
	}
	src, okS := addr(f.IP.Source)
	dst, okD := addr(f.IP.Destination)
	if !okS || !okD {
		return
	}
	t := flowTime(f)
	if len(f.DestinationNames) == 0 {
		f.DestinationNames = n.lookup(addrKey{node, src, dst}, t)
	}
	if len(f.SourceNames) == 0 {
		f.SourceNames = n.lookup(addrKey{node, dst, src}, t)
	}
}

func (n *Names) lookup(k addrKey, t time.Time) []string {
	e, ok := n.addrs[k]
	if !ok {
		return nil
	}
	ent := e.Value.(*nameEntry)
	if t.After(ent.expires) {
		return nil
	}
	n.lru.MoveToFront(e)
	out := slices.Clone(ent.names)
	slices.Sort(out)
	return out
}

func addr(s string) (netip.Addr, bool) {
	if v4, ok := parseIPv4(s); ok {
		return netip.AddrFrom4(be4(v4)), true
	}
	return parseIP(s)
}
