// Package output formats GetFlows records for `trawl observe`: compact (one
// line per record in Hubble's layout), json/jsonpb (the pinned JSON envelope,
// one object per line), dict (KEY: value blocks) and table (aligned columns).
package output

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/cli/jsonl"
	"github.com/trawl-dev/trawl/internal/dnscodes"
	"github.com/trawl-dev/trawl/internal/filter"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Format names accepted by -o.
const (
	Compact = "compact"
	JSON    = "json"
	JSONPB  = "jsonpb"
	Dict    = "dict"
	Table   = "table"
)

// Formats lists the -o values.
var Formats = []string{Compact, Dict, JSON, JSONPB, Table}

// Options say how records are printed.
type Options struct {
	Format string
	// TimeLayout formats times (see timeparse.Layout); times print in UTC.
	TimeLayout    string
	NodeName      bool
	PolicyNames   bool
	Color         bool
	Numeric       bool
	IPTranslation bool
}

// Printer writes records to out; node-status records of the human formats go
// to errOut, as Hubble does, so that stdout stays a clean list of flows.
// Call Flush when done (and after each record when following).
type Printer struct {
	opts   Options
	col    palette
	out    *bufio.Writer
	errOut io.Writer
	tw     *tabwriter.Writer
	buf    []byte
	n      int
}

// New checks the options and returns a printer.
func New(out, errOut io.Writer, o Options) (*Printer, error) {
	switch o.Format {
	case "":
		o.Format = Compact
	case Compact, JSON, JSONPB, Dict:
	case "tab", Table:
		o.Format = Table
	default:
		return nil, fmt.Errorf("invalid output format %q: want one of %s", o.Format, strings.Join(Formats, ", "))
	}
	if o.TimeLayout == "" {
		o.TimeLayout = time.StampMilli
	}
	if o.Numeric {
		o.IPTranslation = false
	}
	p := &Printer{
		opts:   o,
		out:    bufio.NewWriterSize(out, 64<<10),
		errOut: errOut,
		buf:    make([]byte, 0, 512),
	}
	if o.Format == Table {
		// tabwriter cannot measure colour sequences
		p.tw = tabwriter.NewWriter(p.out, 2, 0, 3, ' ', 0)
	} else if o.Format != JSON && o.Format != JSONPB {
		p.col = newPalette(o.Color)
	}
	return p, nil
}

// Flush writes out what is buffered (for table, the aligned table so far).
func (p *Printer) Flush() error {
	if p.tw != nil {
		if err := p.tw.Flush(); err != nil {
			return err
		}
	}
	return p.out.Flush()
}

// Write prints one record.
func (p *Printer) Write(r *observerv1.GetFlowsResponse) error {
	if p.opts.Format == JSON || p.opts.Format == JSONPB {
		b, err := jsonl.Append(p.buf[:0], r)
		if err != nil {
			return fmt.Errorf("encode record: %w", err)
		}
		p.buf = append(b, '\n')
		p.n++
		_, err = p.out.Write(p.buf)
		return err
	}
	var err error
	switch {
	case r.GetFlow() != nil:
		err = p.writeFlow(r)
	case r.GetLostEvents() != nil:
		err = p.writeLost(r)
	case r.GetConntrack() != nil:
		err = p.writeConntrack(r)
	case r.GetNodeStatus() != nil:
		err = p.writeNodeStatus(r)
	default:
		return nil
	}
	p.n++
	return err
}

func (p *Printer) appendTime(b []byte, ts *timestamppb.Timestamp) []byte {
	if ts == nil || !ts.IsValid() {
		return append(b, "N/A"...)
	}
	return ts.AsTime().AppendFormat(b, p.opts.TimeLayout)
}

func recordTime(r *observerv1.GetFlowsResponse, own *timestamppb.Timestamp) *timestamppb.Timestamp {
	if own != nil {
		return own
	}
	return r.GetTime()
}

func nodeOf(r *observerv1.GetFlowsResponse, own string) string {
	if own != "" {
		return own
	}
	return r.GetNodeName()
}

