package observe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/trawl-dev/trawl/cli/jsonl"
	"github.com/trawl-dev/trawl/internal/filter"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// maxLine bounds one JSON line; longer lines are reported and skipped.
const maxLine = 16 << 20

// maxWarnings bounds the per-line warnings; the rest are counted.
const maxWarnings = 10

// ReadInput replays JSON lines from r through the request's selection
// (since/until, first/last/all) and the compiled filter, calling emit for
// each selected record in file order. Lines may be Trawl's envelope or
// Hubble's `hubble observe -o jsonpb` output; fields Trawl does not know are
// ignored. Lines that cannot be read are reported on warn and counted.
func ReadInput(ctx context.Context, r io.Reader, req *observerv1.GetFlowsRequest, flt *filter.Filter, emit func(*observerv1.GetFlowsResponse) error, warn io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), maxLine)
	dec := Decoder{}
	n := req.GetNumber()
	first := req.GetFirst() && n != 0 && n != math.MaxUint64
	var ring []*observerv1.GetFlowsResponse // --last: the newest n selected records
	last := !req.GetFirst() && n != 0 && n != math.MaxUint64
	if last && n > 10_000_000 {
		return fmt.Errorf("--last %d is too large for --input-file (at most 10000000)", n)
	}
	var since, until int64
	hasSince, hasUntil := req.GetSince() != nil, req.GetUntil() != nil
	if hasSince {
		since = req.GetSince().AsTime().UnixNano()
	}
	if hasUntil {
		until = req.GetUntil().AsTime().UnixNano()
	}
	var emitted, bad, lineNo uint64
	head := 0
	for sc.Scan() {
		lineNo++
		if lineNo&1023 == 0 && ctx.Err() != nil {
			return nil
		}
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		res, err := dec.Decode(line)
		if err != nil {
			bad++
			if bad <= maxWarnings {
				fmt.Fprintf(warn, "trawl: --input-file line %d skipped: %v\n", lineNo, err)
			}
			continue
		}
		if hasSince || hasUntil {
			t := recordTime(res)
			if hasSince && t < since || hasUntil && t > until {
				continue
			}
		}
		if !flt.Match(res) {
			continue
		}
		switch {
		case last:
			if uint64(len(ring)) < n {
				ring = append(ring, res)
			} else {
				ring[head] = res
				head = (head + 1) % len(ring)
			}
		default:
			if err := emit(res); err != nil {
				return err
			}
			emitted++
			if first && emitted >= n {
				return finish(warn, bad)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("--input-file line %d: %w", lineNo+1, err)
	}
	for i := range ring {
		if err := emit(ring[(head+i)%len(ring)]); err != nil {
			return err
		}
	}
	return finish(warn, bad)
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

// Decoder reads one JSON line of either dialect into a GetFlowsResponse.
type Decoder struct{}

// Hubble's monitor event types, the numbers in flow.event_type.type.
const (
	hubbleDrop          = 1
	hubbleTrace         = 4
	hubblePolicyVerdict = 5
	hubbleTraceSock     = 7
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
func (Decoder) Decode(line []byte) (*observerv1.GetFlowsResponse, error) {
	d, err := jsonl.Unmarshal(line)
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
