// Package jsonl reads and writes the pinned JSON-lines envelope
// ({"flow": {...}, "node_name": ..., "time": ...}) fast. It exists because
// protojson spends tens of microseconds per flow, far from the CLI's goal of
// 300k flows/s for `--input-file` and `-o json`.
//
// The fast paths handle the records that come in bulk (flows and lost
// events) field by field; anything they are not sure about (conntrack and
// node-status records, escaped strings, nulls, odd numbers) goes to protojson,
// so the result is always exactly protojson's: decoding as
// protojson.UnmarshalOptions{DiscardUnknown: true}, encoding as
// protojson.MarshalOptions{UseProtoNames: true} (compact spacing). Tests
// check both against protojson.
package jsonl

import (
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// errSlow sends a line to protojson.
var errSlow = errors.New("jsonl: not on the fast path")

var slowUnmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

// Decoded is one decoded line. HubbleEventType is the value of Hubble's
// flow.event_type.type on that line (0 when absent, -1 when the line took
// the slow path). Hubble's event types have no field in Trawl's Flow;
// callers map them to event kinds.
type Decoded struct {
	*observerv1.GetFlowsResponse
	HubbleEventType int
}

// Unmarshal decodes one line into a new response.
func Unmarshal(line []byte) (Decoded, error) {
	return decode(scanner{b: line, sl: &slabs{size: 1}}, &observerv1.GetFlowsResponse{})
}

// decode runs the fast scanner into r and falls back to protojson for
// anything it does not handle.
func decode(s scanner, r *observerv1.GetFlowsResponse) (Decoded, error) {
	if err := s.response(r); err == nil {
		return Decoded{r, s.hubbleType}, nil
	}
	r = &observerv1.GetFlowsResponse{}
	if err := slowUnmarshal.Unmarshal(s.b, r); err != nil {
		return Decoded{}, err
	}
	return Decoded{r, -1}, nil
}

// Decoder decodes lines one after another, sharing the strings that repeat
// from record to record (namespaces, pod and node names, labels) instead of
// allocating them again, and allocating the messages of a flow from slabs
// (one allocation for many records): flows of one capture repeat both
// constantly. A slab stays in memory while any record cut from it does. Not
// safe for concurrent use; use one per goroutine.
type Decoder struct {
	intern map[string]string
	slabs  *slabs
}

// slabSize is how many messages of one type a slab holds.
const slabSize = 64

type slabs struct {
	size     int
	resp     []observerv1.GetFlowsResponse
	respFlow []observerv1.GetFlowsResponse_Flow
	flow     []flowv1.Flow
	ep       []flowv1.Endpoint
	ts       []timestamppb.Timestamp
	ip       []flowv1.IP
	l4       []flowv1.Layer4
	l4tcp    []flowv1.Layer4_TCP
	tcp      []flowv1.TCP
	flags    []flowv1.TCPFlags
	boolv    []wrapperspb.BoolValue
}

// take cuts one zero value from a slab, refilling it with size values when
// empty (size 1: one-off decoding, each value allocated alone).
func take[T any](size int, slab *[]T) *T {
	if len(*slab) == 0 {
		*slab = make([]T, size)
	}
	v := &(*slab)[0]
	*slab = (*slab)[1:]
	return v
}

// maxInterned bounds the shared strings; past it new strings are allocated.
const maxInterned = 8192

// Unmarshal decodes one line into a new response.
func (d *Decoder) Unmarshal(line []byte) (Decoded, error) {
	if d.intern == nil {
		d.intern = make(map[string]string)
		d.slabs = &slabs{size: slabSize}
	}
	return decode(scanner{b: line, intern: d.intern, sl: d.slabs}, take(d.slabs.size, &d.slabs.resp))
}

type scanner struct {
	b          []byte
	i          int
	hubbleType int
	intern     map[string]string
	sl         *slabs
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return errSlow
	}
	s.i++
	return nil
}

// object walks the members of an object, calling f with each key (valid
// only during the call) positioned before the value.
func (s *scanner) object(f func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		key, err := s.rawString()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if s.peek() == 'n' {
			return errSlow // null: protojson's rules, not ours
		}
		if err := f(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errSlow
		}
	}
}

// array walks the elements of an array.
func (s *scanner) array(f func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		if s.peek() == 'n' {
			return errSlow
		}
		if err := f(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return errSlow
		}
	}
}

// rawString returns the bytes of a string without escapes.
func (s *scanner) rawString() ([]byte, error) {
	if s.peek() != '"' {
		return nil, errSlow
	}
	start := s.i + 1
	ascii := true
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			v := s.b[start:j]
			if !ascii && !utf8.Valid(v) {
				return nil, errSlow
			}
			return v, nil
		case c == '\\' || c < 0x20:
			return nil, errSlow
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, errSlow
}

// str reads a string, shared through the intern table when short.
func (s *scanner) str() (string, error) {
	b, err := s.rawString()
	if err != nil || len(b) > 64 || s.intern == nil {
		return string(b), err
	}
	if v, ok := s.intern[string(b)]; ok {
		return v, nil
	}
	v := string(b)
	if len(s.intern) < maxInterned {
		s.intern[v] = v
	}
	return v, nil
}

// unique reads a string that rarely repeats (ids), without the table.
func (s *scanner) unique() (string, error) {
	b, err := s.rawString()
	return string(b), err
}

func (s *scanner) strs(dst *[]string) error {
	return s.array(func() error {
		v, err := s.str()
		*dst = append(*dst, v)
		return err
	})
}

// number returns the bytes of an unquoted or quoted plain decimal integer.
func (s *scanner) digits() ([]byte, error) {
	quoted := s.peek() == '"'
	if quoted {
		s.i++
	}
	start := s.i
	for s.i < len(s.b) && (s.b[s.i] >= '0' && s.b[s.i] <= '9' || s.b[s.i] == '-' && s.i == start) {
		s.i++
	}
	d := s.b[start:s.i]
	if len(d) == 0 || len(d) > 1 && d[0] == '0' {
		return nil, errSlow
	}
	if quoted {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return nil, errSlow
		}
		s.i++
	} else if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return nil, errSlow
	}
	return d, nil
}

func (s *scanner) uint(bits int) (uint64, error) {
	d, err := s.digits()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(d), 10, bits)
	if err != nil {
		return 0, errSlow
	}
	return v, nil
}

func (s *scanner) int32() (int32, error) {
	d, err := s.digits()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(d), 10, 32)
	if err != nil {
		return 0, errSlow
	}
	return int32(v), nil
}

func (s *scanner) bool() (bool, error) {
	s.ws()
	switch {
	case len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "true":
		s.i += 4
		return true, nil
	case len(s.b)-s.i >= 5 && string(s.b[s.i:s.i+5]) == "false":
		s.i += 5
		return false, nil
	}
	return false, errSlow
}

// enum reads a name (unknown names are ignored, as DiscardUnknown does) or a number.
func (s *scanner) enum(names map[string]int32) (int32, error) {
	if s.peek() == '"' {
		b, err := s.rawString()
		if err != nil {
			return 0, err
		}
		return names[string(b)], nil
	}
	return s.int32()
}

func (s *scanner) timestamp() (*timestamppb.Timestamp, error) {
	b, err := s.rawString()
	if err != nil {
		return nil, err
	}
	// protojson wants an upper-case T and Z and at most nine fraction digits;
	// anything unusual goes to it.
	if len(b) < 20 || b[10] != 'T' {
		return nil, errSlow
	}
	sec, nanos, ok := parseUTC(b)
	if !ok {
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil || t.Year() < 1 || t.Year() > 9999 {
			return nil, errSlow
		}
		sec, nanos = t.Unix(), int32(t.Nanosecond())
	}
	ts := take(s.sl.size, &s.sl.ts)
	ts.Seconds, ts.Nanos = sec, nanos
	return ts, nil
}