// endpoints returns the two ends formatted, the arrow, and whether they were
// swapped: in the compact line a reply is shown from the initiator's side
// with "<-", as Hubble; dict and table show the record's own ends.
// Records that do not say whether they are replies are shown as seen, "->".
func (p *Printer) endpoints(f *flowv1.Flow, swapReplies bool) (src, dst []byte, arrow string) {
	sp, dp := ports(f)
	src = p.appendHost(nil, f.GetIP().GetSource(), sp, f.GetSource(), f.GetSourceService(), f.GetSourceNames())
	src = p.appendIdentity(src, f.GetSource())
	dst = p.appendHost(nil, f.GetIP().GetDestination(), dp, f.GetDestination(), f.GetDestinationService(), f.GetDestinationNames())
	dst = p.appendIdentity(dst, f.GetDestination())
	if swapReplies && f.GetIsReply().GetValue() {
		return dst, src, "<-"
	}
	return src, dst, "->"
}

// compactFlow appends the compact line of a flow record.
func (p *Printer) compactFlow(b []byte, r *observerv1.GetFlowsResponse) []byte {
	f := r.GetFlow()
	b = p.appendTime(b, recordTime(r, f.GetTime()))
	if p.opts.NodeName {
		b = append(b, " ["...)
		b = append(b, nodeOf(r, f.GetNodeName())...)
		b = append(b, ']')
	}
	b = append(b, ": "...)
	src, dst, arrow := p.endpoints(f, true)
	b = append(b, src...)
	b = append(b, ' ')
	b = append(b, arrow...)
	b = append(b, ' ')
	b = append(b, dst...)
	b = append(b, ' ')
	b = appendType(b, f)
	b = append(b, ' ')
	b = p.appendVerdict(b, f)
	b = append(b, " ("...)
	b = appendSummary(b, f)
	b = append(b, ')')
	b = appendTCPHealth(b, f)
	if f.GetPackets() != 0 || f.GetBytes() != 0 {
		b = append(b, ' ')
		b = appendCounts(b, f)
	}
	return append(b, '\n')
}

func (p *Printer) writeFlow(r *observerv1.GetFlowsResponse) error {
	f := r.GetFlow()
	switch p.opts.Format {
	case Compact:
		p.buf = p.compactFlow(p.buf[:0], r)
		_, err := p.out.Write(p.buf)
		return err
	case Dict:
		src, dst, _ := p.endpoints(f, false)
		var b []byte
		if p.n > 0 {
			b = append(b, dictSeparator...)
		}
		b = dictLine(b, "TIMESTAMP", string(p.appendTime(nil, recordTime(r, f.GetTime()))))
		if p.opts.NodeName {
			b = dictLine(b, "NODE", nodeOf(r, f.GetNodeName()))
		}
		b = dictLine(b, "SOURCE", string(src))
		b = dictLine(b, "DESTINATION", string(dst))
		b = dictLine(b, "TYPE", typeName(f))
		b = dictLine(b, "VERDICT", string(p.appendVerdict(nil, f)))
		if d := dropReason(f); d != "" {
			b = dictLine(b, "DROP REASON", d)
		}
		b = dictLine(b, "SUMMARY", string(appendSummary(nil, f)))
		b = dictDNS(b, f)
		b = dictTCP(b, f)
		if n := f.GetSourceNames(); len(n) > 0 {
			b = dictLine(b, "SRC NAMES", strings.Join(n, ", "))
		}
		if n := f.GetDestinationNames(); len(n) > 0 {
			b = dictLine(b, "DST NAMES", strings.Join(n, ", "))
		}
		if f.GetPackets() != 0 || f.GetBytes() != 0 {
			b = dictLine(b, "PACKETS", strconv.FormatUint(f.GetPackets(), 10))
			b = dictLine(b, "BYTES", strconv.FormatUint(f.GetBytes(), 10))
		}
		if pol := policyText(f); pol != "" {
			b = dictLine(b, "POLICIES", pol)
		}
		_, err := p.out.Write(b)
		return err
	case Table:
		if p.n == 0 {
			p.tableHeader()
		}
		src, dst, _ := p.endpoints(f, false)
		b := p.appendTime(nil, recordTime(r, f.GetTime()))
		b = append(b, '\t')
		if p.opts.NodeName {
			b = append(b, nodeOf(r, f.GetNodeName())...)
			b = append(b, '\t')
		}
		b = append(b, src...)
		b = append(b, '\t')
		b = append(b, dst...)
		b = append(b, '\t')
		b = appendType(b, f)
		b = append(b, '\t')
		b = p.appendVerdict(b, f)
		b = append(b, '\t')
		b = appendSummary(b, f)
		b = appendTCPHealth(b, f)
		b = append(b, '\t')
		b = appendCounts(b, f)
		b = append(b, '\n')
		_, err := p.tw.Write(b)
		return err
	}
	return nil
}

