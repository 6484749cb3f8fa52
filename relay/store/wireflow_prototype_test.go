package store

// A measured prototype of issue 15's "no Flow objects on the storage path"
// (docs/benchmarks/relay.md, "Third pass: CPU"): a batch's flows read from
// their wire bytes into one reused flat view, and appended from that view
// to the insert columns, with no heap object per flow. It is test code
// until it is wired into the relay (ingest, enrichment, metrics and the hub
// read Flows today; the note in the doc lists the steps), so the relay has
// one way from a flow to its columns: BenchmarkWirePath compares it with
// the path the relay takes, and TestWireFlowColumnsEqualTheFlowPath holds
// it to the same columns. A flow with a field the view does not carry (L7, services,
// DNS names, Ethernet, conntrack, endpoint ids, policies beyond names) is
// reported as not handled, for the caller to take the Flow path for it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/trawl-dev/trawl/internal/dropclass"
	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/flowid"
	"github.com/trawl-dev/trawl/internal/l4"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// errNotFlat: the flow has a field the flat view does not carry.
var errNotFlat = errors.New("flow not representable in the flat view")

type wireTime struct {
	set   bool
	sec   int64
	nanos int32
}

func (t wireTime) time() time.Time { return time.Unix(t.sec, int64(t.nanos)).UTC() }

type wireEndpoint struct {
	set           bool
	ns, pod       string
	labels        []string
	wlName, wlKnd []string
}

type wirePolicy struct{ ns, name string }

// wireFlow is one flow as the columns need it. Its strings alias the wire
// bytes: valid only until the next flow is read, and every column that
// keeps one copies it (lowCardinality's own, ColStr's append).
type wireFlow struct {
	time, first, last               wireTime
	uuid, node                      string
	verdict, kind, direction, ftype int32
	dropDesc, dropKernel, dropClass string
	obsPoint                        string
	ipSet                           bool
	ipSrc, ipDst                    string
	ipVersion                       int32
	l4Set                           bool
	l4Proto                         uint8
	sport, dport                    uint32
	flags                           flowv1.TCPFlags
	flagsSet                        bool
	src, dst                        wireEndpoint
	replySet, reply                 bool
	ifSet                           bool
	ifIndex                         uint32
	ifName                          string
	policies                        [4][]wirePolicy // egress allowed, ingress allowed, egress denied, ingress denied
	packets, bytes, netns           uint64
	tcpSet                          bool
	synAck, ack                     struct {
		set bool
		d   time.Duration
	}
	retransmits, zeroWindows uint32
	resetBy                  int32
}

func (w *wireFlow) reset() {
	src, dst := w.src, w.dst
	pol := w.policies
	*w = wireFlow{}
	w.src = wireEndpoint{labels: src.labels[:0], wlName: src.wlName[:0], wlKnd: src.wlKnd[:0]}
	w.dst = wireEndpoint{labels: dst.labels[:0], wlName: dst.wlName[:0], wlKnd: dst.wlKnd[:0]}
	for i := range pol {
		w.policies[i] = pol[i][:0]
	}
}

