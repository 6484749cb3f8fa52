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
		m  map[cacheKey]*Verdict
		_  [40]byte // keep shards on separate cache lines
	}
}

func newVerdictCache(size int) *verdictCache {
	c := &verdictCache{max: size/cacheShards + 1}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]*Verdict)
	}
	return c
}

func (c *verdictCache) shard(k *cacheKey) int {
	return int((uint32(k.src)*16777619 ^ uint32(k.dst)*2654435761 ^ uint32(k.port)) % cacheShards)
}

func (c *verdictCache) get(k cacheKey) *Verdict {
	s := &c.shards[c.shard(&k)]
	s.mu.RLock()
	v := s.m[k]
	s.mu.RUnlock()
	return v
}

func (c *verdictCache) put(k cacheKey, v *Verdict) {
	s := &c.shards[c.shard(&k)]
	s.mu.Lock()
	if len(s.m) >= c.max {
		s.m = make(map[cacheKey]*Verdict)
	}
	s.m[k] = v
	s.mu.Unlock()
}
