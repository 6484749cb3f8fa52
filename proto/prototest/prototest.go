// Package prototest fills protobuf messages through reflection, so tests
// over "every field" follow the contract by themselves: a field added to a
// .proto file is set by Fill and checked by every test that uses it, with no
// hand-written record to update.
package prototest

import (
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxDepth bounds the nesting Fill descends into, for recursive messages.
// Fields of messages nested deeper stay unset; Fields and Set let a test
// check that nothing it means to cover was left out.
const maxDepth = 3

// Fill sets every field of m to a non-zero value (lists get two elements,
// maps one entry); of each oneof only the member numbered variant (mod its
// size). Timestamps are now, durations 1.5 s.
func Fill(m protoreflect.Message, variant int) { fill(m, variant, 0) }

// Variants is how many variants Fill needs so that every member of every
// oneof of md, and of the messages it contains, is set in one of them: the
// size of the largest oneof.
func Variants(md protoreflect.MessageDescriptor) int {
	n := 1
	walk(md, map[protoreflect.FullName]bool{}, func(md protoreflect.MessageDescriptor) {
		for i := 0; i < md.Oneofs().Len(); i++ {
			if od := md.Oneofs().Get(i); !od.IsSynthetic() && od.Fields().Len() > n {
				n = od.Fields().Len()
			}
		}
	})
	return n
}

// Fields lists every field of md and of the messages it contains, by full
// name (Timestamp and Duration count as values, not messages).
func Fields(md protoreflect.MessageDescriptor) map[protoreflect.FullName]bool {
	all := map[protoreflect.FullName]bool{}
	walk(md, map[protoreflect.FullName]bool{}, func(md protoreflect.MessageDescriptor) {
		for i := 0; i < md.Fields().Len(); i++ {
			all[md.Fields().Get(i).FullName()] = true
		}
	})
	return all
}

// Set adds to seen the full name of every field set in m and in the
// messages it contains.
func Set(m protoreflect.Message, seen map[protoreflect.FullName]bool) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		seen[fd.FullName()] = true
		if fd.Kind() != protoreflect.MessageKind || wellKnown(fd.Message()) {
			return true
		}
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				Set(v.List().Get(i).Message(), seen)
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
					Set(v.Message(), seen)
					return true
				})
			}
		default:
			Set(v.Message(), seen)
		}
		return true
	})
}

func wellKnown(md protoreflect.MessageDescriptor) bool {
	switch md.FullName() {
	case "google.protobuf.Timestamp", "google.protobuf.Duration":
		return true
	}
	return false
}

// walk calls f once for md and every message type reachable from it.
func walk(md protoreflect.MessageDescriptor, done map[protoreflect.FullName]bool, f func(protoreflect.MessageDescriptor)) {
	if done[md.FullName()] || wellKnown(md) {
		return
	}
	done[md.FullName()] = true
	f(md)
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if fd.Kind() == protoreflect.MessageKind {
			walk(fd.Message(), done, f)
		}
	}
}

func fill(m protoreflect.Message, variant, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if od.Fields().Get(variant%od.Fields().Len()) != fd {
				continue
			}
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for j := 0; j < 2; j++ {
				if fd.Kind() == protoreflect.MessageKind {
					if depth >= maxDepth {
						break
					}
					e := l.NewElement()
					fill(e.Message(), variant, depth+1)
					l.Append(e)
				} else {
					l.Append(Scalar(fd, j))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(protoreflect.ValueOfString("k").MapKey(), Scalar(fd.MapValue(), 1))
		case fd.Kind() == protoreflect.MessageKind:
			if depth >= maxDepth {
				continue
			}
			if fd.Message().FullName() == "google.protobuf.Timestamp" {
				m.Set(fd, protoreflect.ValueOfMessage(timestamppb.Now().ProtoReflect()))
				continue
			}
			if fd.Message().FullName() == "google.protobuf.Duration" {
				m.Set(fd, protoreflect.ValueOfMessage(durationpb.New(1500*time.Millisecond).ProtoReflect()))
				continue
			}
			fill(m.Mutable(fd).Message(), variant, depth+1)
		default:
			m.Set(fd, Scalar(fd, 1))
		}
	}
}

// Scalar is the value Fill gives a field of a scalar or enum kind; j
// (0, 1) tells the two elements of a list apart.
func Scalar(fd protoreflect.FieldDescriptor, j int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("v" + string(rune('a'+j)))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{byte(j + 1)})
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get((j + 1) % vals.Len()).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(-7 - j))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(-1) << 40)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(4000000000 + j))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(1)<<63 + uint64(j))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(0.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(0.95)
	}
	panic("unhandled kind " + fd.Kind().String())
}
