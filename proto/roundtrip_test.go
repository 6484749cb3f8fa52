package proto_test

import (
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// The three packages of the contract; every message in them is checked.
var files = []protoreflect.FileDescriptor{
	flowv1.File_trawl_flow_v1_flow_proto,
	ingestv1.File_trawl_ingest_v1_ingest_proto,
	observerv1.File_trawl_observer_v1_observer_proto,
}

func TestEveryMessageRoundTripsThroughBinaryAndJSON(t *testing.T) {
	n := 0
	for _, fd := range files {
		msgs := fd.Messages()
		for i := 0; i < msgs.Len(); i++ {
			md := msgs.Get(i)
			n++
			t.Run(string(md.FullName()), func(t *testing.T) {
				mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
				if err != nil {
					t.Fatal(err)
				}
				// Each member of a oneof in turn, so every field is exercised.
				for variant := 0; variant < maxOneofLen(md); variant++ {
					msg := mt.New()
					fill(msg, variant, 0)
					checkRoundTrip(t, msg.Interface())
				}
			})
		}
	}
	if n < 30 {
		t.Fatalf("only %d messages found; the contract lost messages?", n)
	}
}

func checkRoundTrip(t *testing.T, msg proto.Message) {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	back := msg.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(b, back); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if !proto.Equal(msg, back) {
		t.Errorf("binary round trip changed the message:\n got %v\nwant %v", back, msg)
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
	if err != nil {
		t.Fatalf("json marshal: %v", err)
	}
	back = msg.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal(js, back); err != nil {
		t.Fatalf("json unmarshal of %s: %v", js, err)
	}
	if !proto.Equal(msg, back) {
		t.Errorf("JSON round trip changed the message:\n got %v\nwant %v\njson %s", back, msg, js)
	}
}

func maxOneofLen(md protoreflect.MessageDescriptor) int {
	n := 1
	for i := 0; i < md.Oneofs().Len(); i++ {
		if l := md.Oneofs().Get(i).Fields().Len(); l > n {
			n = l
		}
	}
	return n
}

// fill sets every field to a non-zero value; of each oneof only the member
// numbered variant (mod its size).
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
					if depth > 2 {
						break
					}
					e := l.NewElement()
					fill(e.Message(), variant, depth+1)
					l.Append(e)
				} else {
					l.Append(scalar(fd, j))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(protoreflect.ValueOfString("k").MapKey(), scalar(fd.MapValue(), 1))
		case fd.Kind() == protoreflect.MessageKind:
			if depth > 2 {
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
			m.Set(fd, scalar(fd, 1))
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor, j int) protoreflect.Value {
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

// The JSON of a flow must read like Hubble's: its field names, not Go's.
func TestFlowJSONUsesHubbleFieldNames(t *testing.T) {
	f := &flowv1.Flow{
		Verdict:        flowv1.Verdict_DROPPED,
		DropReasonDesc: "POLICY_DENIED",
		IP:             &flowv1.IP{Source: "10.0.0.1", Destination: "10.0.0.2", IpVersion: flowv1.IPVersion_IPv4},
		L4: &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{
			SourcePort: 43210, DestinationPort: 5432, Flags: &flowv1.TCPFlags{SYN: true},
		}}},
		Source:           &flowv1.Endpoint{Namespace: "frontend", PodName: "web-1"},
		DropReasonKernel: "NETFILTER_DROP",
		IngressDeniedBy:  []*flowv1.Policy{{Name: "default-deny", Namespace: "databases", Kind: "NetworkPolicy"}},
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&observerv1.GetFlowsResponse{
		ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}, NodeName: "node-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Flow struct {
			Verdict        string `json:"verdict"`
			DropReasonDesc string `json:"drop_reason_desc"`
			IP             struct {
				IPVersion string `json:"ipVersion"`
			} `json:"IP"`
			L4 struct {
				TCP struct {
					DestinationPort int             `json:"destination_port"`
					Flags           map[string]bool `json:"flags"`
				} `json:"TCP"`
			} `json:"l4"`
			Source struct {
				PodName string `json:"pod_name"`
			} `json:"source"`
			IngressDeniedBy []struct {
				Name string `json:"name"`
			} `json:"ingress_denied_by"`
			DropReasonKernel string `json:"drop_reason_kernel"`
		} `json:"flow"`
		NodeName string `json:"node_name"`
	}
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	if got.Flow.Verdict != "DROPPED" || got.Flow.DropReasonDesc != "POLICY_DENIED" ||
		got.Flow.IP.IPVersion != "IPv4" || got.Flow.L4.TCP.DestinationPort != 5432 ||
		!got.Flow.L4.TCP.Flags["SYN"] || got.Flow.Source.PodName != "web-1" ||
		len(got.Flow.IngressDeniedBy) != 1 || got.Flow.DropReasonKernel != "NETFILTER_DROP" ||
		got.NodeName != "node-1" {
		t.Errorf("JSON does not use Hubble's names: %s", js)
	}
}
