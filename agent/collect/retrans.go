package collect

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/bpf"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// Retransmits (agent/bpf/tcp_retrans.c, docs/tcp-health.md). The kernel
// programs write each event into a per-CPU ring row instead of the flow
// entry; here the rows are read, and each socket is counted from its own
// total_retrans with the rules the program used to apply in the entry:
//
//   - a socket is counted from where the agent first met it: 0 when its
//     flow's entry began with its SYN and nothing was counted for the flow
//     before (the agent saw it all), its total when it was accepted (the
//     listener's SYN-ACKs sent again were counted one by one), otherwise
//     its total before the event at hand;
//   - every later event adds what the socket's total gained since.
//
// Counting from the total makes the order of events irrelevant (the rows of
// different CPUs are read one after the other) and lets a socket's next
// event bring back one that was lost: the kernel here now and then fires the
// tracepoints without running their programs, and a row overrun overwrites
// events before they are read. Only a socket whose every later event is lost
// too is left short, and never counted above its total.

// retransSlots is the slots of one ring row (RETRANS_SLOTS in the C file).
var retransSlots = uint64(len(bpf.TcpRetransRetransRing{}.Slots))

// maxSocketsPerFlow bounds the sockets remembered per flow entry: more than
// one only when a tuple is reused while its entry lives.
const maxSocketsPerFlow = 16

// retransFlow is what a flow entry's retransmits are counted from.
type retransFlow struct {
	total    uint32 // segments counted for the flow
	synStart bool   // the entry began with the client's SYN
	sockets  map[uint64]*retransSock
}

// retransSock counts one socket (by its identity, see sock_id in retrans.h): max - start segments, of
// which counted are in the flow's total already.
type retransSock struct {
	start, max, counted uint32
}

// retransRow is the reader's state of one ring row. A row is copied while
// the kernel may write it, so a slot of copy k is trusted only when the
// head read in copy k-1 shows its event complete before copy k began, and
// the head read in copy k+1 shows that no event overwrote it before copy k
// ended: events are applied one read after the copy that holds them.
type retransRow struct {
	prev     bpf.TcpRetransRetransRing // copy k
	havePrev bool
	prevHead uint64 // head of copy k-1: events below it are complete in copy k
	next     uint64 // the first event not yet applied or counted lost
}

type retransState struct {
	rows          []retransRow
	flows         map[bpf.FlowFlowKey]*retransFlow
	applied, lost uint64 // events, since the start
	noFlow        uint64 // events of a socket whose flow has no entry
	torn          uint64 // row copies skipped: their heads went backwards
	reportedLost  uint64 // lost events already published
	readErrLogged bool
	cur           bpf.TcpRetransRetransRing // scratch copy
}

func (c *Collector) initRetrans() {
	c.retrans.flows = map[bpf.FlowFlowKey]*retransFlow{}
	c.m.LostEvents.WithLabelValues(causeRetransOverrun)
	if c.dp.Retrans != nil {
		c.retrans.rows = make([]retransRow, c.dp.Retrans.RetransRings.MaxEntries())
	}
}

// causeRetransOverrun labels retransmit events overwritten in their ring row
// before the agent read them.
const causeRetransOverrun = "retransmit_ring_overrun"

// readRetrans reads every ring row once and applies the events its earlier
// reads proved whole. Callers hold c.mu.
func (c *Collector) readRetrans() {
	if c.dp.Retrans == nil {
		return
	}
	r := &c.retrans
	for i := range r.rows {
		row := &r.rows[i]
		if err := c.dp.Retrans.RetransRings.Lookup(uint32(i), &r.cur); err != nil {
			if !r.readErrLogged {
				c.cfg.Log.Warn("read retransmit ring", "row", i, "err", err)
				r.readErrLogged = true
			}
			continue
		}
		if row.havePrev {
			c.applyRow(row, r.cur.Head)
		}
		row.prev, row.havePrev = r.cur, true
	}
}

