package ingest

// ackedWindow returns the acked-sequence window of a node's boot, keeping
// the windows of the last few boots per node. Call with s.mu held.
func (s *Server) ackedWindow(node, boot string) *window {
	k := node + "/" + boot
	w := s.acked[k]
	if w == nil {
		w = &window{above: map[uint64]struct{}{}}
		s.acked[k] = w
		boots := append(s.bootsOf[node], k)
		if len(boots) > 4 {
			delete(s.acked, boots[0])
			boots = boots[1:]
		}
		s.bootsOf[node] = boots
	}
	return w
}

// window holds the acknowledged sequences of one boot: all up to through,
// plus those above it (out of order or after a gap).
type window struct {
	through uint64
	above   map[uint64]struct{}
}

// maxAbove bounds a window. Agents keep at most a few dozen batches in
// flight, so a gap older than this many acks is a batch the agent dropped
// and will never resend.
const maxAbove = 4096

func (w *window) has(seq uint64) bool {
	if seq <= w.through {
		return true
	}
	_, ok := w.above[seq]
	return ok
}

func (w *window) add(seq uint64) {
	if seq <= w.through {
		return
	}
	w.above[seq] = struct{}{}
	for {
		if _, ok := w.above[w.through+1]; !ok {
			break
		}
		delete(w.above, w.through+1)
		w.through++
	}
	if len(w.above) > maxAbove {
		lo := ^uint64(0)
		for q := range w.above {
			lo = min(lo, q)
		}
		w.through = lo - 1
		w.add(lo) // advance through the now-contiguous run
	}
}