// parseUTC reads the form records are written in, "YYYY-MM-DDTHH:MM:SS",
// an optional fraction of 1 to 9 digits, then "Z", without time.Parse; ok
// is false for anything else (time.Parse then decides).
func parseUTC(b []byte) (sec int64, nanos int32, ok bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return 0, 0, false
	}
	num := func(i, n int) (int, bool) {
		v := 0
		for _, c := range b[i : i+n] {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	y, ok1 := num(0, 4)
	mo, ok2 := num(5, 2)
	d, ok3 := num(8, 2)
	h, ok4 := num(11, 2)
	mi, ok5 := num(14, 2)
	se, ok6 := num(17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || y < 1 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || se > 59 {
		return 0, 0, false
	}
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return 0, 0, false
		}
		n, ok := num(20, len(frac)-1)
		if !ok {
			return 0, 0, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nanos = int32(n)
	}
	return (daysFromCivil(y, mo, d)*24+int64(h))*3600 + int64(mi)*60 + int64(se), nanos, true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil counts days from 1970-01-01 to y-m-d in the proleptic
// Gregorian calendar.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// skip passes over any value (unknown fields).
func (s *scanner) skip() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		_, err := s.rawString()
		return err
	case c == 't' || c == 'f':
		_, err := s.bool()
		return err
	case c == '-' || c >= '0' && c <= '9':
		start := s.i
		for s.i < len(s.b) && (s.b[s.i] == '-' || s.b[s.i] == '+' || s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E' || s.b[s.i] >= '0' && s.b[s.i] <= '9') {
			s.i++
		}
		if s.i == start {
			return errSlow
		}
		return nil
	}
	return errSlow
}

func (s *scanner) response(r *observerv1.GetFlowsResponse) error {
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "flow":
			if r.ResponseTypes != nil {
				return errSlow
			}
			f := take(s.sl.size, &s.sl.flow)
			w := take(s.sl.size, &s.sl.respFlow)
			w.Flow = f
			r.ResponseTypes = w
			return s.flow(f)
		case "lost_events", "lostEvents":
			if r.ResponseTypes != nil {
				return errSlow
			}
			l := &flowv1.LostEvent{}
			r.ResponseTypes = &observerv1.GetFlowsResponse_LostEvents{LostEvents: l}
			return s.lost(l)
		case "node_name", "nodeName":
			v, err := s.str()
			r.NodeName = v
			return err
		case "time":
			t, err := s.timestamp()
			r.Time = t
			return err
		case "node_status", "nodeStatus", "conntrack":
			return errSlow
		}
		return s.skip()
	})
	if err != nil {
		return err
	}
	if s.peek() != 0 {
		return errSlow // trailing data
	}
	return nil
}

func (s *scanner) lost(l *flowv1.LostEvent) error {
	return s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "source":
			var v int32
			v, err = s.enum(flowv1.LostEventSource_value)
			l.Source = flowv1.LostEventSource(v)
		case "num_events_lost", "numEventsLost":
			l.NumEventsLost, err = s.uint(64)
		case "cpu":
			var v int32
			v, err = s.int32()
			l.Cpu = wrapperspb.Int32(v)
		case "node_name", "nodeName":
			l.NodeName, err = s.str()
		case "time":
			l.Time, err = s.timestamp()
		case "detail":
			l.Detail, err = s.str()
		default:
			err = s.skip()
		}
		return err
	})
}