// fields walks one message's fields, calling fn with each field's number,
// type and value bytes (for varints, v is nil and x holds the value).
func fields(b []byte, fn func(n protowire.Number, t protowire.Type, x uint64, v []byte) error) error {
	for len(b) > 0 {
		n, t, m := protowire.ConsumeTag(b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
		var x uint64
		var v []byte
		switch t {
		case protowire.VarintType:
			x, m = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, m = protowire.ConsumeBytes(b)
		default:
			return errNotFlat // fixed-width or group fields: none in the view
		}
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
		if err := fn(n, t, x, v); err != nil {
			return err
		}
	}
	return nil
}

// str checks UTF-8 as the protobuf runtime does for proto3 strings.
func str(t protowire.Type, v []byte) (string, error) {
	if t != protowire.BytesType {
		return "", errNotFlat
	}
	if !utf8.Valid(v) {
		return "", fmt.Errorf("string field: %w", errInvalidUTF8)
	}
	return unsafeString(v), nil
}

var errInvalidUTF8 = errors.New("invalid UTF-8")

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func wireTimeOf(v []byte) (wireTime, error) {
	t := wireTime{set: true}
	err := fields(v, func(n protowire.Number, typ protowire.Type, x uint64, _ []byte) error {
		switch {
		case n == 1 && typ == protowire.VarintType:
			t.sec = int64(x)
		case n == 2 && typ == protowire.VarintType:
			t.nanos = int32(x)
		default:
			return errNotFlat
		}
		return nil
	})
	return t, err
}

func (e *wireEndpoint) read(v []byte) error {
	e.set = true
	return fields(v, func(n protowire.Number, t protowire.Type, _ uint64, v []byte) error {
		var err error
		switch n {
		case 3:
			e.ns, err = str(t, v)
		case 5:
			e.pod, err = str(t, v)
		case 4:
			var s string
			s, err = str(t, v)
			e.labels = append(e.labels, s)
		case 6:
			var name, kind string
			err = fields(v, func(n protowire.Number, t protowire.Type, _ uint64, v []byte) error {
				var err error
				switch n {
				case 1:
					name, err = str(t, v)
				case 2:
					kind, err = str(t, v)
				default:
					return errNotFlat
				}
				return err
			})
			e.wlName, e.wlKnd = append(e.wlName, name), append(e.wlKnd, kind)
		default:
			return errNotFlat // ids, cluster and node names go to extra: the Flow path
		}
		return err
	})
}

func (w *wireFlow) readL4(v []byte) error {
	w.l4Set = true
	return fields(v, func(n protowire.Number, t protowire.Type, _ uint64, v []byte) error {
		if t != protowire.BytesType || n < 1 || n > 5 {
			return errNotFlat
		}
		// The oneof: the last member on the wire wins, as in protobuf.
		w.l4Proto = [...]uint8{1: l4.TCP, 2: l4.UDP, 3: l4.ICMPv4, 4: l4.ICMPv6, 5: l4.SCTP}[n]
		w.sport, w.dport, w.flagsSet, w.flags = 0, 0, false, flowv1.TCPFlags{}
		return fields(v, func(m protowire.Number, t protowire.Type, x uint64, v []byte) error {
			switch {
			case m <= 2 && t == protowire.VarintType:
				if m == 1 {
					w.sport = uint32(x)
				} else {
					w.dport = uint32(x)
				}
			case n == 1 && m == 3 && t == protowire.BytesType:
				w.flagsSet = true
				return fields(v, func(k protowire.Number, t protowire.Type, x uint64, _ []byte) error {
					if t != protowire.VarintType || k < 1 || k > 9 {
						return errNotFlat
					}
					*[...]*bool{1: &w.flags.FIN, 2: &w.flags.SYN, 3: &w.flags.RST, 4: &w.flags.PSH, 5: &w.flags.ACK,
						6: &w.flags.URG, 7: &w.flags.ECE, 8: &w.flags.CWR, 9: &w.flags.NS}[k] = x != 0
					return nil
				})
			default:
				return errNotFlat
			}
			return nil
		})
	})
}

func (w *wireFlow) readTCPHealth(v []byte) error {
	w.tcpSet = true
	return fields(v, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
		switch {
		case (n == 1 || n == 2) && t == protowire.BytesType:
			var sec, nanos int64
			if err := fields(v, func(k protowire.Number, t protowire.Type, x uint64, _ []byte) error {
				if t != protowire.VarintType || k > 2 {
					return errNotFlat
				}
				if k == 1 {
					sec = int64(x)
				} else {
					nanos = int64(int32(x))
				}
				return nil
			}); err != nil {
				return err
			}
			d := &w.synAck
			if n == 2 {
				d = &w.ack
			}
			d.set, d.d = true, time.Duration(sec)*time.Second+time.Duration(nanos)
		case n == 3 && t == protowire.VarintType:
			w.retransmits = uint32(x)
		case n == 4 && t == protowire.VarintType:
			w.resetBy = int32(x)
		case n == 5 && t == protowire.VarintType:
			w.zeroWindows = uint32(x)
		default:
			return errNotFlat
		}
		return nil
	})
}