const dictSeparator = "------------\n"

// dictDNS writes a DNS record's fields, one per line: the query and its
// types, the response code, the answer's addresses, CNAMEs, record types
// and TTL, and the latency when the response was matched to its query.
func dictDNS(b []byte, f *flowv1.Flow) []byte {
	d := f.GetL7().GetDns()
	if d == nil {
		return b
	}
	q := d.GetQuery()
	if t := d.GetQtypes(); len(t) > 0 {
		q += " " + strings.Join(t, ",")
	}
	b = dictLine(b, "DNS QUERY", q)
	if f.GetL7().GetType() != flowv1.L7FlowType_RESPONSE {
		return b
	}
	rc := d.GetRcode()
	b = dictLine(b, "DNS RCODE", dnscodes.RcodeName(rc)+" ("+dnscodes.HubbleRcode(rc)+")")
	if ips := d.GetIps(); len(ips) > 0 {
		b = dictLine(b, "DNS IPS", strings.Join(ips, ", "))
	}
	if cn := d.GetCnames(); len(cn) > 0 {
		b = dictLine(b, "DNS CNAMES", strings.Join(cn, ", "))
	}
	if rr := d.GetRrtypes(); len(rr) > 0 {
		b = dictLine(b, "DNS RRTYPES", strings.Join(rr, ","))
	}
	b = dictLine(b, "DNS TTL", strconv.FormatUint(uint64(d.GetTtl()), 10)+"s")
	if ns := f.GetL7().GetLatencyNs(); ns > 0 {
		b = dictLine(b, "LATENCY", string(appendLatency(nil, time.Duration(ns))))
	}
	return b
}

// dictTCP writes a record's TCP health, one field per line: how long a
// connection attempt that timed out waited, the handshake RTT with its two
// halves, retransmits, the side that reset, zero-window advertisements.
func dictTCP(b []byte, f *flowv1.Flow) []byte {
	if f.GetEventKind() == flowv1.EventKind_CONNECT_TIMEOUT {
		v := "no answer"
		if d := waited(f); d > 0 {
			v += " in " + Latency(d)
		}
		b = dictLine(b, "TIMEOUT", v)
	}
	h := f.GetTcpHealth()
	if h == nil {
		return b
	}
	if rtt := filter.HandshakeRTT(h); rtt > 0 {
		half := func(d time.Duration) string {
			if d <= 0 {
				return "-"
			}
			return RTT(d)
		}
		b = dictLine(b, "RTT", RTT(rtt)+" (SYN to SYN-ACK "+half(h.GetHandshakeSynAck().AsDuration())+
			", SYN-ACK to ACK "+half(h.GetHandshakeAck().AsDuration())+")")
	}
	if r := h.GetRetransmits(); r > 0 {
		b = dictLine(b, "RETRANSMITS", strconv.FormatUint(uint64(r), 10))
	}
	if side := h.GetResetBy(); filter.IsReset(side) {
		b = dictLine(b, "RESET BY", sideName(side))
	}
	if z := h.GetZeroWindows(); z > 0 {
		b = dictLine(b, "ZERO WINDOW", strconv.FormatUint(uint64(z), 10))
	}
	return b
}

// dictLine writes "KEY: value" with keys right-aligned to the longest key.
func dictLine(b []byte, key, val string) []byte {
	for i := len(key); i < len("DESTINATION"); i++ {
		b = append(b, ' ')
	}
	b = append(b, key...)
	b = append(b, ": "...)
	b = append(b, val...)
	return append(b, '\n')
}

func (p *Printer) tableHeader() {
	h := "TIMESTAMP\t"
	if p.opts.NodeName {
		h += "NODE\t"
	}
	h += "SOURCE\tDESTINATION\tTYPE\tVERDICT\tSUMMARY\tCOUNTS\n"
	_, _ = p.tw.Write([]byte(h))
}