func (s *scanner) flow(f *flowv1.Flow) error {
	return s.object(func(key []byte) error {
		var err error
		var v int32
		switch string(key) {
		case "time":
			f.Time, err = s.timestamp()
		case "uuid":
			f.Uuid, err = s.unique()
		case "verdict":
			v, err = s.enum(flowv1.Verdict_value)
			f.Verdict = flowv1.Verdict(v)
		case "drop_reason_desc", "dropReasonDesc":
			// A string in Trawl; Hubble's enum names are the same text.
			if s.peek() != '"' {
				return errSlow
			}
			f.DropReasonDesc, err = s.str()
		case "ethernet":
			e := &flowv1.Ethernet{}
			f.Ethernet = e
			err = s.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "source":
					e.Source, err = s.str()
				case "destination":
					e.Destination, err = s.str()
				default:
					err = s.skip()
				}
				return err
			})
		case "IP":
			ip := take(s.sl.size, &s.sl.ip)
			f.IP = ip
			err = s.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "source":
					ip.Source, err = s.str()
				case "destination":
					ip.Destination, err = s.str()
				case "ipVersion":
					var v int32
					v, err = s.enum(flowv1.IPVersion_value)
					ip.IpVersion = flowv1.IPVersion(v)
				case "encrypted":
					ip.Encrypted, err = s.bool()
				default:
					err = s.skip()
				}
				return err
			})
		case "l4":
			f.L4 = take(s.sl.size, &s.sl.l4)
			err = s.l4(f.L4)
		case "source":
			f.Source = take(s.sl.size, &s.sl.ep)
			err = s.endpoint(f.Source)
		case "destination":
			f.Destination = take(s.sl.size, &s.sl.ep)
			err = s.endpoint(f.Destination)
		case "Type":
			v, err = s.enum(flowv1.FlowType_value)
			f.Type = flowv1.FlowType(v)
		case "node_name", "nodeName":
			f.NodeName, err = s.str()
		case "l7":
			f.L7 = &flowv1.Layer7{}
			err = s.l7(f.L7)
		case "source_names", "sourceNames":
			err = s.strs(&f.SourceNames)
		case "destination_names", "destinationNames":
			err = s.strs(&f.DestinationNames)
		case "is_reply", "isReply":
			var b bool
			b, err = s.bool()
			f.IsReply = take(s.sl.size, &s.sl.boolv)
			f.IsReply.Value = b
		case "source_service", "sourceService":
			f.SourceService = &flowv1.Service{}
			err = s.service(f.SourceService)
		case "destination_service", "destinationService":
			f.DestinationService = &flowv1.Service{}
			err = s.service(f.DestinationService)
		case "traffic_direction", "trafficDirection":
			v, err = s.enum(flowv1.TrafficDirection_value)
			f.TrafficDirection = flowv1.TrafficDirection(v)
		case "interface":
			ifc := &flowv1.NetworkInterface{}
			f.Interface = ifc
			err = s.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "index":
					var n uint64
					n, err = s.uint(32)
					ifc.Index = uint32(n)
				case "name":
					ifc.Name, err = s.str()
				default:
					err = s.skip()
				}
				return err
			})
		case "egress_allowed_by", "egressAllowedBy":
			err = s.policies(&f.EgressAllowedBy)
		case "ingress_allowed_by", "ingressAllowedBy":
			err = s.policies(&f.IngressAllowedBy)
		case "egress_denied_by", "egressDeniedBy":
			err = s.policies(&f.EgressDeniedBy)
		case "ingress_denied_by", "ingressDeniedBy":
			err = s.policies(&f.IngressDeniedBy)
		case "event_kind", "eventKind":
			v, err = s.enum(flowv1.EventKind_value)
			f.EventKind = flowv1.EventKind(v)
		case "first_seen", "firstSeen":
			f.FirstSeen, err = s.timestamp()
		case "last_seen", "lastSeen":
			f.LastSeen, err = s.timestamp()
		case "packets":
			f.Packets, err = s.uint(64)
		case "bytes":
			f.Bytes, err = s.uint(64)
		case "drop_reason_kernel", "dropReasonKernel":
			f.DropReasonKernel, err = s.str()
		case "netns":
			f.Netns, err = s.uint(64)
		case "observation_point", "observationPoint":
			f.ObservationPoint, err = s.str()
		case "drop_class", "dropClass":
			f.DropClass, err = s.str()
		case "conntrack":
			c := &flowv1.ConntrackInfo{}
			f.Conntrack = c
			err = s.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "new_entry", "newEntry":
					c.NewEntry, err = s.bool()
				default:
					err = s.skip()
				}
				return err
			})
		case "tcp_health", "tcpHealth":
			if f.TcpHealth != nil {
				return errSlow // given twice: protojson's error
			}
			f.TcpHealth = &flowv1.TCPHealth{}
			err = s.tcpHealth(f.TcpHealth)
		case "event_type":
			// Hubble's monitor event type; kept aside for the caller.
			err = s.object(func(k []byte) error {
				if string(k) == "type" {
					n, err := s.int32()
					s.hubbleType = int(n)
					return err
				}
				return s.skip()
			})
		default:
			err = s.skip()
		}
		return err
	})
}

