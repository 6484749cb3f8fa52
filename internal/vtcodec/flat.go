package vtcodec

import (
	"errors"
	"math"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

// A batch's flows are decoded by hand into a slab: chunks of Flows, of
// Endpoints, of Timestamps, ... for the whole batch, instead of the
// generated unmarshaller's heap object per message (about 26 per flow).
// Why: at full ingest the relay's decoding and the garbage it leaves were
// about 40 % of its CPU (docs/benchmarks/relay.md, "Third pass: CPU"); a
// batch's flows live and die together (until their insert's columns are
// filled), so memory per kind of message per batch loses nothing, and a
// slab can be recycled for a later batch (Slabs). Strings come from the
// stream's table as before.
//
// The hand decoder reads only what it knows exactly: a flow with a field
// it does not decode (L7 records, unknown fields), a message field given
// twice (which protobuf merges), or anything malformed is decoded on its
// own by the generated unmarshaller, in its place, so the batch is the same
// either way (TestFlatDecodingEqualsTheGeneratedUnmarshaller).

// errNotFlat: the flow needs the generated unmarshaller.
var errNotFlat = errors.New("flow not decoded by the flat decoder")

// Slab hands out zeroed messages for one batch's flows from chunks of
// memory it keeps: a chunk is never grown in place (pointers into it stay
// valid); when one is full the next one is taken, or a new one made.
//
// A slab can be recycled (Slabs): once nothing can reach the batch's
// messages any more, Slabs.Put clears the chunks' used parts and keeps them
// for a later batch, so a batch costs clearing warm memory instead of
// allocating fresh (zeroed, page-faulted, later collected) memory. Why:
// the slabs were more than half of the bytes the relay allocated per flow
// at full ingest (docs/benchmarks/relay.md, "Fifth pass").
//
// A slab holds no string bytes: a Go string is immutable, and consumers
// may keep one (map keys, metric labels, the observer's de-duplication),
// so the uuids decoded per batch go into a buffer of the batch's own
// (ids), left to the garbage collector; every other string comes from the
// stream's table.
type Slab struct {
	flows  pile[flowv1.Flow]
	ts     pile[timestamppb.Timestamp]
	durs   pile[durationpb.Duration]
	eps    pile[flowv1.Endpoint]
	ips    pile[flowv1.IP]
	eths   pile[flowv1.Ethernet]
	l4s    pile[flowv1.Layer4]
	tcps   pile[flowv1.TCP]
	l4tcp  pile[flowv1.Layer4_TCP]
	flags  pile[flowv1.TCPFlags]
	udps   pile[flowv1.UDP]
	l4udp  pile[flowv1.Layer4_UDP]
	sctps  pile[flowv1.SCTP]
	l4sctp pile[flowv1.Layer4_SCTP]
	icmp4  pile[flowv1.ICMPv4]
	l4i4   pile[flowv1.Layer4_ICMPv4]
	icmp6  pile[flowv1.ICMPv6]
	l4i6   pile[flowv1.Layer4_ICMPv6]
	bools  pile[wrapperspb.BoolValue]
	svcs   pile[flowv1.Service]
	ifs    pile[flowv1.NetworkInterface]
	cts    pile[flowv1.ConntrackInfo]
	health pile[flowv1.TCPHealth]
	wls    pile[flowv1.Workload]
	pols   pile[flowv1.Policy]

	// Repeated fields take windows of shared chunks, capped at their
	// length so that an append by a consumer copies instead of writing
	// into the next window.
	strs   pile[string]
	wlPtrs pile[*flowv1.Workload]
	pPtrs  pile[*flowv1.Policy]

	// wire is batchFlat's list of the flows' wire forms (scratch, empty
	// between batches).
	wire [][]byte

	// ids holds the batch's uuids (unique per flow, so not in the table):
	// one allocation per batch instead of one per flow, never recycled.
	ids []byte
}

// reset clears what the batch used and returns the slab's size in bytes.
func (s *Slab) reset() int {
	s.ids = nil
	return s.flows.reset() + s.ts.reset() + s.durs.reset() + s.eps.reset() + s.ips.reset() +
		s.eths.reset() + s.l4s.reset() + s.tcps.reset() + s.l4tcp.reset() + s.flags.reset() +
		s.udps.reset() + s.l4udp.reset() + s.sctps.reset() + s.l4sctp.reset() + s.icmp4.reset() +
		s.l4i4.reset() + s.icmp6.reset() + s.l4i6.reset() + s.bools.reset() + s.svcs.reset() +
		s.ifs.reset() + s.cts.reset() + s.health.reset() + s.wls.reset() + s.pols.reset() +
		s.strs.reset() + s.wlPtrs.reset() + s.pPtrs.reset() +
		cap(s.wire)*int(unsafe.Sizeof([]byte(nil)))
}

// pile is a slab's chunks of one type. A chunk's length is what the
// current batch used of it; beyond its length a chunk is always zero (new,
// or cleared by reset), so the messages it hands out need no clearing.
type pile[T any] struct {
	chunks [][]T
	k      int // the chunk being filled
	total  int // elements in all chunks: the next chunk's size
}

// room returns the chunk being filled with room for need more elements:
// the current one, the next one with room, or a new one.
func (p *pile[T]) room(need int) *[]T {
	for ; p.k < len(p.chunks); p.k++ {
		if c := &p.chunks[p.k]; cap(*c)-len(*c) >= need {
			return c
		}
	}
	// Chunks double (a message kind most flows lack takes a small one)
	// up to maxChunk bytes: small objects for the allocator, which it
	// serves from per-CPU caches; a larger one is taken from the page
	// heap, under its lock.
	var z T
	size := max(need, min(max(p.total, 16), maxChunk/int(unsafe.Sizeof(z))))
	p.chunks = append(p.chunks, make([]T, 0, size))
	p.total += size
	return &p.chunks[p.k]
}

// cur is the chunk being filled, nil before the first.
func (p *pile[T]) cur() *[]T {
	if p.k < len(p.chunks) {
		return &p.chunks[p.k]
	}
	return nil
}

// reset clears the chunks' used parts for the next batch and returns
// their size in bytes.
func (p *pile[T]) reset() int {
	for i := range p.chunks[:min(p.k+1, len(p.chunks))] {
		clear(p.chunks[i])
		p.chunks[i] = p.chunks[i][:0]
	}
	p.k = 0
	var z T
	return p.total * int(unsafe.Sizeof(z))
}

// unique is owner.unique into the batch's ids.
func (d *flatDecoder) unique(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if !utf8.Valid(v) && d.o.err == nil {
		d.o.err = errInvalidUTF8
	}
	if cap(d.s.ids)-len(d.s.ids) < len(v) {
		d.s.ids = make([]byte, 0, max(min(36*d.n, maxChunk), len(v)))
	}
	d.s.ids = append(d.s.ids, v...)
	return unsafeString(d.s.ids[len(d.s.ids)-len(v):])
}

// next hands out a zero T.
func next[T any](p *pile[T]) *T {
	c := p.room(1)
	*c = (*c)[:len(*c)+1]
	return &(*c)[len(*c)-1]
}

// maxChunk bounds a chunk of a slab (see pile.room).
const maxChunk = 32 << 10

// window appends v to the window w (a field's values so far) and returns
// the window with v, capped at its length. Windows live in shared chunks;
// w is moved to the chunk's tail when another window came in between, and
// to the next chunk when the current one is full.
func window[T any](p *pile[T], w []T, v T) []T {
	k := len(w)
	s := p.cur()
	tail := s != nil && (k == 0 || (len(*s) >= k && &(*s)[len(*s)-k] == &w[0]))
	if !tail || len(*s) == cap(*s) {
		s = p.room(k + 1)
		*s = append(*s, w...)
	}
	*s = append(*s, v)
	l := len(*s)
	return (*s)[l-k-1 : l : l]
}

// flatDecoder decodes flows into a batch's slab, strings through the
// stream's table (owner).
type flatDecoder struct {
	o *owner
	s *Slab
	n int // the batch's flows
}

// flow decodes one Flow's bytes into f (zero). On errNotFlat or a parse
// error f is left partly filled: the caller decodes the flow again with the
// generated unmarshaller into a fresh message.
func (d *flatDecoder) flow(f *flowv1.Flow, b []byte) error {
	var seen uint32 // message fields already read: protobuf would merge a repeat
	once := func(bit uint32) error {
		if seen&bit != 0 {
			return errNotFlat
		}
		seen |= bit
		return nil
	}
	return fields(b, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
		if t == protowire.VarintType {
			switch n {
			case 2:
				f.Verdict = flowv1.Verdict(int32(x))
			case 10:
				f.Type = flowv1.FlowType(int32(x))
			case 22:
				f.TrafficDirection = flowv1.TrafficDirection(int32(x))
			case 1000:
				f.EventKind = flowv1.EventKind(int32(x))
			case 1003:
				f.Packets = x
			case 1004:
				f.Bytes = x
			case 1006:
				f.Netns = x
			default:
				return errNotFlat
			}
			return nil
		}
		var err error
		switch n {
		case 1:
			if err = once(1 << 0); err == nil {
				f.Time, err = d.timestamp(v)
			}
		case 1001:
			if err = once(1 << 1); err == nil {
				f.FirstSeen, err = d.timestamp(v)
			}
		case 1002:
			if err = once(1 << 2); err == nil {
				f.LastSeen, err = d.timestamp(v)
			}
		case 34:
			f.Uuid = d.unique(v)
		case 25:
			f.DropReasonDesc = d.o.bytes(v)
		case 11:
			f.NodeName = d.o.bytes(v)
		case 1005:
			f.DropReasonKernel = d.o.bytes(v)
		case 1007:
			f.ObservationPoint = d.o.bytes(v)
		case 1009:
			f.DropClass = d.o.bytes(v)
		case 13:
			f.SourceNames = window(&d.s.strs, f.SourceNames, d.o.bytes(v))
		case 14:
			f.DestinationNames = window(&d.s.strs, f.DestinationNames, d.o.bytes(v))
		case 4:
			if err = once(1 << 3); err == nil {
				e := next(&d.s.eths)
				err = d.strings(v, &e.Source, &e.Destination)
				f.Ethernet = e
			}
		case 5:
			if err = once(1 << 4); err == nil {
				f.IP, err = d.ip(v)
			}
		case 6:
			if err = once(1 << 5); err == nil {
				f.L4, err = d.l4(v)
			}
		case 8:
			if err = once(1 << 6); err == nil {
				f.Source, err = d.endpoint(v)
			}
		case 9:
			if err = once(1 << 7); err == nil {
				f.Destination, err = d.endpoint(v)
			}
		case 190:
			if err = once(1 << 8); err == nil {
				w := next(&d.s.bools)
				err = varints(v, func(n protowire.Number, x uint64) bool {
					w.Value = x != 0
					return n == 1
				})
				f.IsReply = w
			}
		case 20, 21:
			bit := uint32(1 << 9)
			if n == 21 {
				bit = 1 << 10
			}
			if err = once(bit); err == nil {
				s := next(&d.s.svcs)
				err = d.strings(v, &s.Name, &s.Namespace)
				if n == 20 {
					f.SourceService = s
				} else {
					f.DestinationService = s
				}
			}
		case 26:
			if err = once(1 << 11); err == nil {
				i := next(&d.s.ifs)
				err = fields(v, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
					switch {
					case n == 1 && t == protowire.VarintType:
						i.Index = uint32(x)
					case n == 2 && t == protowire.BytesType:
						i.Name = d.o.bytes(v)
					default:
						return errNotFlat
					}
					return nil
				})
				f.Interface = i
			}
		case 21001:
			f.EgressAllowedBy, err = d.policy(f.EgressAllowedBy, v)
		case 21002:
			f.IngressAllowedBy, err = d.policy(f.IngressAllowedBy, v)
		case 21004:
			f.EgressDeniedBy, err = d.policy(f.EgressDeniedBy, v)
		case 21005:
			f.IngressDeniedBy, err = d.policy(f.IngressDeniedBy, v)
		case 1008:
			if err = once(1 << 12); err == nil {
				c := next(&d.s.cts)
				err = varints(v, func(n protowire.Number, x uint64) bool {
					c.NewEntry = x != 0
					return n == 1
				})
				f.Conntrack = c
			}
		case 1010:
			if err = once(1 << 13); err == nil {
				f.TcpHealth, err = d.tcpHealth(v)
			}
		default:
			return errNotFlat // L7 and fields unknown to this relay
		}
		return err
	})
}

