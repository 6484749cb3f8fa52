package policy

import (
	"net/netip"
	"sync"
)

type cacheKey struct {
	src, dst     int32 // pod indices, -1 when the end is not a pod
	srcIP, dstIP netip.Addr
	port         uint16
	proto        Protocol
}

const cacheShards = 16

// verdictCache is a sharded map bounded in entries: a full shard is cleared
// rather than tracked per entry, since the working set of a cluster's
// connections is small and refills in microseconds.
type verdictCache struct {
	max    int
	shards [cacheShards]struct {
		mu sync.RWMutex
		// pods holds pod-to-pod verdicts under a packed integer key (the
		// common case, and the fast map path); m everything else.
		pods map[uint64]*Verdict
		m    map[cacheKey]*Verdict
		_    [32]byte // keep shards on separate cache lines
	}
}

// packed returns the integer key of a pod-to-pod connection, ok=false when
// an end is not a pod or the indices do not fit 23 bits.
func (k *cacheKey) packed() (uint64, bool) {
	if k.src < 0 || k.dst < 0 || k.src >= 1<<23 || k.dst >= 1<<23 {
		return 0, false
	}
	return uint64(k.src)<<41 | uint64(k.dst)<<18 | uint64(k.port)<<2 | uint64(k.proto&3), true
}

func newVerdictCache(size int) *verdictCache {
	c := &verdictCache{max: size/cacheShards + 1}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]*Verdict)
		c.shards[i].pods = make(map[uint64]*Verdict)
	}
	return c
}

func (c *verdictCache) shard(k *cacheKey) int {
	return int((uint32(k.src)*16777619 ^ uint32(k.dst)*2654435761 ^ uint32(k.port)) % cacheShards)
}

func (c *verdictCache) get(k cacheKey) *Verdict {
	s := &c.shards[c.shard(&k)]
	var v *Verdict
	if p, ok := k.packed(); ok {
		s.mu.RLock()
		v = s.pods[p]
		s.mu.RUnlock()
		return v
	}
	s.mu.RLock()
	v = s.m[k]
	s.mu.RUnlock()
	return v
}

func (c *verdictCache) put(k cacheKey, v *Verdict) {
	s := &c.shards[c.shard(&k)]
	s.mu.Lock()
	if len(s.m)+len(s.pods) >= c.max {
		s.m = make(map[cacheKey]*Verdict)
		s.pods = make(map[uint64]*Verdict)
	}
	if p, ok := k.packed(); ok {
		s.pods[p] = v
	} else {
		s.m[k] = v
	}
	s.mu.Unlock()
}