func (s *scanner) tcpHealth(h *flowv1.TCPHealth) error {
	return s.object(func(k []byte) error {
		var err error
		var n uint64
		switch string(k) {
		case "handshake_syn_ack", "handshakeSynAck":
			if h.HandshakeSynAck != nil {
				return errSlow
			}
			h.HandshakeSynAck, err = s.duration()
		case "handshake_ack", "handshakeAck":
			if h.HandshakeAck != nil {
				return errSlow
			}
			h.HandshakeAck, err = s.duration()
		case "retransmits":
			n, err = s.uint(32)
			h.Retransmits = uint32(n)
		case "reset_by", "resetBy":
			var v int32
			v, err = s.enum(flowv1.TCPSide_value)
			h.ResetBy = flowv1.TCPSide(v)
		case "zero_windows", "zeroWindows":
			n, err = s.uint(32)
			h.ZeroWindows = uint32(n)
		default:
			err = s.skip()
		}
		return err
	})
}

// duration reads the form protojson writes: an optional minus, whole
// seconds without leading zeros, up to nine fraction digits, "s" ("3s",
// "0.000400s", "-1.500s"); other forms go to protojson.
func (s *scanner) duration() (*durationpb.Duration, error) {
	b, err := s.rawString()
	if err != nil {
		return nil, err
	}
	secs, nanos, ok := parseDuration(b)
	if !ok {
		return nil, errSlow
	}
	return &durationpb.Duration{Seconds: secs, Nanos: nanos}, nil
}

func parseDuration(b []byte) (secs int64, nanos int32, ok bool) {
	if len(b) < 2 || b[len(b)-1] != 's' {
		return 0, 0, false
	}
	b = b[:len(b)-1]
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		secs = secs*10 + int64(b[i]-'0')
		i++
		if secs > maxDurationSeconds {
			return 0, 0, false
		}
	}
	if i == 0 || i > 1 && b[0] == '0' {
		return 0, 0, false
	}
	if i < len(b) {
		frac := b[i:]
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return 0, 0, false
		}
		var n int32
		for _, c := range frac[1:] {
			if c < '0' || c > '9' {
				return 0, 0, false
			}
			n = n*10 + int32(c-'0')
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nanos = n
	}
	if neg {
		secs, nanos = -secs, -nanos
	}
	return secs, nanos, true
}

// l7 reads a Layer7 (Trawl's, or Hubble's: its HTTP and Kafka records
// are skipped, as protojson discards fields Trawl does not have).
func (s *scanner) l7(l *flowv1.Layer7) error {
	return s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "type":
			var v int32
			v, err = s.enum(flowv1.L7FlowType_value)
			l.Type = flowv1.L7FlowType(v)
		case "latency_ns", "latencyNs":
			l.LatencyNs, err = s.uint(64)
		case "dns":
			if l.Record != nil {
				return errSlow // the member given twice
			}
			d := &flowv1.DNS{}
			l.Record = &flowv1.Layer7_Dns{Dns: d}
			err = s.object(func(k []byte) error {
				var err error
				var n uint64
				switch string(k) {
				case "query":
					d.Query, err = s.unique()
				case "ips":
					err = s.strs(&d.Ips)
				case "ttl":
					n, err = s.uint(32)
					d.Ttl = uint32(n)
				case "cnames":
					err = s.strs(&d.Cnames)
				case "observation_source", "observationSource":
					d.ObservationSource, err = s.str()
				case "rcode":
					n, err = s.uint(32)
					d.Rcode = uint32(n)
				case "qtypes":
					err = s.strs(&d.Qtypes)
				case "rrtypes":
					err = s.strs(&d.Rrtypes)
				default:
					err = s.skip()
				}
				return err
			})
		default:
			err = s.skip()
		}
		return err
	})
}

func (s *scanner) l4(l *flowv1.Layer4) error {
	return s.object(func(key []byte) error {
		if l.Protocol != nil {
			return errSlow // two members of the oneof
		}
		switch string(key) {
		case "TCP":
			t := take(s.sl.size, &s.sl.tcp)
			w := take(s.sl.size, &s.sl.l4tcp)
			w.TCP = t
			l.Protocol = w
			return s.object(func(k []byte) error {
				var err error
				var n uint64
				switch string(k) {
				case "source_port", "sourcePort":
					n, err = s.uint(32)
					t.SourcePort = uint32(n)
				case "destination_port", "destinationPort":
					n, err = s.uint(32)
					t.DestinationPort = uint32(n)
				case "flags":
					t.Flags = take(s.sl.size, &s.sl.flags)
					err = s.tcpFlags(t.Flags)
				default:
					err = s.skip()
				}
				return err
			})
		case "UDP":
			u := &flowv1.UDP{}
			l.Protocol = &flowv1.Layer4_UDP{UDP: u}
			return s.ports(&u.SourcePort, &u.DestinationPort)
		case "SCTP":
			u := &flowv1.SCTP{}
			l.Protocol = &flowv1.Layer4_SCTP{SCTP: u}
			return s.ports(&u.SourcePort, &u.DestinationPort)
		case "ICMPv4":
			c := &flowv1.ICMPv4{}
			l.Protocol = &flowv1.Layer4_ICMPv4{ICMPv4: c}
			return s.typeCode(&c.Type, &c.Code)
		case "ICMPv6":
			c := &flowv1.ICMPv6{}
			l.Protocol = &flowv1.Layer4_ICMPv6{ICMPv6: c}
			return s.typeCode(&c.Type, &c.Code)
		}
		return s.skip()
	})
}