// fields walks one message's fields, calling fn with each field's number,
// wire type and value (varints in x, length-delimited in v); other wire
// types are not in the flat view. One-byte tags, varints and lengths (most
// of them) are read here, longer ones by protowire: its calls per field
// were a tenth of the decoder's time (docs/benchmarks/relay.md, "Fifth
// pass").
func fields(b []byte, fn func(n protowire.Number, t protowire.Type, x uint64, v []byte) error) error {
	for len(b) > 0 {
		tag, m := uint64(b[0]), 1
		if tag >= 0x80 {
			tag, m = protowire.ConsumeVarint(b)
		}
		// protowire.ConsumeTag's checks; the generated unmarshaller says
		// what is wrong.
		if m < 0 || tag>>3 == 0 || tag>>3 > math.MaxInt32 {
			return errNotFlat
		}
		b = b[m:]
		var x uint64
		var v []byte
		if len(b) > 0 && b[0] < 0x80 {
			x, m = uint64(b[0]), 1
		} else {
			x, m = protowire.ConsumeVarint(b)
		}
		switch protowire.Type(tag & 7) {
		case protowire.VarintType:
		case protowire.BytesType:
			if m < 0 || x > uint64(len(b)-m) {
				return errNotFlat
			}
			v, m = b[m:m+int(x)], m+int(x)
		default:
			return errNotFlat
		}
		if m < 0 {
			return errNotFlat
		}
		b = b[m:]
		if err := fn(protowire.Number(tag>>3), protowire.Type(tag&7), x, v); err != nil {
			return err
		}
	}
	return nil
}

