package vtcodec

import "sync"

// Slabs is a bounded pool of slabs for decoding batches, shared by the
// streams of a relay; safe for concurrent use.
//
// A stream takes a slab per batch (Request.Slabs) and puts it back once
// nothing can reach the batch's messages: for the relay, when the batch's
// flows are in the writer's columns and no --follow subscriber was handed
// them. A slab not put back (a subscriber holds its records, the stream
// ended) is left to the garbage collector, as every slab was before.
//
// Bounded twice, so that neither many streams nor a burst of large batches
// pins memory: at most max slabs are kept, and a slab grown beyond
// maxPooledSlabBytes by a large batch is dropped instead of kept.
type Slabs struct {
	mu   sync.Mutex
	free []*Slab // most recently put last: the warmest is taken first
	max  int
}

const (
	// DefaultPooledSlabs is how many slabs a pool keeps by default. A
	// stream holds its slab from its batch's decoding until the writer has
	// it as columns, so the slabs in use at once are about the streams
	// being handled at once (a few per CPU), unless the writer's queue is
	// full, when every stream waits with its batch (then the ones beyond
	// the bound go to the collector when they come back).
	DefaultPooledSlabs = 8
	// maxPooledSlabBytes is the largest slab kept: a default agent batch
	// (1,000 flows) takes about 1.5 MiB.
	maxPooledSlabBytes = 4 << 20
)

// NewSlabs returns an empty pool keeping at most max slabs
// (DefaultPooledSlabs when max <= 0).
func NewSlabs(max int) *Slabs {
	if max <= 0 {
		max = DefaultPooledSlabs
	}
	return &Slabs{max: max}
}

// get takes a slab: the one put last, or a new one.
func (p *Slabs) get() *Slab {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k := len(p.free); k > 0 {
		s := p.free[k-1]
		p.free[k-1] = nil
		p.free = p.free[:k-1]
		return s
	}
	return &Slab{}
}

// Put gives back the slab a batch was decoded into (Request.Slab). The
// caller guarantees that nothing can reach that batch's flows or their
// messages any more: they are cleared here and handed out again. Strings
// taken from them stay valid (see Slab). Put(nil) does nothing.
func (p *Slabs) Put(s *Slab) {
	if s == nil || p.Len() >= p.max {
		return // not worth clearing
	}
	if s.reset() > maxPooledSlabBytes {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < p.max {
		p.free = append(p.free, s)
	}
}

// Len is the number of slabs the pool keeps now.
func (p *Slabs) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}