// read fills w from one Flow's wire bytes.
func (w *wireFlow) read(b []byte) error {
	w.reset()
	return fields(b, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
		var err error
		varint := t == protowire.VarintType
		switch {
		case n == 1 && !varint:
			w.time, err = wireTimeOf(v)
		case n == 1001 && !varint:
			w.first, err = wireTimeOf(v)
		case n == 1002 && !varint:
			w.last, err = wireTimeOf(v)
		case n == 34:
			w.uuid, err = str(t, v)
		case n == 11:
			w.node, err = str(t, v)
		case n == 2 && varint:
			w.verdict = int32(x)
		case n == 1000 && varint:
			w.kind = int32(x)
		case n == 22 && varint:
			w.direction = int32(x)
		case n == 10 && varint:
			w.ftype = int32(x)
		case n == 25:
			w.dropDesc, err = str(t, v)
		case n == 1005:
			w.dropKernel, err = str(t, v)
		case n == 1009:
			w.dropClass, err = str(t, v)
		case n == 1007:
			w.obsPoint, err = str(t, v)
		case n == 5 && !varint:
			w.ipSet = true
			err = fields(v, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
				var err error
				switch {
				case n == 1:
					w.ipSrc, err = str(t, v)
				case n == 2:
					w.ipDst, err = str(t, v)
				case n == 3 && t == protowire.VarintType:
					w.ipVersion = int32(x)
				default:
					return errNotFlat // encrypted goes to extra
				}
				return err
			})
		case n == 6 && !varint:
			err = w.readL4(v)
		case n == 8 && !varint:
			err = w.src.read(v)
		case n == 9 && !varint:
			err = w.dst.read(v)
		case n == 190 && !varint:
			w.replySet = true
			err = fields(v, func(n protowire.Number, t protowire.Type, x uint64, _ []byte) error {
				if n != 1 || t != protowire.VarintType {
					return errNotFlat
				}
				w.reply = x != 0
				return nil
			})
		case n == 26 && !varint:
			w.ifSet = true
			err = fields(v, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
				var err error
				switch {
				case n == 1 && t == protowire.VarintType:
					w.ifIndex = uint32(x)
				case n == 2:
					w.ifName, err = str(t, v)
				default:
					return errNotFlat
				}
				return err
			})
		case n >= 21001 && n <= 21005 && n != 21003 && !varint:
			i := [...]int{21001: 0, 21002: 1, 21004: 2, 21005: 3}[n]
			var p wirePolicy
			kind := ""
			err = fields(v, func(n protowire.Number, t protowire.Type, _ uint64, v []byte) error {
				var err error
				switch n {
				case 1:
					p.name, err = str(t, v)
				case 2:
					p.ns, err = str(t, v)
				case 5:
					kind, err = str(t, v)
				default:
					return errNotFlat // labels, revision: extra, the Flow path
				}
				return err
			})
			if err == nil && kind != "NetworkPolicy" {
				err = errNotFlat
			}
			w.policies[i] = append(w.policies[i], p)
		case n == 1003 && varint:
			w.packets = x
		case n == 1004 && varint:
			w.bytes = x
		case n == 1006 && varint:
			w.netns = x
		case n == 1010 && !varint:
			err = w.readTCPHealth(v)
		default:
			return errNotFlat
		}
		return err
	})
}