// varints walks a message of varint fields only; fn reports whether it
// knows the field.
func varints(b []byte, fn func(n protowire.Number, x uint64) bool) error {
	return fields(b, func(n protowire.Number, t protowire.Type, x uint64, _ []byte) error {
		if t != protowire.VarintType || !fn(n, x) {
			return errNotFlat
		}
		return nil
	})
}

// strings reads a message of string fields numbered 1, 2, ... into ps.
func (d *flatDecoder) strings(b []byte, ps ...*string) error {
	return fields(b, func(n protowire.Number, t protowire.Type, _ uint64, v []byte) error {
		if t != protowire.BytesType || n < 1 || int(n) > len(ps) {
			return errNotFlat
		}
		*ps[n-1] = d.o.bytes(v)
		return nil
	})
}

func (d *flatDecoder) timestamp(b []byte) (*timestamppb.Timestamp, error) {
	ts := next(&d.s.ts)
	return ts, varints(b, func(n protowire.Number, x uint64) bool {
		switch n {
		case 1:
			ts.Seconds = int64(x)
		case 2:
			ts.Nanos = int32(x)
		default:
			return false
		}
		return true
	})
}

func (d *flatDecoder) duration(b []byte) (*durationpb.Duration, error) {
	du := next(&d.s.durs)
	return du, varints(b, func(n protowire.Number, x uint64) bool {
		switch n {
		case 1:
			du.Seconds = int64(x)
		case 2:
			du.Nanos = int32(x)
		default:
			return false
		}
		return true
	})
}