func (s *scanner) ports(src, dst *uint32) error {
	return s.object(func(k []byte) error {
		var err error
		var n uint64
		switch string(k) {
		case "source_port", "sourcePort":
			n, err = s.uint(32)
			*src = uint32(n)
		case "destination_port", "destinationPort":
			n, err = s.uint(32)
			*dst = uint32(n)
		default:
			err = s.skip()
		}
		return err
	})
}

func (s *scanner) typeCode(typ, code *uint32) error {
	return s.object(func(k []byte) error {
		var err error
		var n uint64
		switch string(k) {
		case "type":
			n, err = s.uint(32)
			*typ = uint32(n)
		case "code":
			n, err = s.uint(32)
			*code = uint32(n)
		default:
			err = s.skip()
		}
		return err
	})
}

func (s *scanner) tcpFlags(t *flowv1.TCPFlags) error {
	return s.object(func(k []byte) error {
		var p *bool
		switch string(k) {
		case "FIN":
			p = &t.FIN
		case "SYN":
			p = &t.SYN
		case "RST":
			p = &t.RST
		case "PSH":
			p = &t.PSH
		case "ACK":
			p = &t.ACK
		case "URG":
			p = &t.URG
		case "ECE":
			p = &t.ECE
		case "CWR":
			p = &t.CWR
		case "NS":
			p = &t.NS
		default:
			return s.skip()
		}
		v, err := s.bool()
		*p = v
		return err
	})
}

func (s *scanner) endpoint(e *flowv1.Endpoint) error {
	return s.object(func(k []byte) error {
		var err error
		var n uint64
		switch string(k) {
		case "ID":
			n, err = s.uint(32)
			e.ID = uint32(n)
		case "identity":
			n, err = s.uint(32)
			e.Identity = uint32(n)
		case "cluster_name", "clusterName":
			e.ClusterName, err = s.str()
		case "namespace":
			e.Namespace, err = s.str()
		case "labels":
			err = s.strs(&e.Labels)
		case "pod_name", "podName":
			e.PodName, err = s.str()
		case "workloads":
			err = s.array(func() error {
				w := &flowv1.Workload{}
				e.Workloads = append(e.Workloads, w)
				return s.object(func(k []byte) error {
					var err error
					switch string(k) {
					case "name":
						w.Name, err = s.str()
					case "kind":
						w.Kind, err = s.str()
					default:
						err = s.skip()
					}
					return err
				})
			})
		case "node_name", "nodeName":
			e.NodeName, err = s.str()
		default:
			err = s.skip()
		}
		return err
	})
}

func (s *scanner) service(v *flowv1.Service) error {
	return s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "name":
			v.Name, err = s.str()
		case "namespace":
			v.Namespace, err = s.str()
		default:
			err = s.skip()
		}
		return err
	})
}

func (s *scanner) policies(dst *[]*flowv1.Policy) error {
	return s.array(func() error {
		p := &flowv1.Policy{}
		*dst = append(*dst, p)
		return s.object(func(k []byte) error {
			var err error
			switch string(k) {
			case "name":
				p.Name, err = s.str()
			case "namespace":
				p.Namespace, err = s.str()
			case "labels":
				err = s.strs(&p.Labels)
			case "revision":
				p.Revision, err = s.uint(64)
			case "kind":
				p.Kind, err = s.str()
			default:
				err = s.skip()
			}
			return err
		})
	})
}