// complete does what ingest and enrichment do to a flow without
// Kubernetes metadata: the node's name and the contract's drop fields
// (enrich.DropFields).
func (w *wireFlow) complete(node string) {
	w.node = node
	if w.verdict != int32(flowv1.Verdict_DROPPED) {
		return
	}
	if w.dropDesc == "" {
		w.dropDesc = w.dropKernel
	}
	if w.dropDesc == "POLICY_DENIED" {
		w.dropClass = string(dropclass.Policy)
		return
	}
	for _, c := range dropclass.All {
		if w.dropClass == string(c) {
			return
		}
	}
	if w.dropClass != "" {
		if c, err := dropclass.Parse(w.dropClass); err == nil {
			w.dropClass = string(c)
			return
		}
	}
	reason := w.dropKernel
	if reason == "" {
		reason = w.dropDesc
	}
	w.dropClass = string(dropclass.Of(reason))
}

func (e *endpointColumns) addWire(ep *wireEndpoint) {
	e.ns.add(ep.ns)
	e.pod.add(ep.pod)
	e.labels.add(ep.labels)
	var wl, kind string
	if len(ep.wlName) > 0 {
		wl, kind = ep.wlName[0], ep.wlKnd[0]
		for i := 1; i < len(ep.wlName); i++ {
			e.moreNames.push(ep.wlName[i])
			e.moreKind.push(ep.wlKnd[i])
		}
	}
	e.moreNames.endRow()
	e.moreKind.endRow()
	e.wl.add(wl)
	e.wlKind.add(kind)
	e.svcNS.add("")
	e.svc.add("")
	e.names.add(nil)
}

// policiesWire is policies for the view: the same cache under the same
// key, Policy messages built only when the insert has not seen the set.
func (c *flowColumns) policiesWire(w *wireFlow) (allowed, denied []string, egress uint16) {
	if len(w.policies[0])+len(w.policies[1])+len(w.policies[2])+len(w.policies[3]) == 0 {
		return nil, nil, 0
	}
	key := c.policyKey[:0]
	for _, list := range w.policies {
		key = binary.AppendUvarint(key, uint64(len(list)))
		for _, p := range list {
			key = appendPolicyKeyEntry(key, p.name, p.ns, "NetworkPolicy", 0, nil, nil)
		}
	}
	c.policyKey = key
	if e, ok := c.policyCache[string(key)]; ok {
		return e.allowed, e.denied, e.egress
	}
	var lists [4][]*flowv1.Policy
	for i, ps := range w.policies {
		for _, p := range ps {
			lists[i] = append(lists[i], &flowv1.Policy{Namespace: p.ns, Name: p.name, Kind: "NetworkPolicy"})
		}
	}
	f := flowv1.Flow{EgressAllowedBy: lists[0], IngressAllowedBy: lists[1], EgressDeniedBy: lists[2], IngressDeniedBy: lists[3]}
	allowed, denied, _, egress = c.policies(&f)
	return allowed, denied, egress
}