func (d *flatDecoder) ip(b []byte) (*flowv1.IP, error) {
	ip := next(&d.s.ips)
	return ip, fields(b, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
		switch {
		case n == 1 && t == protowire.BytesType:
			ip.Source = d.o.bytes(v)
		case n == 2 && t == protowire.BytesType:
			ip.Destination = d.o.bytes(v)
		case n == 3 && t == protowire.VarintType:
			ip.IpVersion = flowv1.IPVersion(int32(x))
		case n == 4 && t == protowire.VarintType:
			ip.Encrypted = x != 0
		default:
			return errNotFlat
		}
		return nil
	})
}

// ports reads a message of two uint32 fields (ports, or ICMP type and code).
func ports(b []byte, a, c *uint32) error {
	return varints(b, func(n protowire.Number, x uint64) bool {
		switch n {
		case 1:
			*a = uint32(x)
		case 2:
			*c = uint32(x)
		default:
			return false
		}
		return true
	})
}

func (d *flatDecoder) l4(b []byte) (*flowv1.Layer4, error) {
	l := next(&d.s.l4s)
	one := false
	return l, fields(b, func(n protowire.Number, t protowire.Type, _ uint64, v []byte) error {
		if t != protowire.BytesType || one {
			return errNotFlat // a second member: protobuf's oneof rules, left to it
		}
		one = true
		switch n {
		case 1:
			tcp := next(&d.s.tcps)
			seenFlags := false
			if err := fields(v, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
				switch {
				case n == 1 && t == protowire.VarintType:
					tcp.SourcePort = uint32(x)
				case n == 2 && t == protowire.VarintType:
					tcp.DestinationPort = uint32(x)
				case n == 3 && t == protowire.BytesType && !seenFlags:
					seenFlags = true
					fl := next(&d.s.flags)
					tcp.Flags = fl
					return varints(v, func(n protowire.Number, x uint64) bool {
						if n < 1 || n > 9 {
							return false
						}
						*[...]*bool{&fl.FIN, &fl.SYN, &fl.RST, &fl.PSH, &fl.ACK, &fl.URG, &fl.ECE, &fl.CWR, &fl.NS}[n-1] = x != 0
						return true
					})
				default:
					return errNotFlat
				}
				return nil
			}); err != nil {
				return err
			}
			w := next(&d.s.l4tcp)
			w.TCP, l.Protocol = tcp, w
		case 2:
			u := next(&d.s.udps)
			if err := ports(v, &u.SourcePort, &u.DestinationPort); err != nil {
				return err
			}
			w := next(&d.s.l4udp)
			w.UDP, l.Protocol = u, w
		case 3:
			i := next(&d.s.icmp4)
			if err := ports(v, &i.Type, &i.Code); err != nil {
				return err
			}
			w := next(&d.s.l4i4)
			w.ICMPv4, l.Protocol = i, w
		case 4:
			i := next(&d.s.icmp6)
			if err := ports(v, &i.Type, &i.Code); err != nil {
				return err
			}
			w := next(&d.s.l4i6)
			w.ICMPv6, l.Protocol = i, w
		case 5:
			s := next(&d.s.sctps)
			if err := ports(v, &s.SourcePort, &s.DestinationPort); err != nil {
				return err
			}
			w := next(&d.s.l4sctp)
			w.SCTP, l.Protocol = s, w
		default:
			return errNotFlat
		}
		return nil
	})
}

