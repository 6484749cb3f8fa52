package vtcodec

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The generated unmarshaller does not check that proto3 strings are UTF-8,
// which the protobuf runtime refuses to decode (and to encode again: a bad
// string stored by the relay would fail every history or follow answer that
// carries it). checkUTF8 walks the wire form once with the message's schema
// and checks exactly the string fields, as the runtime does.

// shape is what checkUTF8 needs of a message: which fields are strings and
// which are messages. Low field numbers index slices; the rare high ones
// (Hubble-compatible numbers such as 21001) sit in maps.
type shape struct {
	// strings: the message has a string field, itself or below. Messages
	// without (timestamps, flags, counters) are skipped unread.
	strings bool
	str     []bool
	msg     []*shape
	hiStr   map[protowire.Number]bool
	hiMsg   map[protowire.Number]*shape
}

const lowFields = 256

var shapes sync.Map // protoreflect.FullName → *shape

func shapeOf(md protoreflect.MessageDescriptor) *shape {
	if s, ok := shapes.Load(md.FullName()); ok {
		return s.(*shape)
	}
	building := map[protoreflect.FullName]*shape{}
	s := build(md, building)
	for _, b := range building {
		b.strings = hasStrings(b, map[*shape]bool{})
	}
	for name, b := range building {
		shapes.LoadOrStore(name, b)
	}
	return s
}

func build(md protoreflect.MessageDescriptor, building map[protoreflect.FullName]*shape) *shape {
	if s, ok := building[md.FullName()]; ok {
		return s // recursive message: filled in by the outer call
	}
	s := &shape{str: make([]bool, lowFields), msg: make([]*shape, lowFields), hiStr: map[protowire.Number]bool{}, hiMsg: map[protowire.Number]*shape{}}
	building[md.FullName()] = s
	fields := md.Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		n := f.Number()
		switch f.Kind() {
		case protoreflect.StringKind:
			if n < lowFields {
				s.str[n] = true
			} else {
				s.hiStr[n] = true
			}
		case protoreflect.MessageKind, protoreflect.GroupKind:
			sub := build(f.Message(), building) // map entries too: their key and value are fields
			if n < lowFields {
				s.msg[n] = sub
			} else {
				s.hiMsg[n] = sub
			}
		}
	}
	return s
}

func hasStrings(s *shape, seen map[*shape]bool) bool {
	if seen[s] {
		return false // a cycle: its other fields decide
	}
	seen[s] = true
	if slices.Contains(s.str, true) || len(s.hiStr) > 0 {
		return true
	}
	for _, m := range s.msg {
		if m != nil && hasStrings(m, seen) {
			return true
		}
	}
	for _, m := range s.hiMsg {
		if hasStrings(m, seen) {
			return true
		}
	}
	return false
}

func (s *shape) kind(n protowire.Number) (str bool, msg *shape) {
	if n < lowFields {
		return s.str[n], s.msg[n]
	}
	return s.hiStr[n], s.hiMsg[n]
}

var errInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// checkUTF8 reports the first string field of b (a message of shape s) that
// is not valid UTF-8. b was already decoded successfully, so it is well formed.
func checkUTF8(s *shape, b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		str, msg := s.kind(num)
		switch {
		case str && !utf8.Valid(v):
			return fmt.Errorf("field %d: %w", num, errInvalidUTF8)
		case msg != nil && msg.strings:
			if err := checkUTF8(msg, v); err != nil {
				return err
			}
		}
	}
	return nil
}
