package jsonl

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/proto/prototest"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Every field of every record kind, found through reflection, survives
// Append and Unmarshal, and the codec reads and writes what protojson does:
// a field added to the contract that the hand-written codec forgets fails
// here instead of vanishing from -o json and --input-file.
func TestEveryFieldOfEveryRecordKindRoundTrips(t *testing.T) {
	resp := (&observerv1.GetFlowsResponse{}).ProtoReflect()
	kinds := resp.Descriptor().Oneofs().ByName("response_types").Fields()
	if kinds.Len() < 4 {
		t.Fatalf("%d record kinds; the envelope lost some?", kinds.Len())
	}
	for i := range kinds.Len() {
		kind := kinds.Get(i)
		t.Run(string(kind.Name()), func(t *testing.T) {
			seen := map[protoreflect.FullName]bool{}
			for variant := range prototest.Variants(kind.Message()) {
				r := &observerv1.GetFlowsResponse{NodeName: "node-1", Time: timestamppb.Now()}
				m := r.ProtoReflect()
				prototest.Fill(m.Mutable(kind).Message(), variant)
				prototest.Set(m.Get(kind).Message(), seen)
				checkCodec(t, r)
			}
			for name := range prototest.Fields(kind.Message()) {
				if !seen[name] {
					t.Errorf("%s is never set: the test does not cover it", name)
				}
			}
		})
	}
}

func checkCodec(t *testing.T, r *observerv1.GetFlowsResponse) {
	t.Helper()
	line, err := Append(nil, r)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	got, err := Unmarshal(line)
	if err != nil {
		t.Fatalf("Unmarshal of Append's line: %v\n%s", err, line)
	}
	if !proto.Equal(got.GetFlowsResponse, r) {
		t.Fatalf("Append then Unmarshal changed the record:\n got %v\nwant %v\nline %s", got.GetFlowsResponse, r, line)
	}
	if want := protojsonCompact(t, r); string(line) != want {
		t.Errorf("Append writes\n%s\nprotojson writes\n%s", line, want)
	}
	back := &observerv1.GetFlowsResponse{}
	if err := protojson.Unmarshal(line, back); err != nil || !proto.Equal(back, r) {
		t.Errorf("protojson reads Append's line as %v (%v), want %v", back, err, r)
	}
	for _, opts := range []protojson.MarshalOptions{{UseProtoNames: true}, {}} {
		js, err := opts.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Unmarshal(js)
		if err != nil {
			t.Fatalf("Unmarshal of protojson's line: %v\n%s", err, js)
		}
		if !proto.Equal(got.GetFlowsResponse, r) {
			t.Errorf("Unmarshal of protojson's line changed the record:\n got %v\nwant %v\nline %s", got.GetFlowsResponse, r, js)
		}
	}
}