// endpoint decodes an Endpoint. An agent's endpoints repeat (one per pod
// it sees, in flow after flow), so a stream remembers each one's wire form
// and the endpoint it decodes to: a repeat is one lookup instead of one per
// string (namespace, pod, every label, workloads). Each flow still gets
// its own Endpoint; its labels and workloads are shared, read-only (capped
// slices: an append copies), as enrichment already shares the endpoints it
// sets.
func (d *flatDecoder) endpoint(b []byte) (*flowv1.Endpoint, error) {
	e := next(&d.s.eps)
	eps := &d.o.t.eps
	if t, ok := (*eps)[string(b)]; ok {
		t.copyTo(e)
		return e, nil
	}
	if err := d.endpointFields(e, b); err != nil {
		return e, err
	}
	// Only checked strings are remembered: an endpoint with invalid UTF-8
	// must fail every batch that carries it.
	if len(b) <= maxEndpointKey && d.o.err == nil {
		if *eps == nil || len(*eps) >= d.o.t.max {
			*eps = make(map[string]*endpointTemplate, min(d.o.t.max, 256))
		}
		(*eps)[string(b)] = newEndpointTemplate(e)
	}
	return e, nil
}

// maxEndpointKey bounds the wire form of a remembered endpoint (with the
// table's bound in entries, the memory a stream's endpoints take).
const maxEndpointKey = 512

// endpointTemplate is a decoded endpoint, owning its slices.
type endpointTemplate struct {
	id, identity                  uint32
	cluster, namespace, pod, node string
	labels                        []string
	workloads                     []*flowv1.Workload
}

func newEndpointTemplate(e *flowv1.Endpoint) *endpointTemplate {
	t := &endpointTemplate{id: e.ID, identity: e.Identity, cluster: e.ClusterName, namespace: e.Namespace, pod: e.PodName, node: e.NodeName}
	if len(e.Labels) > 0 {
		t.labels = append([]string(nil), e.Labels...)
	}
	for _, w := range e.Workloads {
		t.workloads = append(t.workloads, &flowv1.Workload{Name: w.Name, Kind: w.Kind})
	}
	return t
}

func (t *endpointTemplate) copyTo(e *flowv1.Endpoint) {
	e.ID, e.Identity, e.ClusterName, e.Namespace, e.PodName, e.NodeName = t.id, t.identity, t.cluster, t.namespace, t.pod, t.node
	e.Labels = t.labels[:len(t.labels):len(t.labels)]
	e.Workloads = t.workloads[:len(t.workloads):len(t.workloads)]
}

func (d *flatDecoder) endpointFields(e *flowv1.Endpoint, b []byte) error {
	return fields(b, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
		if t == protowire.VarintType {
			switch n {
			case 1:
				e.ID = uint32(x)
			case 2:
				e.Identity = uint32(x)
			default:
				return errNotFlat
			}
			return nil
		}
		switch n {
		case 3:
			e.Namespace = d.o.bytes(v)
		case 4:
			e.Labels = window(&d.s.strs, e.Labels, d.o.bytes(v))
		case 5:
			e.PodName = d.o.bytes(v)
		case 6:
			w := next(&d.s.wls)
			if err := d.strings(v, &w.Name, &w.Kind); err != nil {
				return err
			}
			e.Workloads = window(&d.s.wlPtrs, e.Workloads, w)
		case 7:
			e.ClusterName = d.o.bytes(v)
		case 1000:
			e.NodeName = d.o.bytes(v)
		default:
			return errNotFlat
		}
		return nil
	})
}

func (d *flatDecoder) policy(list []*flowv1.Policy, b []byte) ([]*flowv1.Policy, error) {
	p := next(&d.s.pols)
	err := fields(b, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
		switch {
		case n == 1 && t == protowire.BytesType:
			p.Name = d.o.bytes(v)
		case n == 2 && t == protowire.BytesType:
			p.Namespace = d.o.bytes(v)
		case n == 3 && t == protowire.BytesType:
			p.Labels = window(&d.s.strs, p.Labels, d.o.bytes(v))
		case n == 4 && t == protowire.VarintType:
			p.Revision = x
		case n == 5 && t == protowire.BytesType:
			p.Kind = d.o.bytes(v)
		default:
			return errNotFlat
		}
		return nil
	})
	return window(&d.s.pPtrs, list, p), err
}

func (d *flatDecoder) tcpHealth(b []byte) (*flowv1.TCPHealth, error) {
	h := next(&d.s.health)
	var seen [2]bool
	return h, fields(b, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
		var err error
		switch {
		case (n == 1 || n == 2) && t == protowire.BytesType && !seen[n-1]:
			seen[n-1] = true
			if n == 1 {
				h.HandshakeSynAck, err = d.duration(v)
			} else {
				h.HandshakeAck, err = d.duration(v)
			}
		case n == 3 && t == protowire.VarintType:
			h.Retransmits = uint32(x)
		case n == 4 && t == protowire.VarintType:
			h.ResetBy = flowv1.TCPSide(int32(x))
		case n == 5 && t == protowire.VarintType:
			h.ZeroWindows = uint32(x)
		default:
			return errNotFlat
		}
		return err
	})
}

// batchFlat decodes a Batch's wire bytes into b: its flows into the
// slab s (each one the flat decoder cannot take through the generated
// unmarshaller, in place), everything else with the generated unmarshaller
// and owned as before. ok is false when the batch is not one this path
// takes (malformed at the top level): the caller decodes it as before.
func batchFlat(o *owner, s *Slab, b *ingestv1.Batch, data []byte) (ok bool, err error) {
	// The wire forms point into the receive buffer: dropped on return.
	defer func() { clear(s.wire); s.wire = s.wire[:0] }()
	var rest []byte // the batch without its flows
	for p := data; len(p) > 0; {
		n, t, m := protowire.ConsumeTag(p)
		if m < 0 {
			return false, nil
		}
		l := protowire.ConsumeFieldValue(n, t, p[m:])
		if l < 0 {
			return false, nil
		}
		if n == 5 && t == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(p[m:])
			s.wire = append(s.wire, v)
		} else {
			rest = append(rest, p[:m+l]...)
		}
		p = p[m+l:]
	}
	if err := b.UnmarshalVTUnsafe(rest); err != nil {
		return false, nil
	}
	o.batch(b) // before the flows: b.Flows is empty
	d := flatDecoder{o: o, s: s, n: len(s.wire)}
	b.Flows = make([]*flowv1.Flow, len(s.wire))
	for i, v := range s.wire {
		f := next(&d.s.flows)
		if d.flow(f, v) == nil {
			b.Flows[i] = f
			continue
		}
		g := &flowv1.Flow{}
		if err := g.UnmarshalVTUnsafe(v); err != nil {
			return true, err
		}
		o.flow(g)
		b.Flows[i] = g
	}
	return true, nil
}
