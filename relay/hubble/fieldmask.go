package hubble

import (
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// fieldMask is a GetFlows field mask as a tree of flow.Flow field names: a
// nil subtree keeps the whole field. `hubble observe` sends one by default
// (the fields its compact output prints).
type fieldMask map[string]fieldMask

// newFieldMask validates fm against flow.Flow; nil means no mask.
func newFieldMask(fm *fieldmaskpb.FieldMask) (fieldMask, error) {
	if len(fm.GetPaths()) == 0 {
		return nil, nil
	}
	if !fm.IsValid(&flowpb.Flow{}) {
		return nil, status.Errorf(codes.InvalidArgument, "field_mask: %v names a field flow.Flow does not have", fm.GetPaths())
	}
	m := fieldMask{}
	for _, p := range fm.GetPaths() {
		m.add(p)
	}
	return m, nil
}

func (m fieldMask) add(path string) {
	head, rest, more := strings.Cut(path, ".")
	sub, seen := m[head]
	if seen && sub == nil {
		return // the whole field is kept already
	}
	if !more {
		m[head] = nil
		return
	}
	if sub == nil {
		sub = fieldMask{}
		m[head] = sub
	}
	sub.add(rest)
}

// prune clears every field of msg the mask does not keep. A message field
// kept in part is replaced by a pruned copy: translated flows share parts
// (timestamps, the emitter) with Trawl's records and with each other.
func (m fieldMask) prune(msg protoreflect.Message) {
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		sub, keep := m[string(fd.Name())]
		switch {
		case !keep:
			msg.Clear(fd)
		case sub != nil && fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
			c := proto.Clone(v.Message().Interface()).ProtoReflect()
			sub.prune(c)
			msg.Set(fd, protoreflect.ValueOfMessage(c))
		}
		return true
	})
}