// dropReason shows the reason and, when the policies explained a kernel
// drop, the kernel's own reason too, then the drop class.
func dropReason(f *flowv1.Flow) string {
	desc, kern, class := f.GetDropReasonDesc(), f.GetDropReasonKernel(), f.GetDropClass()
	var s string
	switch {
	case desc == "" && kern == "":
		if class != "" {
			return "class " + class
		}
		return ""
	case desc == "":
		s = kern
	case kern == "" || kern == desc:
		s = desc
	default:
		s = desc + " (kernel: " + kern + ")"
	}
	if class != "" {
		s += ", class " + class
	}
	return s
}

func policyText(f *flowv1.Flow) string {
	var parts []string
	add := func(label string, ps []*flowv1.Policy) {
		if len(ps) == 0 {
			return
		}
		names := make([]string, 0, len(ps))
		for _, pol := range ps {
			names = append(names, string(appendPolicyName(nil, pol)))
		}
		parts = append(parts, label+" "+strings.Join(names, ", "))
	}
	add("ingress allowed by", f.GetIngressAllowedBy())
	add("egress allowed by", f.GetEgressAllowedBy())
	add("ingress denied by", f.GetIngressDeniedBy())
	add("egress denied by", f.GetEgressDeniedBy())
	return strings.Join(parts, "; ")
}

func lostSummary(l *flowv1.LostEvent) string {
	s := l.GetSource().String()
	if c := l.GetCpu(); c != nil {
		s += " CPU(" + strconv.Itoa(int(c.GetValue())) + ")"
	}
	s += " " + strconv.FormatUint(l.GetNumEventsLost(), 10)
	if d := l.GetDetail(); d != "" {
		s += " (" + d + ")"
	}
	return s
}

// compactLost appends the compact line of a lost-events record. The node
// is always shown: lost data is only actionable per node.
func (p *Printer) compactLost(b []byte, r *observerv1.GetFlowsResponse) []byte {
	l := r.GetLostEvents()
	node := nodeOf(r, l.GetNodeName())
	b = p.appendTime(b, recordTime(r, l.GetTime()))
	if node != "" {
		b = append(b, " ["...)
		b = append(b, node...)
		b = append(b, ']')
	}
	b = append(b, " EVENTS LOST: "...)
	b = append(b, p.col.red...)
	b = append(b, lostSummary(l)...)
	b = append(b, p.col.reset...)
	return append(b, '\n')
}

