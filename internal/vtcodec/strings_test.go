package vtcodec

import (
	"bytes"
	"testing"

	"unsafe"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/trawl-dev/trawl/proto/prototest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

// batchRequests are StreamRequests carrying batches with every field of
// the schema set in at least one of them: every variant of a Batch, and of
// a Flow and a ConntrackSample on their own (Fill stops at a depth, so a
// flow inside a batch is not filled to its deepest fields).
func batchRequests() []*ingestv1.StreamRequest {
	var out []*ingestv1.StreamRequest
	wrap := func(b *ingestv1.Batch) {
		out = append(out, &ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Batch{Batch: b}})
	}
	for v := range prototest.Variants((&ingestv1.Batch{}).ProtoReflect().Descriptor()) {
		b := &ingestv1.Batch{}
		prototest.Fill(b.ProtoReflect(), v)
		wrap(b)
		f := &flowv1.Flow{}
		prototest.Fill(f.ProtoReflect(), v)
		c := &flowv1.ConntrackSample{}
		prototest.Fill(c.ProtoReflect(), v)
		wrap(&ingestv1.Batch{NodeName: "n", Flows: []*flowv1.Flow{f}, Conntrack: []*flowv1.ConntrackSample{c}})
	}
	return out
}

// Every string of a decoded batch is owned, not the receive buffer's: the
// buffer is overwritten after decoding and the batch must not change. A
// string field the owner's walk forgets (one added to the schema later,
// say) fails here, as does a field this test's input leaves unset.
func TestNoDecodedStringAliasesTheReceiveBuffer(t *testing.T) {
	reqs := batchRequests()
	set := map[protoreflect.FullName]bool{}
	for _, r := range reqs {
		prototest.Set(r.ProtoReflect(), set)
	}
	for name := range prototest.Fields((&ingestv1.Batch{}).ProtoReflect().Descriptor()) {
		if !set[name] {
			t.Errorf("no input sets %s: the test would not notice if it aliased the buffer", name)
		}
	}
	tbl := NewStrings(0)
	for round := range 2 { // the second round finds its strings in the table
		for i, want := range reqs {
			wire, err := proto.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			buf := bytes.Clone(wire)
			got := &ingestv1.StreamRequest{}
			if err := unmarshalRequest(&Request{Msg: got, Strings: tbl}, buf); err != nil {
				t.Fatalf("round %d, request %d: %v", round, i, err)
			}
			for j := range buf {
				buf[j] = 'X'
			}
			if !proto.Equal(got, want) {
				t.Errorf("round %d, request %d: after the buffer was overwritten the batch reads\n%v\nwant\n%v", round, i, got, want)
			}
		}
	}
}

// Hellos and heartbeats through a Request decode as through the codec's
// plain path, and leave the stream's table alone.
func TestARequestCarriesHellosAndHeartbeatsToo(t *testing.T) {
	for _, want := range []*ingestv1.StreamRequest{
		{Msg: &ingestv1.StreamRequest_Hello{Hello: &ingestv1.Hello{NodeName: "node-a", BootId: "b", Features: []*flowv1.KernelFeature{{Name: "tcx", Enabled: true}}}}},
		{Msg: &ingestv1.StreamRequest_Heartbeat{Heartbeat: &ingestv1.Heartbeat{AgentVersion: "v1", Counters: map[string]uint64{"sent": 3}}}},
	} {
		wire, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		buf := bytes.Clone(wire)
		tbl := NewStrings(0)
		got := &ingestv1.StreamRequest{}
		if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(buf)}, &Request{Msg: got, Strings: tbl}); err != nil {
			t.Fatal(err)
		}
		for j := range buf {
			buf[j] = 'X'
		}
		if !proto.Equal(got, want) {
			t.Errorf("decoded %v, want %v", got, want)
		}
		if tbl.Len() != 0 {
			t.Errorf("the table holds %d strings after a %T; want 0", tbl.Len(), want.GetMsg())
		}
	}
}

// Records of one stream share their repeated strings, and the table never
// grows beyond its bound however many distinct strings pass.
func TestTheStringTableSharesRepeatsAndStaysBounded(t *testing.T) {
	tbl := NewStrings(8)
	decode := func(ns string) *ingestv1.Batch {
		t.Helper()
		wire, err := proto.Marshal(&ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Batch{Batch: &ingestv1.Batch{
			NodeName: "node-a", Flows: []*flowv1.Flow{{Source: &flowv1.Endpoint{Namespace: ns}}, {Source: &flowv1.Endpoint{Namespace: ns}}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		got := &ingestv1.StreamRequest{}
		if err := unmarshalRequest(&Request{Msg: got, Strings: tbl}, wire); err != nil {
			t.Fatal(err)
		}
		return got.GetBatch()
	}
	b := decode("team-a")
	a0, a1 := b.Flows[0].Source.Namespace, b.Flows[1].Source.Namespace
	if a0 != "team-a" || a1 != "team-a" {
		t.Fatalf("decoded %q and %q, want team-a", a0, a1)
	}
	if unsafeData(a0) != unsafeData(a1) {
		t.Error("two records of one stream hold separate copies of the same namespace")
	}
	for i := range 100 {
		decode(string(rune('a'+i%26)) + "-" + string(rune('a'+i/26)))
		if tbl.Len() > 8 {
			t.Fatalf("the table holds %d strings, beyond its bound of 8", tbl.Len())
		}
	}
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }
