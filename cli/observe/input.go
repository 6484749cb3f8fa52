package observe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"

	"github.com/trawl-dev/trawl/cli/jsonl"
	"github.com/trawl-dev/trawl/internal/filter"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// maxLine bounds one JSON line; longer lines are reported and skipped.
const maxLine = 16 << 20

// maxWarnings bounds the per-line warnings; the rest are counted.
const maxWarnings = 10

// chunkLines is how many lines travel together through the decode workers:
// large enough to amortise the hand-offs, small enough to keep memory low.
const chunkLines = 512

// chunk is a run of input lines and, once decoded, the records they selected.
type chunk struct {
	data    []byte // the lines, newline-separated
	firstNo uint64 // line number of the first line
	out     []*observerv1.GetFlowsResponse
	bad     []string // warnings for lines that could not be read
	nbad    uint64
	done    chan struct{}
}

// ReadInput replays JSON lines from r through the request's selection
// (since/until, first/last/all) and the compiled filter, calling emit for
// each selected record in file order. Lines may be Trawl's envelope or
// Hubble's `hubble observe -o jsonpb` output; fields Trawl does not know are
// ignored. Lines that cannot be read are reported on warn and counted.
//
// Decoding and filtering run on one worker per CPU while the caller's
// goroutine formats; chunks are handed back in file order.
func ReadInput(ctx context.Context, r io.Reader, req *observerv1.GetFlowsRequest, flt *filter.Filter, emit func(*observerv1.GetFlowsResponse) error, warn io.Writer) error {
	n := req.GetNumber()
	first := req.GetFirst() && n != 0 && n != math.MaxUint64
	last := !req.GetFirst() && n != 0 && n != math.MaxUint64
	if last && n > 10_000_000 {
		return fmt.Errorf("--last %d is too large for --input-file (at most 10000000)", n)
	}
	sel := selector{flt: flt}
	if req.GetSince() != nil {
		sel.since, sel.hasSince = req.GetSince().AsTime().UnixNano(), true
	}
	if req.GetUntil() != nil {
		sel.until, sel.hasUntil = req.GetUntil().AsTime().UnixNano(), true
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := max(1, runtime.GOMAXPROCS(0))
	work := make(chan *chunk, workers)
	order := make(chan *chunk, 2*workers)
	var readErr error // written by the reader before it closes order
	// The reader owns work and order and closes both; it stops at the end of
	// the input or, after cancel, at its next line.
	go func() {
		defer close(order)
		defer close(work)
		readErr = readChunks(ctx, r, work, order)
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d Decoder
			for c := range work {
				sel.decodeChunk(&d, c)
			}
		}()
	}
	// Stop the reader first, then wait for the workers it feeds.
	defer func() { cancel(); wg.Wait() }()

	var ring []*observerv1.GetFlowsResponse // --last: the newest n selected records
	head := 0
	var emitted, bad uint64
	for c := range order {
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil
		}
		for _, w := range c.bad {
			if bad < maxWarnings {
				fmt.Fprintln(warn, w)
			}
			bad++
		}
		bad += c.nbad - uint64(len(c.bad))
		for _, res := range c.out {
			if last {
				if uint64(len(ring)) < n {
					ring = append(ring, res)
				} else {
					ring[head] = res
					head = (head + 1) % len(ring)
				}
				continue
			}
			if err := emit(res); err != nil {
				return err
			}
			emitted++
			if first && emitted >= n {
				return finish(warn, bad)
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if readErr != nil {
		return readErr
	}
	for i := range ring {
		if err := emit(ring[(head+i)%len(ring)]); err != nil {
			return err
		}
	}
	return finish(warn, bad)
}

// readChunks cuts r into chunks of lines and hands each to the workers and,
// in the same order, to the consumer.
func readChunks(ctx context.Context, r io.Reader, work, order chan<- *chunk) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), maxLine)
	var lineNo uint64
	size := 64 << 10
	for {
		// Sized like the last chunk, so the lines are copied once.
		c := &chunk{firstNo: lineNo + 1, done: make(chan struct{}), data: make([]byte, 0, size)}
		lines := 0
		for lines < chunkLines && sc.Scan() {
			c.data = append(c.data, sc.Bytes()...)
			c.data = append(c.data, '\n')
			lines++
		}
		lineNo += uint64(lines)
		size = max(size, len(c.data)+len(c.data)/8)
		if lines > 0 {
			select {
			case order <- c:
			case <-ctx.Done():
				return nil
			}
			select {
			case work <- c:
			case <-ctx.Done():
				return nil
			}
		}
		if lines < chunkLines {
			if err := sc.Err(); err != nil {
				return fmt.Errorf("--input-file line %d: %w", lineNo+1, err)
			}
			return nil
		}
	}
}

// selector holds the per-record selection shared by the workers.
type selector struct {
	flt                *filter.Filter
	since, until       int64
	hasSince, hasUntil bool
}

