package vtcodec

import (
	"cmp"
	"strings"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

// Batches are decoded with their strings taken from a per-stream table
// instead of one fresh allocation each. Why: an agent's records repeat the
// same few hundred strings (namespaces, pod names, labels, workloads, IPs,
// observation points); decoding each one again was about half of the
// decoder's allocations and a third of a decoded flow's bytes, which the
// writer's queue then holds (docs/benchmarks/relay.md, issue 15).
//
// How, and why it is safe: UnmarshalVTUnsafe leaves every string aliasing
// the receive buffer, which gRPC returns to its pool (and reuses) when the
// codec's Unmarshal returns. Before that, own replaces every string field
// of the batch (walked by hand below, field by field) with the table's copy
// or a fresh one, so no string of the decoded batch points into the buffer
// once Unmarshal returns. TestNoDecodedStringAliasesTheReceiveBuffer fills
// every field the schema has, overwrites the buffer after decoding and
// fails on any string the walk missed, including fields added later.

// Strings is one stream's table of decoded strings. It is used by the one
// goroutine that receives on the stream, so it takes no lock. It is bounded
// in entries: when full it starts again empty (strings handed out stay
// valid: they are ordinary heap strings).
type Strings struct {
	m   map[string]string
	max int
	// eps: endpoints by wire form (flat.go), bounded as m.
	eps map[string]*endpointTemplate
}

const (
	// DefaultStringsEntries bounds a stream's table: a node's pods, their
	// labels and workloads, and the peers it talks to fit many times; at
	// most about 64 bytes of strings and 50 of table per entry, so at most
	// ~450 KiB per agent stream.
	DefaultStringsEntries = 4096
	// maxInterned is the longest string kept in the table; longer ones
	// (DNS names, rarely) are copied and not remembered.
	maxInterned = 64
)

// NewStrings returns an empty table of at most maxEntries strings
// (DefaultStringsEntries when <= 0).
func NewStrings(maxEntries int) *Strings {
	if maxEntries <= 0 {
		maxEntries = DefaultStringsEntries
	}
	return &Strings{m: make(map[string]string, min(maxEntries, 256)), max: maxEntries}
}

// Len is the number of strings the table holds.
func (t *Strings) Len() int { return len(t.m) }

// Request is a target for RecvMsg on the ingest stream: the codec decodes
// into Msg, and a batch's strings come from Strings (see above). Hellos and
// heartbeats (rare and small) are decoded as any other message.
type Request struct {
	Msg     *ingestv1.StreamRequest
	Strings *Strings
	// Slabs is optional: the pool a batch's slab is taken from (flat.go);
	// nil, a new slab per batch.
	Slabs *Slabs
	// Slab is set by the codec when the batch's flows were decoded into a
	// slab of Slabs: give it back with Slabs.Put once nothing can reach
	// them, or drop it.
	Slab *Slab
}

// unmarshalRequest decodes data into r. data must stay unchanged until it
// returns; afterwards nothing decoded refers to it.
func unmarshalRequest(r *Request, data []byte) error {
	if v, ok := onlyBatch(data); ok {
		b := &ingestv1.Batch{}
		o := owner{t: r.Strings}
		s := &Slab{}
		if r.Slabs != nil {
			s = r.Slabs.get()
		}
		ok, err := batchFlat(&o, s, b, v)
		if ok && err == nil && o.err == nil {
			r.Msg.Msg = &ingestv1.StreamRequest_Batch{Batch: b}
			if r.Slabs != nil {
				r.Slab = s
			}
			return nil
		}
		if r.Slabs != nil {
			r.Slabs.Put(s) // b is dropped: nothing else saw its flows
		}
		if ok {
			return cmp.Or(err, o.err)
		}
	}
	if err := r.Msg.UnmarshalVTUnsafe(data); err != nil {
		return err
	}
	if b := r.Msg.GetBatch(); b != nil {
		o := owner{t: r.Strings}
		o.batch(b)
		return o.err
	}
	// Not a batch (or a message carrying both, where the last wins): decode
	// again with copied strings rather than walking every other type.
	r.Msg.Reset()
	if err := r.Msg.UnmarshalVT(data); err != nil {
		return err
	}
	return checkUTF8(shapeOf(r.Msg.ProtoReflect().Descriptor()), data)
}

// onlyBatch returns the Batch's bytes of a StreamRequest that is one batch
// field and nothing else (what agents send); anything else is decoded as
// before.
func onlyBatch(data []byte) ([]byte, bool) {
	n, t, m := protowire.ConsumeTag(data)
	if m < 0 || n != 2 || t != protowire.BytesType {
		return nil, false
	}
	v, l := protowire.ConsumeBytes(data[m:])
	if l < 0 || m+l != len(data) {
		return nil, false
	}
	return v, true
}

// owner replaces the strings of a message decoded by UnmarshalVTUnsafe with
// owned ones, checking UTF-8 of each string not already in the table (the
// table holds only checked strings). The first invalid string is kept in
// err; the walk goes on so that nothing is left aliasing the buffer.
type owner struct {
	t   *Strings
	err error
}

// str makes *p owned: the table's copy when short, a fresh one otherwise.
func (o *owner) str(p *string) {
	s := *p
	if s == "" {
		*p = "" // may point into the buffer even when empty
		return
	}
	if len(s) <= maxInterned {
		if c, ok := o.t.m[s]; ok {
			*p = c
			return
		}
	}
	valid := utf8.ValidString(s)
	if !valid && o.err == nil {
		o.err = errInvalidUTF8
	}
	c := strings.Clone(s)
	if valid && len(c) <= maxInterned {
		if len(o.t.m) >= o.t.max {
			clear(o.t.m)
		}
		o.t.m[c] = c
	}
	*p = c
}

// unique makes *p owned without remembering it: for strings that differ
// in every record (flow ids), which would only crowd the table.
func (o *owner) unique(p *string) {
	if *p == "" {
		*p = ""
		return
	}
	if !utf8.ValidString(*p) && o.err == nil {
		o.err = errInvalidUTF8
	}
	*p = strings.Clone(*p)
}

func (o *owner) strs(ss []string) {
	for i := range ss {
		o.str(&ss[i])
	}
}

func (o *owner) batch(b *ingestv1.Batch) {
	o.str(&b.NodeName)
	o.str(&b.BootId)
	for _, f := range b.Flows {
		o.flow(f)
	}
	for _, c := range b.Conntrack {
		o.conntrack(c)
	}
	for _, l := range b.LostEvents {
		if l == nil {
			continue
		}
		o.str(&l.NodeName)
		o.str(&l.Detail)
	}
}

func (o *owner) flow(f *flowv1.Flow) {
	if f == nil {
		return
	}
	o.unique(&f.Uuid)
	o.str(&f.DropReasonDesc)
	if e := f.Ethernet; e != nil {
		o.str(&e.Source)
		o.str(&e.Destination)
	}
	if ip := f.IP; ip != nil {
		o.str(&ip.Source)
		o.str(&ip.Destination)
	}
	o.endpoint(f.Source)
	o.endpoint(f.Destination)
	o.str(&f.NodeName)
	o.strs(f.SourceNames)
	o.strs(f.DestinationNames)
	if d := f.GetL7().GetDns(); d != nil {
		o.str(&d.Query)
		o.strs(d.Ips)
		o.strs(d.Cnames)
		o.str(&d.ObservationSource)
		o.strs(d.Qtypes)
		o.strs(d.Rrtypes)
	}
	o.service(f.SourceService)
	o.service(f.DestinationService)
	if i := f.Interface; i != nil {
		o.str(&i.Name)
	}
	o.policies(f.EgressAllowedBy)
	o.policies(f.IngressAllowedBy)
	o.policies(f.EgressDeniedBy)
	o.policies(f.IngressDeniedBy)
	o.str(&f.DropReasonKernel)
	o.str(&f.ObservationPoint)
	o.str(&f.DropClass)
}

func (o *owner) endpoint(e *flowv1.Endpoint) {
	if e == nil {
		return
	}
	o.str(&e.ClusterName)
	o.str(&e.Namespace)
	o.strs(e.Labels)
	o.str(&e.PodName)
	for _, w := range e.Workloads {
		if w != nil {
			o.str(&w.Name)
			o.str(&w.Kind)
		}
	}
	o.str(&e.NodeName)
}

func (o *owner) service(s *flowv1.Service) {
	if s != nil {
		o.str(&s.Name)
		o.str(&s.Namespace)
	}
}

func (o *owner) policies(ps []*flowv1.Policy) {
	for _, p := range ps {
		if p == nil {
			continue
		}
		o.str(&p.Name)
		o.str(&p.Namespace)
		o.strs(p.Labels)
		o.str(&p.Kind)
	}
}

func (o *owner) conntrack(c *flowv1.ConntrackSample) {
	if c == nil {
		return
	}
	o.str(&c.NodeName)
	for _, tc := range c.TopCreators {
		if tc != nil {
			o.str(&tc.Ip)
			o.endpoint(tc.Endpoint)
		}
	}
}

// bytes is str for a string still in wire form: the table's copy, or a
// checked fresh one (the map lookup with string(v) does not allocate).
func (o *owner) bytes(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if len(v) <= maxInterned {
		if c, ok := o.t.m[string(v)]; ok {
			return c
		}
	}
	s := unsafeString(v)
	o.str(&s)
	return s
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