// applyRow applies the events of row.prev below row.prevHead; head is the
// head of the copy read after it. Event n sits in slot n % retransSlots
// until event n + retransSlots starts, which cannot happen before the head
// reaches n + retransSlots.
//
// The rules trust each copy's 8-byte head to be read whole (the kernel
// copies an aligned word in one access on x86-64 and arm64). Heads only
// grow, so a copy whose head is below the copy's before it shows that one
// of the two was read torn: then nothing is applied from this copy, and
// the events wait for the next reads (counted lost, if overwritten by
// then), rather than trusting a head that may be too high.
func (c *Collector) applyRow(row *retransRow, head uint64) {
	if row.prev.Head < row.prevHead || head < row.prev.Head {
		c.retrans.torn++
		row.prevHead = min(row.prevHead, row.prev.Head, head)
		return
	}
	for n := row.next; n < row.prevHead; n++ {
		if n+retransSlots <= head {
			c.retrans.lost++
			continue
		}
		c.applyRetrans(&row.prev.Slots[n%retransSlots])
		c.retrans.applied++
	}
	row.next = max(row.next, row.prevHead)
	row.prevHead = row.prev.Head
}

// flushRetrans reads the rows until every event written before the call is
// applied (three reads: see retransRow).
func (c *Collector) flushRetrans() {
	for i := 0; i < 3; i++ {
		c.readRetrans()
	}
}

// applyRetrans counts one event into its flow.
func (c *Collector) applyRetrans(s *bpf.TcpRetransRetransSlot) {
	k := bpf.FlowFlowKey{Tuple: bpf.FlowFlowTuple(s.Tuple)}
	f := c.retrans.flows[k]
	if f == nil {
		var v bpf.FlowFlowAgg
		if err := c.dp.Flow.Flows.Lookup(k, &v); err != nil {
			// An interface the agent does not watch, or an evicted entry.
			c.retrans.noFlow++
			return
		}
		f = &retransFlow{
			synStart: uint16(v.FirstTcpFlags)&(l4.SYN|l4.ACK) == l4.SYN,
			sockets:  map[uint64]*retransSock{},
		}
		c.retrans.flows[k] = f
	}
	switch bpf.TcpRetransRetransKind(s.Kind) {
	case bpf.TcpRetransRetransKindRETRANS_SYNACK:
		f.total++
		return
	case bpf.TcpRetransRetransKindRETRANS_EVENT, bpf.TcpRetransRetransKindRETRANS_STATE, bpf.TcpRetransRetransKindRETRANS_ACCEPTED:
	default:
		return
	}
	from := s.Total - min(uint32(s.Segs), s.Total) // the total before this event
	if bpf.TcpRetransRetransKind(s.Kind) == bpf.TcpRetransRetransKindRETRANS_ACCEPTED {
		from = s.Total
	}
	sk := f.sockets[s.Sock]
	switch {
	case sk == nil:
		if f.synStart && f.total == 0 && bpf.TcpRetransRetransKind(s.Kind) != bpf.TcpRetransRetransKindRETRANS_ACCEPTED {
			from = 0 // the client's entry began with its SYN: the agent saw it all
		}
		if len(f.sockets) >= maxSocketsPerFlow {
			for id := range f.sockets {
				delete(f.sockets, id) // an earlier connection on the tuple: done
				break
			}
		}
		sk = &retransSock{start: from, max: s.Total}
		f.sockets[s.Sock] = sk
	default:
		// An event read before one that happened earlier (another CPU's
		// row) may lower the start: never below what the socket counted.
		sk.start = min(sk.start, from)
		sk.max = max(sk.max, s.Total)
	}
	if n := sk.max - min(sk.start, sk.max); n > sk.counted {
		f.total += n - sk.counted
		sk.counted = n
	}
}

// retransmits is the segments counted for a flow entry so far.
func (c *Collector) retransmits(k bpf.FlowFlowKey) uint32 {
	if f := c.retrans.flows[k]; f != nil {
		return f.total
	}
	return 0
}

// forgetRetrans drops an evicted entry's count: a new entry of the tuple
// starts afresh, as its flow's records do.
func (c *Collector) forgetRetrans(k bpf.FlowFlowKey) {
	delete(c.retrans.flows, k)
}

// publishRetransLost publishes the events overwritten before they were read
// since the last call, as a lost-events record and the lost-events metric.
func (c *Collector) publishRetransLost() {
	d := c.retrans.lost - c.retrans.reportedLost
	if d == 0 {
		return
	}
	c.retrans.reportedLost = c.retrans.lost
	c.publishLost(flowv1.LostEventSource_RINGBUF_RESERVE_FAILED, causeRetransOverrun, d, timestamppb.Now(),
		fmt.Sprintf("tcp_retrans program: %d retransmit events overwritten in their ring before the agent read them "+
			"(each socket's next event brings its count back; records carry no segment that was not seen)", d))
}

// retransReadInterval is how often the rings are read: a row overruns when
// its CPU writes more than its 64 slots in about two intervals.
const retransReadInterval = 50 * time.Millisecond
