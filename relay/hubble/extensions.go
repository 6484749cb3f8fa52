package hubble

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
)

// The flow's extensions are a google.protobuf.Struct whose keys are the
// proto names of the Trawl Flow fields Hubble's flow.Flow has no field of
// that name for (event_kind, first_seen, last_seen, packets, bytes,
// drop_reason_kernel, netns, observation_point, conntrack, drop_class; a
// field added to Trawl's Flow appears here without a change) plus
// source_node_name and destination_node_name. Enums are their
// names, timestamps RFC 3339 strings with nanoseconds, numbers JSON
// numbers, messages nested structs.
const structTypeURL = "type.googleapis.com/google.protobuf.Struct"

// Keys of the extensions that are not Flow fields.
const (
	extSourceNode      = "source_node_name"
	extDestinationNode = "destination_node_name"
)

var extFields = func() []protoreflect.FieldDescriptor {
	fds := (&flowv1.Flow{}).ProtoReflect().Descriptor().Fields()
	hubble := (&flowpb.Flow{}).ProtoReflect().Descriptor().Fields()
	var out []protoreflect.FieldDescriptor
	for i := range fds.Len() {
		if fd := fds.Get(i); hubble.ByName(fd.Name()) == nil {
			out = append(out, fd)
		}
	}
	return out
}()

func isExtField(fd protoreflect.FieldDescriptor) bool {
	for _, e := range extFields {
		if e == fd {
			return true
		}
	}
	return false
}

// Wire numbers of google.protobuf.Struct, Value and ListValue.
const (
	structFields = 1 // Struct.fields (map entries: key 1, value 2)
	valueNumber  = 2
	valueString  = 3
	valueBool    = 4
	valueStruct  = 5
	valueList    = 6
	listValues   = 1
)

// knownExt are the extension fields appendExtensions writes directly;
// reflection handles the others (fields added to Trawl's Flow later).
var knownExt = map[protoreflect.Name]bool{
	"event_kind": true, "first_seen": true, "last_seen": true, "packets": true, "bytes": true,
	"drop_reason_kernel": true, "netns": true, "observation_point": true, "conntrack": true, "drop_class": true,
}

var otherExt = func() []protoreflect.FieldDescriptor {
	var out []protoreflect.FieldDescriptor
	for _, fd := range extFields {
		if !knownExt[fd.Name()] {
			out = append(out, fd)
		}
	}
	return out
}()

const numberValueSize = 1 + 8 // tag and fixed64

// appendExtensions appends the Struct of f's Trawl-only fields to b; it
// sizes everything first, so the result is allocated once.
func appendExtensions(b []byte, f *flowv1.Flow) []byte {
	kind := ""
	if k := f.GetEventKind(); k != flowv1.EventKind_EVENT_KIND_UNSPECIFIED {
		kind = enumName(eventKindField, protoreflect.EnumNumber(k))
	}
	strs := [...]struct{ key, v string }{
		{"event_kind", kind},
		{"drop_reason_kernel", f.GetDropReasonKernel()},
		{"observation_point", f.GetObservationPoint()},
		{"drop_class", f.GetDropClass()},
		{extSourceNode, f.GetSource().GetNodeName()},
		{extDestinationNode, f.GetDestination().GetNodeName()},
	}
	nums := [...]struct {
		key string
		v   uint64
	}{{"packets", f.GetPackets()}, {"bytes", f.GetBytes()}, {"netns", f.GetNetns()}}
	times := [...]struct {
		key string
		v   *timestamppb.Timestamp
	}{{"first_seen", f.GetFirstSeen()}, {"last_seen", f.GetLastSeen()}}
	ct := f.GetConntrack()
	ctSize := 0
	if ct != nil && ct.GetNewEntry() {
		ctSize = entrySize("new_entry", boolValueSize)
	}

	n := 0
	for _, s := range strs {
		if s.v != "" {
			n += entrySize(s.key, stringValueSize(s.v))
		}
	}
	for _, x := range nums {
		if x.v != 0 {
			n += entrySize(x.key, numberValueSize)
		}
	}
	for _, x := range times {
		if x.v != nil {
			n += entrySize(x.key, timeValueSize(x.v))
		}
	}
	if ct != nil {
		n += entrySize("conntrack", protowire.SizeTag(valueStruct)+protowire.SizeBytes(ctSize))
	}
	var m protoreflect.Message
	if len(otherExt) > 0 {
		m = f.ProtoReflect()
		n += messageStructSize(m, otherExt)
	}
	if n == 0 {
		return b
	}
	if b == nil {
		b = make([]byte, 0, n)
	}
	for _, s := range strs {
		if s.v != "" {
			b = appendEntryHead(b, s.key, stringValueSize(s.v))
			b = appendStringValue(b, s.v)
		}
	}
	for _, x := range nums {
		if x.v != 0 {
			b = appendEntryHead(b, x.key, numberValueSize)
			b = protowire.AppendTag(b, valueNumber, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(float64(x.v)))
		}
	}
	for _, x := range times {
		if x.v != nil {
			b = appendEntryHead(b, x.key, timeValueSize(x.v))
			b = appendTimeValue(b, x.v)
		}
	}
	if ct != nil {
		b = appendEntryHead(b, "conntrack", protowire.SizeTag(valueStruct)+protowire.SizeBytes(ctSize))
		b = protowire.AppendTag(b, valueStruct, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(ctSize))
		if ctSize > 0 {
			b = appendEntryHead(b, "new_entry", boolValueSize)
			b = protowire.AppendTag(b, valueBool, protowire.VarintType)
			b = protowire.AppendVarint(b, 1)
		}
	}
	if m != nil {
		b = appendMessageStruct(b, m, otherExt)
	}
	return b
}

