package ingest

import (
	"sync"
	"time"
)

// rateMeter counts flows per second over a sliding minute.
type rateMeter struct {
	mu    sync.Mutex
	secs  [60]uint64
	stamp [60]int64
	all   uint64
}

func (r *rateMeter) add(n int) {
	now := time.Now().Unix()
	r.mu.Lock()
	i := now % 60
	if r.stamp[i] != now {
		r.stamp[i], r.secs[i] = now, 0
	}
	r.secs[i] += uint64(n)
	r.all += uint64(n)
	r.mu.Unlock()
}

func (r *rateMeter) total() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all
}

func (r *rateMeter) perSecond() float64 {
	now := time.Now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	var sum uint64
	for i := range r.secs {
		if now-r.stamp[i] < 60 {
			sum += r.secs[i]
		}
	}
	return float64(sum) / 60
}
