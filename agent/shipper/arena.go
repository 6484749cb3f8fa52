package shipper

import (
	"fmt"
	"runtime"
	"syscall"
)

// arena holds the encoded batches of the buffer (Config.BufferBytes) in one
// anonymous mapping, outside the Go heap, faulted in when the shipper is
// made.
//
// Why: batches held on the Go heap made the agent's memory follow the
// relay's health. A full buffer is live heap, and Go lets garbage grow to
// that much again before it collects, so an agent's RSS rose by up to twice
// its buffer during a relay or ClickHouse outage and fell back afterwards
// (docs/benchmarks/relay.md, the soaks). Mapped and touched once, the buffer
// is resident from the start whatever the relay does: the agent's RSS is
// then its budget from the first minute, the figure its pod is sized for,
// and the collector neither scans nor paces on it.
//
// Batches are placed one after the other and wrap at the end; space is
// reclaimed from the oldest batch on, as the buffer drops the oldest first
// and the relay acknowledges in order. A batch acknowledged ahead of an
// older one leaves a hole until the older one goes.
type arena struct {
	mem  []byte
	regs []*region // in the order they were placed: regs[0] is the oldest
}

// region is one batch's bytes, mem[off:off+n].
type region struct {
	off, n int
	held   bool
}

// newArena maps size bytes and faults every page in (MAP_POPULATE). The
// mapping is released when the arena is unreachable.
func newArena(size int) (*arena, error) {
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes: %w", size, err)
	}
	a := &arena{mem: mem}
	// Nothing but the arena hands out slices of mem, and every holder of
	// one (the shipper's entries) also holds the arena.
	runtime.AddCleanup(a, func(m []byte) { _ = syscall.Munmap(m) }, mem)
	return a, nil
}

func (a *arena) size() int { return len(a.mem) }

// alloc places n bytes after the newest batch, or at the start of the
// mapping when they do not fit before its end; nil when there is no room
// until older batches are freed.
func (a *arena) alloc(n int) (*region, []byte) {
	if n <= 0 || n > len(a.mem) {
		return nil, nil
	}
	off := -1
	if len(a.regs) == 0 {
		off = 0
	} else {
		head := a.regs[0].off
		last := a.regs[len(a.regs)-1]
		tail := last.off + last.n
		switch {
		case last.off >= head: // not wrapped: free at the end and before head
			if tail+n <= len(a.mem) {
				off = tail
			} else if n <= head {
				off = 0
			}
		case tail+n <= head: // wrapped: free between the newest and the oldest
			off = tail
		}
	}
	if off < 0 {
		return nil, nil
	}
	r := &region{off: off, n: n, held: true}
	a.regs = append(a.regs, r)
	return r, a.mem[off : off+n : off+n]
}

// free gives r back; its space is reused once every older region is free.
func (a *arena) free(r *region) {
	r.held = false
	i := 0
	for i < len(a.regs) && !a.regs[i].held {
		a.regs[i] = nil
		i++
	}
	n := copy(a.regs, a.regs[i:])
	clear(a.regs[n:])
	a.regs = a.regs[:n]
}