var eventKindField = (&flowv1.Flow{}).ProtoReflect().Descriptor().Fields().ByName("event_kind")

var boolValueSize = protowire.SizeTag(valueBool) + 1

// timeLen is the length of a timestamp as appendTime writes it.
const timeLen = len("2006-01-02T15:04:05.000000000Z")

func timeValueSize(ts *timestamppb.Timestamp) int {
	return protowire.SizeTag(valueString) + protowire.SizeBytes(timeStringLen(ts))
}

func timeStringLen(ts *timestamppb.Timestamp) int {
	if y := ts.AsTime().Year(); y >= 0 && y <= 9999 {
		return timeLen
	}
	return len(ts.AsTime().UTC().AppendFormat(nil, tsLayout))
}

func appendTimeValue(b []byte, ts *timestamppb.Timestamp) []byte {
	b = protowire.AppendTag(b, valueString, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(timeStringLen(ts)))
	return appendTime(b, ts)
}

// appendTime writes ts as RFC 3339 in UTC with nine fractional digits
// (what time.Format(tsLayout) writes, several times faster).
func appendTime(b []byte, ts *timestamppb.Timestamp) []byte {
	t := ts.AsTime()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(b, tsLayout)
	}
	h, mi, s := t.Clock()
	digits := func(b []byte, v, n int) []byte {
		var buf [9]byte
		for i := n - 1; i >= 0; i-- {
			buf[i] = byte('0' + v%10)
			v /= 10
		}
		return append(b, buf[:n]...)
	}
	b = digits(b, y, 4)
	b = append(b, '-')
	b = digits(b, int(mo), 2)
	b = append(b, '-')
	b = digits(b, d, 2)
	b = append(b, 'T')
	b = digits(b, h, 2)
	b = append(b, ':')
	b = digits(b, mi, 2)
	b = append(b, ':')
	b = digits(b, s, 2)
	b = append(b, '.')
	b = digits(b, t.Nanosecond(), 9)
	return append(b, 'Z')
}

func entrySize(key string, valueSize int) int {
	inner := protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(valueSize)
	return protowire.SizeTag(structFields) + protowire.SizeBytes(inner)
}

func appendEntryHead(b []byte, key string, valueSize int) []byte {
	inner := protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(valueSize)
	b = protowire.AppendTag(b, structFields, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(valueSize))
}

// fieldsOf lists the fields of a message descriptor, in declaration order.
func fieldsOf(m protoreflect.Message) []protoreflect.FieldDescriptor {
	fds := m.Descriptor().Fields()
	out := make([]protoreflect.FieldDescriptor, fds.Len())
	for i := range out {
		out[i] = fds.Get(i)
	}
	return out
}

// messageStructSize is the size of the Struct entries of m's set fields
// among fds (the Struct's body, without an outer tag).
func messageStructSize(m protoreflect.Message, fds []protoreflect.FieldDescriptor) int {
	n := 0
	for _, fd := range fds {
		if fd.IsMap() || !m.Has(fd) {
			continue
		}
		n += entrySize(string(fd.Name()), fieldValueSize(fd, m.Get(fd)))
	}
	return n
}

func appendMessageStruct(b []byte, m protoreflect.Message, fds []protoreflect.FieldDescriptor) []byte {
	for _, fd := range fds {
		if fd.IsMap() || !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		b = appendEntryHead(b, string(fd.Name()), fieldValueSize(fd, v))
		b = appendFieldValue(b, fd, v)
	}
	return b
}