// addWire appends a flat flow, as add appends the Flow it came from.
func (c *flowColumns) addWire(w *wireFlow) {
	var present uint16
	t := time.Unix(0, 0).UTC()
	if w.time.set {
		present |= hasTime
		t = w.time.time()
	}
	c.time.Append(t)
	if hi, lo, ok := ParseUUID(w.uuid); ok {
		c.idHi.Append(hi)
		c.idLo.Append(lo)
		c.uuidRaw.Append("")
	} else {
		c.idHi.Append(0)
		c.idLo.Append(0)
		c.uuidRaw.Append(w.uuid)
	}
	c.node.add(w.node)
	c.verdict.Append(proto.Enum8(enumValue(w.verdict, flowv1.Verdict_name)))
	c.kind.Append(proto.Enum8(enumValue(w.kind, eventKinds)))
	c.direction.Append(proto.Enum8(enumValue(w.direction, flowv1.TrafficDirection_name)))
	c.flowType.Append(uint8(w.ftype))
	c.dropDesc.add(w.dropDesc)
	c.dropKernel.add(w.dropKernel)
	c.dropClass.add(w.dropClass)
	if w.ipSet {
		present |= hasIP
	}
	c.ipVersion.Append(uint8(w.ipVersion))
	c.srcIP.add(filter.AddrBytes(w.ipSrc))
	c.dstIP.add(filter.AddrBytes(w.ipDst))
	if w.l4Set {
		present |= hasL4
	}
	var flags uint16
	if w.l4Proto == l4.TCP && w.flagsSet {
		present |= hasTCPFlags
		flags = l4.FlagBits(&w.flags)
	}
	c.l4Kind.Append(w.l4Proto)
	c.srcPort.Append(uint16(w.sport))
	c.dstPort.Append(uint16(w.dport))
	c.tcpFlags.Append(flags)
	if w.src.set {
		present |= hasSource
	}
	if w.dst.set {
		present |= hasDestination
	}
	c.src.addWire(&w.src)
	c.dst.addWire(&w.dst)
	var reply uint8
	if w.replySet {
		reply = 1
		if w.reply {
			reply = 2
		}
	}
	c.isReply.Append(reply)
	if w.ifSet {
		present |= hasInterface
	}
	c.ifIndex.Append(w.ifIndex)
	c.ifName.add(w.ifName)
	allowed, denied, egress := c.policiesWire(w)
	c.allowedBy.add(allowed)
	c.deniedBy.add(denied)
	c.packets.Append(w.packets)
	c.bytes.Append(w.bytes)
	var fo, lo int64
	if w.first.set {
		present |= hasFirstSeen
		fo = t.Sub(w.first.time()).Nanoseconds()
	}
	if w.last.set {
		present |= hasLastSeen
		lo = t.Sub(w.last.time()).Nanoseconds()
	}
	c.firstOff.Append(fo)
	c.lastOff.Append(lo)
	c.netns.Append(w.netns)
	c.obsPoint.add(w.obsPoint)
	present |= c.dns.add(nil)
	if w.tcpSet {
		present |= hasTCPHealth
		if w.synAck.set && w.ack.set {
			present |= tcpHandshakeSet
		}
	}
	pos := func(d time.Duration, set bool) uint64 {
		if set && d > 0 {
			return uint64(d)
		}
		return 0
	}
	c.tcp.synAck.Append(pos(w.synAck.d, w.synAck.set))
	c.tcp.ack.Append(pos(w.ack.d, w.ack.set))
	c.tcp.retransmits.Append(w.retransmits)
	c.tcp.resetBy.add(tcpSideName(flowv1.TCPSide(w.resetBy)))
	c.tcp.zeroWindows.Append(w.zeroWindows)
	c.present.Append(present)
	c.extra.Append("") // the view holds nothing that goes to extra
	c.policyEgress.Append(egress)
}

// addBatchWire reads a Batch's wire bytes and appends its flows to c,
// each through the view when it fits (returning the others' indexes, for
// the Flow path) — the prototype of the relay's storage path without Flow
// objects. node is the stream's node.
func (c *flowColumns) addBatchWire(w *wireFlow, b []byte, node string) (notFlat []int, err error) {
	i := 0
	var boot string
	var seq uint64
	err = fields(b, func(n protowire.Number, t protowire.Type, x uint64, v []byte) error {
		switch {
		case n == 2 && t == protowire.BytesType:
			boot = string(v)
			return nil
		case n == 3 && t == protowire.VarintType:
			seq = x
			return nil
		case n != 5 || t != protowire.BytesType:
			return nil // node, send time, conntrack, lost events: elsewhere
		}
		switch err := w.read(v); {
		case errors.Is(err, errNotFlat):
			notFlat = append(notFlat, i)
		case err != nil:
			return fmt.Errorf("flow %d: %w", i, err)
		default:
			if w.uuid == "" {
				w.uuid = flowid.Derive(node, boot, seq, i)
			}
			w.complete(node)
			c.addWire(w)
		}
		i++
		return nil
	})
	return notFlat, err
}
