package proto_test

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/trawl-dev/trawl/proto/prototest"
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
				for variant := range prototest.Variants(md) {
					msg := mt.New()
					prototest.Fill(msg, variant)
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