// fieldValueSize is the size of the google.protobuf.Value of a field.
func fieldValueSize(fd protoreflect.FieldDescriptor, v protoreflect.Value) int {
	if !fd.IsList() {
		return scalarValueSize(fd, v)
	}
	l := v.List()
	inner := 0
	for i := range l.Len() {
		inner += protowire.SizeTag(listValues) + protowire.SizeBytes(scalarValueSize(fd, l.Get(i)))
	}
	return protowire.SizeTag(valueList) + protowire.SizeBytes(inner)
}

func appendFieldValue(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) []byte {
	if !fd.IsList() {
		return appendScalarValue(b, fd, v)
	}
	l := v.List()
	inner := 0
	for i := range l.Len() {
		inner += protowire.SizeTag(listValues) + protowire.SizeBytes(scalarValueSize(fd, l.Get(i)))
	}
	b = protowire.AppendTag(b, valueList, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	for i := range l.Len() {
		e := l.Get(i)
		b = protowire.AppendTag(b, listValues, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(scalarValueSize(fd, e)))
		b = appendScalarValue(b, fd, e)
	}
	return b
}

const tsLayout = "2006-01-02T15:04:05.000000000Z07:00"

// appendTimestamp renders a timestamp as RFC 3339 in UTC with nanoseconds.
func appendTimestamp(b []byte, m protoreflect.Message) []byte {
	ts, ok := m.Interface().(*timestamppb.Timestamp)
	if !ok {
		return b
	}
	return appendTime(b, ts)
}

func timestampLen(m protoreflect.Message) int {
	ts, ok := m.Interface().(*timestamppb.Timestamp)
	if !ok {
		return 0
	}
	return timeStringLen(ts)
}

// messageKind tells how a message-typed value is rendered.
func messageKind(m protoreflect.Message) string {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp":
		return "timestamp"
	case "google.protobuf.Duration":
		return "duration"
	case "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.Int32Value",
		"google.protobuf.UInt32Value", "google.protobuf.Int64Value", "google.protobuf.UInt64Value",
		"google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		return "wrapper"
	}
	return "struct"
}

func durationString(m protoreflect.Message) string {
	if d, ok := m.Interface().(*durationpb.Duration); ok {
		return strconv.FormatFloat(d.AsDuration().Seconds(), 'f', -1, 64) + "s"
	}
	return ""
}

func stringValueSize(s string) int {
	return protowire.SizeTag(valueString) + protowire.SizeBytes(len(s))
}

func appendStringValue(b []byte, s string) []byte {
	b = protowire.AppendTag(b, valueString, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func scalarValueSize(fd protoreflect.FieldDescriptor, v protoreflect.Value) int {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return stringValueSize(v.String())
	case protoreflect.BytesKind:
		return stringValueSize(base64.StdEncoding.EncodeToString(v.Bytes()))
	case protoreflect.EnumKind:
		return stringValueSize(enumName(fd, v.Enum()))
	case protoreflect.BoolKind:
		return protowire.SizeTag(valueBool) + protowire.SizeVarint(1)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		m := v.Message()
		switch messageKind(m) {
		case "timestamp":
			n := timestampLen(m)
			return protowire.SizeTag(valueString) + protowire.SizeBytes(n)
		case "duration":
			return stringValueSize(durationString(m))
		case "wrapper":
			vfd := m.Descriptor().Fields().ByNumber(1)
			return scalarValueSize(vfd, m.Get(vfd))
		}
		return protowire.SizeTag(valueStruct) + protowire.SizeBytes(messageStructSize(m, fieldsOf(m)))
	}
	return protowire.SizeTag(valueNumber) + protowire.SizeFixed64()
}

func appendScalarValue(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) []byte {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return appendStringValue(b, v.String())
	case protoreflect.BytesKind:
		return appendStringValue(b, base64.StdEncoding.EncodeToString(v.Bytes()))
	case protoreflect.EnumKind:
		return appendStringValue(b, enumName(fd, v.Enum()))
	case protoreflect.BoolKind:
		b = protowire.AppendTag(b, valueBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.Bool()))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		m := v.Message()
		switch messageKind(m) {
		case "timestamp":
			b = protowire.AppendTag(b, valueString, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(timestampLen(m)))
			return appendTimestamp(b, m)
		case "duration":
			return appendStringValue(b, durationString(m))
		case "wrapper":
			vfd := m.Descriptor().Fields().ByNumber(1)
			return appendScalarValue(b, vfd, m.Get(vfd))
		}
		fds := fieldsOf(m)
		b = protowire.AppendTag(b, valueStruct, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(messageStructSize(m, fds)))
		return appendMessageStruct(b, m, fds)
	}
	var x float64
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		x = float64(v.Int())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		x = float64(v.Uint())
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		x = v.Float()
	}
	b = protowire.AppendTag(b, valueNumber, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(x))
}