func (p *Printer) writeLost(r *observerv1.GetFlowsResponse) error {
	l := r.GetLostEvents()
	return p.writeEvent(r, l.GetNodeName(), l.GetTime(), "EVENTS LOST", lostSummary(l), p.compactLost)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func conntrackSummary(c *flowv1.ConntrackSample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d entries (%.1f%%)", c.GetEntries(), c.GetMax(), 100*utilization(c))
	d := c.GetDeltas()
	fmt.Fprintf(&b, " new %d drop %d early_drop %d insert_failed %d", d.GetNew(), d.GetDrop(), d.GetEarlyDrop(), d.GetInsertFailed())
	if iv := c.GetInterval(); iv != nil {
		fmt.Fprintf(&b, " in %s", iv.AsDuration())
	}
	if t := c.GetTrigger(); t != flowv1.ConntrackTrigger_CONNTRACK_TRIGGER_UNSPECIFIED {
		fmt.Fprintf(&b, " (%s)", t)
	}
	for i, cr := range c.GetTopCreators() {
		if i == 0 {
			b.WriteString(" top:")
		} else {
			b.WriteByte(',')
		}
		b.WriteByte(' ')
		b.WriteString(CreatorName(cr))
		fmt.Fprintf(&b, " %d", cr.GetNewEntries())
	}
	return b.String()
}

// CreatorName is "namespace/pod" when enrichment found the pod, else the address.
func CreatorName(cr *flowv1.ConntrackCreator) string {
	if ep := cr.GetEndpoint(); ep.GetPodName() != "" {
		return ep.GetNamespace() + "/" + ep.GetPodName()
	}
	return cr.GetIp()
}

func utilization(c *flowv1.ConntrackSample) float64 {
	if u := c.GetUtilization(); u > 0 {
		return u
	}
	if c.GetMax() > 0 {
		return float64(c.GetEntries()) / float64(c.GetMax())
	}
	return 0
}

// compactConntrack appends the compact line of a conntrack sample.
func (p *Printer) compactConntrack(b []byte, r *observerv1.GetFlowsResponse) []byte {
	c := r.GetConntrack()
	b = p.appendTime(b, recordTime(r, c.GetTime()))
	b = append(b, " ["...)
	b = append(b, nodeOf(r, c.GetNodeName())...)
	b = append(b, "] CONNTRACK: "...)
	b = append(b, conntrackSummary(c)...)
	return append(b, '\n')
}

func (p *Printer) writeConntrack(r *observerv1.GetFlowsResponse) error {
	c := r.GetConntrack()
	return p.writeEvent(r, c.GetNodeName(), c.GetTime(), "CONNTRACK", conntrackSummary(c), p.compactConntrack)
}

// writeEvent prints a record that is not a flow: its compact line, or a dict
// entry or table row naming its kind with a one-line summary.
func (p *Printer) writeEvent(r *observerv1.GetFlowsResponse, ownNode string, ownTime *timestamppb.Timestamp, kind, summary string,
	compact func([]byte, *observerv1.GetFlowsResponse) []byte) error {
	node := nodeOf(r, ownNode)
	ts := recordTime(r, ownTime)
	switch p.opts.Format {
	case Compact:
		p.buf = compact(p.buf[:0], r)
		_, err := p.out.Write(p.buf)
		return err
	case Dict:
		var b []byte
		if p.n > 0 {
			b = append(b, dictSeparator...)
		}
		b = dictLine(b, "TIMESTAMP", string(p.appendTime(nil, ts)))
		b = dictLine(b, "NODE", orDash(node))
		b = dictLine(b, "TYPE", kind)
		b = dictLine(b, "SUMMARY", summary)
		_, err := p.out.Write(b)
		return err
	case Table:
		if p.n == 0 {
			p.tableHeader()
		}
		b := p.appendTime(nil, ts)
		b = append(b, '\t')
		if p.opts.NodeName {
			b = append(b, orDash(node)...)
			b = append(b, '\t')
		}
		b = append(b, orDash(node)+"\t-\t"+kind+"\t-\t"+summary+"\t\n"...)
		_, err := p.tw.Write(b)
		return err
	}
	return nil
}

// NodeStatusLine describes a node-status record in one line.
func NodeStatusLine(s *flowv1.NodeStatus) string {
	name := s.GetNodeName()
	msg := ""
	if m := s.GetMessage(); m != "" {
		msg = ": " + strconv.Quote(m)
	}
	switch s.GetState() {
	case flowv1.NodeState_NODE_CONNECTED:
		return "Receiving flows from node " + name + msg
	case flowv1.NodeState_NODE_UNAVAILABLE:
		return "Node " + name + " is unavailable" + msg
	case flowv1.NodeState_NODE_GONE:
		return "Node " + name + " is gone" + msg
	case flowv1.NodeState_NODE_ERROR:
		return "Error on node " + name + msg
	}
	return "Node " + name + " in state " + s.GetState().String() + msg
}

func (p *Printer) writeNodeStatus(r *observerv1.GetFlowsResponse) error {
	s := r.GetNodeStatus()
	ts := recordTime(r, nil)
	if ts == nil {
		ts = s.GetLastSeen()
	}
	var b []byte
	if p.opts.Format == Dict {
		if p.n > 0 {
			b = append(b, dictSeparator...)
		}
		b = dictLine(b, "TIMESTAMP", string(p.appendTime(nil, ts)))
		b = dictLine(b, "NODE", orDash(s.GetNodeName()))
		b = dictLine(b, "STATE", s.GetState().String())
		b = dictLine(b, "MESSAGE", orDash(s.GetMessage()))
	} else {
		b = p.appendTime(nil, ts)
		b = append(b, ": "...)
		b = append(b, NodeStatusLine(s)...)
		b = append(b, '\n')
	}
	// Keep the order of stdout and stderr lines readable.
	if err := p.Flush(); err != nil {
		return err
	}
	_, err := p.errOut.Write(b)
	return err
}
