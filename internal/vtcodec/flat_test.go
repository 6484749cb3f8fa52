package vtcodec

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/dev/benchdata"
	"github.com/trawl-dev/trawl/proto/prototest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

// flowWire is a flow's wire form with extra raw fields appended (shapes
// the Go messages cannot make: repeats, unknown fields).
func flowWire(t *testing.T, f *flowv1.Flow, extra ...[]byte) []byte {
	t.Helper()
	b, err := proto.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range extra {
		b = append(b, e...)
	}
	return b
}

// field is one length-delimited field in wire form.
func field(n protowire.Number, m proto.Message) []byte {
	v, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, n, protowire.BytesType), v)
}

// batchWire is a StreamRequest carrying a batch of the given flows' wire
// forms.
func batchWire(flows ...[]byte) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, "node-a")
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	for _, f := range flows {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, f)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), b)
}

// A batch decoded through the slabs is the batch the protobuf runtime
// decodes, whatever its flows hold; flows the flat decoder does not take
// are decoded by the generated unmarshaller in their place. flat says which
// flows the test expects the flat decoder to take, so that a decoder that
// gives up on everything fails here too.
func TestFlatDecodingEqualsTheGeneratedUnmarshaller(t *testing.T) {
	filled := func(v int) *flowv1.Flow {
		f := &flowv1.Flow{}
		prototest.Fill(f.ProtoReflect(), v)
		f.L7 = nil // the one field left to the generated unmarshaller
		return f
	}
	var dataSet [][]byte
	for _, f := range benchdata.Generate(500, time.Now())[0].Flows {
		dataSet = append(dataSet, flowWire(t, f))
	}
	var variants [][]byte
	for v := range prototest.Variants((&flowv1.Flow{}).ProtoReflect().Descriptor()) {
		variants = append(variants, flowWire(t, filled(v)))
	}
	withDNS := &flowv1.Flow{Uuid: "x", L7: &flowv1.Layer7{Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{Query: "a.example."}}}}
	src := &flowv1.Endpoint{Namespace: "a", Labels: []string{"k8s:app=a"}}
	tests := []struct {
		name  string
		flows [][]byte
		flat  []bool
	}{
		{"the bench-relay data set is decoded flat", dataSet, nil},
		{"flows with every field but L7 are decoded flat", variants, nil},
		{"a flow with L7 is left to the generated unmarshaller, in its place", [][]byte{dataSet[0], flowWire(t, withDNS), dataSet[1]}, []bool{true, false, true}},
		{"a message field given twice is merged by the generated unmarshaller",
			[][]byte{flowWire(t, &flowv1.Flow{Source: src}, field(8, &flowv1.Endpoint{PodName: "p"})), dataSet[2]}, []bool{false, true}},
		{"an unknown field is kept by the generated unmarshaller",
			[][]byte{flowWire(t, &flowv1.Flow{Uuid: "u"}, protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 5))}, []bool{false}},
		{"two members of the L4 oneof: the generated unmarshaller's rule",
			[][]byte{flowWire(t, &flowv1.Flow{}, field(6, &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: 1}}}), field(6, &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{DestinationPort: 2}}}))}, []bool{false}},
		{"source names around the endpoint's labels keep their order",
			[][]byte{append(append(protowire.AppendString(protowire.AppendTag(nil, 13, protowire.BytesType), "a."), field(8, src)...), protowire.AppendString(protowire.AppendTag(nil, 13, protowire.BytesType), "b.")...)}, []bool{true}},
		{"negative enums and large counters", [][]byte{flowWire(t, &flowv1.Flow{Verdict: -1, EventKind: -7, Packets: 1 << 63, IP: &flowv1.IP{IpVersion: -2}})}, []bool{true}},
		{"empty messages are present", [][]byte{flowWire(t, &flowv1.Flow{Time: nil, Source: &flowv1.Endpoint{}, L4: &flowv1.Layer4{}, IsReply: nil, TcpHealth: &flowv1.TCPHealth{}})}, []bool{true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wire := batchWire(tc.flows...)
			want := &ingestv1.StreamRequest{}
			if err := proto.Unmarshal(wire, want); err != nil {
				t.Fatal(err)
			}
			for i, fw := range tc.flows {
				wantFlat := tc.flat == nil || tc.flat[i]
				d := flatDecoder{o: &owner{t: NewStrings(0)}, s: &Slab{}, n: 1}
				if gotFlat := d.flow(&flowv1.Flow{}, fw) == nil; gotFlat != wantFlat {
					t.Errorf("flow %d: decoded flat %v, want %v", i, gotFlat, wantFlat)
				}
			}
			buf := bytes.Clone(wire)
			got := &ingestv1.StreamRequest{}
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(buf)}, &Request{Msg: got, Strings: NewStrings(0)}); err != nil {
				t.Fatal(err)
			}
			for j := range buf {
				buf[j] = 'X'
			}
			if !proto.Equal(got, want) {
				t.Errorf("decoded\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// Invalid UTF-8 in a flat-decoded string refuses the batch as before.
func TestFlatDecodingRefusesInvalidUTF8(t *testing.T) {
	bad := protowire.AppendString(protowire.AppendTag(nil, 3, protowire.BytesType), "ns-\xff")
	ep := protowire.AppendBytes(protowire.AppendTag(nil, 8, protowire.BytesType), bad)
	err := unmarshalRequest(&Request{Msg: &ingestv1.StreamRequest{}, Strings: NewStrings(0)}, batchWire(ep))
	if err != errInvalidUTF8 {
		t.Fatalf("decoding a namespace with invalid UTF-8: %v, want %v", err, errInvalidUTF8)
	}
}

// Flows share slabs, and a consumer appending to one flow's repeated field
// does not write into the next flow's.
func TestAppendingToAFlatFlowsLabelsLeavesTheNextFlowAlone(t *testing.T) {
	a := flowWire(t, &flowv1.Flow{Source: &flowv1.Endpoint{Labels: []string{"k8s:a=1"}}, EgressAllowedBy: []*flowv1.Policy{{Name: "p"}}})
	b := flowWire(t, &flowv1.Flow{Source: &flowv1.Endpoint{Labels: []string{"k8s:b=2"}}, EgressAllowedBy: []*flowv1.Policy{{Name: "q"}}})
	got := &ingestv1.StreamRequest{}
	if err := unmarshalRequest(&Request{Msg: got, Strings: NewStrings(0)}, batchWire(a, b)); err != nil {
		t.Fatal(err)
	}
	fs := got.GetBatch().GetFlows()
	fs[0].Source.Labels = append(fs[0].Source.Labels, "k8s:extra=1")
	fs[0].EgressAllowedBy = append(fs[0].EgressAllowedBy, &flowv1.Policy{Name: "extra"})
	if l := fs[1].GetSource().GetLabels(); len(l) != 1 || l[0] != "k8s:b=2" {
		t.Errorf("the second flow's labels read %q after an append to the first's", l)
	}
	if p := fs[1].GetEgressAllowedBy(); len(p) != 1 || p[0].GetName() != "q" {
		t.Errorf("the second flow's policies read %v after an append to the first's", p)
	}
}

// BenchmarkUnmarshalDataSetBatch decodes one batch of bench-relay's data
// set (1,000 flows) as the relay did before the slabs (generated
// unmarshaller, strings from the stream's table) and as it does now.
func BenchmarkUnmarshalDataSetBatch(b *testing.B) {
	db := benchdata.Generate(benchdata.BatchSize, time.Now())[0]
	wire, err := proto.Marshal(&ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Batch{Batch: &ingestv1.Batch{
		NodeName: db.Node, BootId: db.Boot, Sequence: db.Seq, Flows: db.Flows}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("generated unmarshaller, strings from the table", func(b *testing.B) {
		tbl := NewStrings(0)
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			m := &ingestv1.StreamRequest{}
			if err := m.UnmarshalVTUnsafe(wire); err != nil {
				b.Fatal(err)
			}
			o := owner{t: tbl}
			o.batch(m.GetBatch())
		}
	})
	b.Run("slabs, strings from the table", func(b *testing.B) {
		tbl := NewStrings(0)
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if err := unmarshalRequest(&Request{Msg: &ingestv1.StreamRequest{}, Strings: tbl}, wire); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("slabs recycled, strings from the table", func(b *testing.B) {
		tbl, slabs := NewStrings(0), NewSlabs(1)
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			r := &Request{Msg: &ingestv1.StreamRequest{}, Strings: tbl, Slabs: slabs}
			if err := unmarshalRequest(r, wire); err != nil {
				b.Fatal(err)
			}
			slabs.Put(r.Slab)
		}
	})
}

// A stream remembers the endpoints it decoded: a repeat decodes to the same
// values in an Endpoint of its own (a consumer changing one flow's endpoint
// changes no other flow's), and the memory stays bounded however many
// distinct endpoints pass.
func TestRememberedEndpointsAreCopiesAndStayBounded(t *testing.T) {
	tbl := NewStrings(8)
	ep := &flowv1.Endpoint{Namespace: "team-a", PodName: "p", Labels: []string{"k8s:app=a"}, Workloads: []*flowv1.Workload{{Name: "w", Kind: "Deployment"}}}
	decode := func(eps ...*flowv1.Endpoint) []*flowv1.Flow {
		t.Helper()
		var fs [][]byte
		for _, e := range eps {
			fs = append(fs, flowWire(t, &flowv1.Flow{Source: e}))
		}
		got := &ingestv1.StreamRequest{}
		if err := unmarshalRequest(&Request{Msg: got, Strings: tbl}, batchWire(fs...)); err != nil {
			t.Fatal(err)
		}
		return got.GetBatch().GetFlows()
	}
	first := decode(ep)
	again := decode(ep, ep)
	for i, f := range append(first, again...) {
		if !proto.Equal(f.GetSource(), ep) {
			t.Fatalf("flow %d: source %v, want %v", i, f.GetSource(), ep)
		}
	}
	again[0].Source.Namespace = "changed"
	again[0].Source.Labels = append(again[0].Source.Labels, "k8s:extra=1")
	if !proto.Equal(again[1].GetSource(), ep) || !proto.Equal(decode(ep)[0].GetSource(), ep) {
		t.Error("changing one flow's endpoint changed another flow's")
	}
	for i := range 100 {
		decode(&flowv1.Endpoint{PodName: string(rune('a'+i%26)) + "-" + string(rune('a'+i/26))})
		if n := len(tbl.eps); n > 8 {
			t.Fatalf("the stream remembers %d endpoints, beyond its bound of 8", n)
		}
	}
}