func enumName(fd protoreflect.FieldDescriptor, n protoreflect.EnumNumber) string {
	if ev := fd.Enum().Values().ByNumber(n); ev != nil {
		return string(ev.Name())
	}
	return strconv.Itoa(int(n))
}

// decodeExtensions sets f's Trawl-only fields from a flow's extensions as
// appendExtensions wrote them (unknown keys are ignored: other emitters
// may put their own there).
func decodeExtensions(a *anypb.Any, f *flowv1.Flow) error {
	if a == nil || a.GetTypeUrl() != structTypeURL {
		return nil
	}
	var s structpb.Struct
	if err := proto.Unmarshal(a.GetValue(), &s); err != nil {
		return fmt.Errorf("extensions: %w", err)
	}
	m := f.ProtoReflect()
	for key, v := range s.GetFields() {
		switch key {
		case extSourceNode:
			if f.Source == nil {
				f.Source = &flowv1.Endpoint{}
			}
			f.Source.NodeName = v.GetStringValue()
			continue
		case extDestinationNode:
			if f.Destination == nil {
				f.Destination = &flowv1.Endpoint{}
			}
			f.Destination.NodeName = v.GetStringValue()
			continue
		}
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(key))
		if fd == nil || !isExtField(fd) {
			continue
		}
		if err := setFromValue(m, fd, v); err != nil {
			return fmt.Errorf("extensions: %s: %w", key, err)
		}
	}
	return nil
}

func setFromValue(m protoreflect.Message, fd protoreflect.FieldDescriptor, v *structpb.Value) error {
	if fd.IsMap() {
		return nil
	}
	if fd.IsList() {
		l := m.Mutable(fd).List()
		for _, e := range v.GetListValue().GetValues() {
			x, err := scalarFromValue(m, fd, e)
			if err != nil {
				return err
			}
			l.Append(x)
		}
		return nil
	}
	x, err := scalarFromValue(m, fd, v)
	if err != nil {
		return err
	}
	m.Set(fd, x)
	return nil
}

func scalarFromValue(parent protoreflect.Message, fd protoreflect.FieldDescriptor, v *structpb.Value) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(v.GetStringValue()), nil
	case protoreflect.BytesKind:
		b, err := base64.StdEncoding.DecodeString(v.GetStringValue())
		return protoreflect.ValueOfBytes(b), err
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByName(protoreflect.Name(v.GetStringValue())); ev != nil {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		n, err := strconv.Atoi(v.GetStringValue())
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), err
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(v.GetBoolValue()), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		var sub protoreflect.Message
		if fd.IsList() {
			sub = parent.Mutable(fd).List().NewElement().Message()
		} else {
			sub = parent.NewField(fd).Message()
		}
		switch messageKind(sub) {
		case "timestamp":
			t, err := time.Parse(time.RFC3339Nano, v.GetStringValue())
			if err != nil {
				return protoreflect.Value{}, err
			}
			return protoreflect.ValueOfMessage(timestamppb.New(t).ProtoReflect()), nil
		case "duration":
			d, err := time.ParseDuration(v.GetStringValue())
			if err != nil {
				return protoreflect.Value{}, err
			}
			return protoreflect.ValueOfMessage(durationpb.New(d).ProtoReflect()), nil
		case "wrapper":
			vfd := sub.Descriptor().Fields().ByNumber(1)
			x, err := scalarFromValue(sub, vfd, v)
			if err != nil {
				return protoreflect.Value{}, err
			}
			sub.Set(vfd, x)
			return protoreflect.ValueOfMessage(sub), nil
		}
		for key, fv := range v.GetStructValue().GetFields() {
			sfd := sub.Descriptor().Fields().ByName(protoreflect.Name(key))
			if sfd == nil {
				continue
			}
			if err := setFromValue(sub, sfd, fv); err != nil {
				return protoreflect.Value{}, err
			}
		}
		return protoreflect.ValueOfMessage(sub), nil
	}
	x := v.GetNumberValue()
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(x)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(x)), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(x)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(x)), nil
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(x)), nil
	}
	return protoreflect.ValueOfFloat64(x), nil
}