func (s selector) decodeChunk(d *Decoder, c *chunk) {
	defer close(c.done)
	no := c.firstNo
	for data := c.data; len(data) > 0; no++ {
		i := bytes.IndexByte(data, '\n')
		line := data[:i]
		data = data[i+1:]
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		res, err := d.Decode(line)
		if err != nil {
			c.nbad++
			if len(c.bad) < maxWarnings {
				c.bad = append(c.bad, fmt.Sprintf("trawl: --input-file line %d skipped: %v", no, err))
			}
			continue
		}
		if s.hasSince || s.hasUntil {
			t := recordTime(res)
			if s.hasSince && t < s.since || s.hasUntil && t > s.until {
				continue
			}
		}
		if s.flt.Match(res) {
			c.out = append(c.out, res)
		}
	}
}

func finish(warn io.Writer, bad uint64) error {
	if bad > maxWarnings {
		fmt.Fprintf(warn, "trawl: --input-file: %d lines skipped in all\n", bad)
	}
	return nil
}

// recordTime is the time since/until select on: the record's own time,
// else the envelope's.
func recordTime(r *observerv1.GetFlowsResponse) int64 {
	switch {
	case r.GetFlow().GetTime() != nil:
		return r.GetFlow().GetTime().AsTime().UnixNano()
	case r.GetTime() != nil:
		return r.GetTime().AsTime().UnixNano()
	case r.GetLostEvents().GetTime() != nil:
		return r.GetLostEvents().GetTime().AsTime().UnixNano()
	case r.GetConntrack().GetTime() != nil:
		return r.GetConntrack().GetTime().AsTime().UnixNano()
	}
	return 0
}

// Decoder reads JSON lines of either dialect into GetFlowsResponses; one
// per goroutine.
type Decoder struct{ d jsonl.Decoder }

// Hubble's monitor event types, the numbers in flow.event_type.type.
const (
	hubbleDrop          = 1
	hubbleTrace         = 4
	hubblePolicyVerdict = 5
	hubbleTraceSock     = 7
	hubbleL7            = 129 // access log: Cilium's proxy's L7 records (DNS)
)

// hubbleExtras are the Hubble fields that carry meaning Trawl keeps in other
// fields; they are read only from lines that contain them and that the
// fast decoder left to protojson.
type hubbleExtras struct {
	Flow *struct {
		EventType *struct {
			Type int `json:"type"`
		} `json:"event_type"`
	} `json:"flow"`
	NodeStatus *struct {
		StateChange string   `json:"state_change"`
		NodeNames   []string `json:"node_names"`
		Message     string   `json:"message"`
	} `json:"node_status"`
}

// Decode reads one line. Unknown fields and enum names (Hubble's
// policy_match_type, trace_observation_point, Summary, ...) are ignored;
// Hubble's event type becomes Trawl's event kind and Hubble's node-status
// event (several node names, a state change) becomes a NodeStatus.
func (dec *Decoder) Decode(line []byte) (*observerv1.GetFlowsResponse, error) {
	d, err := dec.d.Unmarshal(line)
	if err != nil {
		return nil, err
	}
	res := d.GetFlowsResponse
	hubbleType := d.HubbleEventType
	hubbleFlow := res.GetFlow() != nil && res.GetFlow().GetEventKind() == flowv1.EventKind_EVENT_KIND_UNSPECIFIED &&
		(hubbleType > 0 || hubbleType < 0 && bytes.Contains(line, []byte(`"event_type"`)))
	hubbleNode := res.GetNodeStatus() != nil && bytes.Contains(line, []byte(`"state_change"`))
	if !hubbleFlow && !hubbleNode {
		return res, nil
	}
	var x hubbleExtras
	if hubbleType < 0 || hubbleNode {
		if err := json.Unmarshal(line, &x); err != nil {
			return nil, err
		}
		if x.Flow != nil && x.Flow.EventType != nil {
			hubbleType = x.Flow.EventType.Type
		}
	}
	if hubbleFlow {
		f := res.GetFlow()
		switch hubbleType {
		case hubbleDrop:
			f.EventKind = flowv1.EventKind_DROP
		case hubblePolicyVerdict:
			f.EventKind = flowv1.EventKind_POLICY_VERDICT
		case hubbleTrace, hubbleTraceSock:
			f.EventKind = flowv1.EventKind_AGGREGATE
		case hubbleL7:
			f.EventKind = flowv1.EventKind_L7_EVENT
		}
		// Hubble's drop reasons are Cilium's datapath names, not the kernel's:
		// drop_reason_kernel stays empty rather than guessed.
	}
	if hubbleNode && x.NodeStatus != nil {
		ns := res.GetNodeStatus()
		ns.NodeName = strings.Join(x.NodeStatus.NodeNames, ",")
		ns.Message = x.NodeStatus.Message
		if v, ok := flowv1.NodeState_value[x.NodeStatus.StateChange]; ok {
			ns.State = flowv1.NodeState(v)
		}
	}
	return res, nil
}
