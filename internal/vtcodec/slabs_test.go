package vtcodec

import (
	"bytes"
	"fmt"
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

// decodePooled decodes wire through the codec with slabs from p, then
// overwrites the receive buffer (nothing decoded may point into it).
func decodePooled(t *testing.T, p *Slabs, tbl *Strings, wire []byte) (*ingestv1.StreamRequest, *Slab) {
	t.Helper()
	buf := bytes.Clone(wire)
	got := &ingestv1.StreamRequest{}
	r := &Request{Msg: got, Strings: tbl, Slabs: p}
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(buf)}, r); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'X'
	}
	if r.Slab == nil {
		t.Fatal("a batch decoded with a pool names no slab to give back")
	}
	return got, r.Slab
}

// A batch decoded into a recycled slab is the batch the protobuf runtime
// decodes: no value of the slab's previous batch shows through, whatever
// that batch set and this one leaves out. Each case decodes the previous
// batch, gives its slab back, and checks that the next batch got that
// same slab.
func TestARecycledSlabDecodesAsTheGeneratedUnmarshaller(t *testing.T) {
	var full [][]byte // every field but L7 set, in every oneof variant
	for v := range prototest.Variants((&flowv1.Flow{}).ProtoReflect().Descriptor()) {
		f := &flowv1.Flow{}
		prototest.Fill(f.ProtoReflect(), v)
		f.L7 = nil
		full = append(full, flowWire(t, f))
	}
	var dataSet [][]byte
	for _, f := range benchdata.Generate(300, time.Now())[0].Flows {
		dataSet = append(dataSet, flowWire(t, f))
	}
	labelled := func(n int, labels ...string) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, flowWire(t, &flowv1.Flow{
				Uuid:        fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
				Source:      &flowv1.Endpoint{Namespace: "ns", PodName: fmt.Sprint("p", i), Labels: labels},
				SourceNames: labels,
			}))
		}
		return out
	}
	bare := [][]byte{flowWire(t, &flowv1.Flow{}), flowWire(t, &flowv1.Flow{Verdict: flowv1.Verdict_DROPPED}), flowWire(t, &flowv1.Flow{Source: &flowv1.Endpoint{}})}
	withDNS := flowWire(t, &flowv1.Flow{Uuid: "x", Source: &flowv1.Endpoint{Namespace: "n"}, L7: &flowv1.Layer7{Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{Query: "a.example."}}}})
	invalid := protowire.AppendBytes(protowire.AppendTag(nil, 8, protowire.BytesType),
		protowire.AppendString(protowire.AppendTag(nil, 3, protowire.BytesType), "ns-\xff"))
	tests := []struct {
		name           string
		previous, next [][]byte
		previousFails  bool
	}{
		{"flows without any field after flows with every field", full, bare, false},
		{"the data set after flows with every field", full, dataSet, false},
		{"flows with every field after the data set", dataSet, full, false},
		{"fewer labels and names than the previous batch's", labelled(40, "k8s:a=1", "k8s:b=2", "k8s:c=3"), labelled(60, "k8s:z=9"), false},
		{"more labels and names than the previous batch's", labelled(60, "k8s:z=9"), labelled(40, "k8s:a=1", "k8s:b=2", "k8s:c=3"), false},
		{"after a batch with flows the flat decoder gave up on midway", [][]byte{dataSet[0], withDNS, dataSet[1]}, bare, false},
		{"after a batch refused for invalid UTF-8", append(full[:1:1], invalid), dataSet[:50], true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, tbl := NewSlabs(1), NewStrings(0)
			var used *Slab
			if tc.previousFails {
				err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(batchWire(tc.previous...))}, &Request{Msg: &ingestv1.StreamRequest{}, Strings: tbl, Slabs: p})
				if err == nil {
					t.Fatal("the previous batch decoded without an error")
				}
				if p.Len() != 1 {
					t.Fatalf("after a refused batch the pool keeps %d slabs, want its slab back", p.Len())
				}
				used = p.free[0]
			} else {
				_, used = decodePooled(t, p, tbl, batchWire(tc.previous...))
				p.Put(used)
			}
			wire := batchWire(tc.next...)
			want := &ingestv1.StreamRequest{}
			if err := proto.Unmarshal(wire, want); err != nil {
				t.Fatal(err)
			}
			got, s := decodePooled(t, p, tbl, wire)
			if s != used {
				t.Fatal("the next batch was not decoded into the recycled slab")
			}
			if !proto.Equal(got, want) {
				t.Errorf("decoded\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// Strings a consumer took from a batch (a uuid kept by the observer's
// de-duplication, a namespace as a metric label) keep their values when
// the batch's slab decodes the next batch: no string lives in recycled
// memory.
func TestStringsTakenFromARecycledBatchKeepTheirValues(t *testing.T) {
	batch := func(tag string) [][]byte {
		var out [][]byte
		for i := range 30 {
			out = append(out, flowWire(t, &flowv1.Flow{
				Uuid:             fmt.Sprintf("%s-0000-4000-8000-%012d", tag, i),
				Source:           &flowv1.Endpoint{Namespace: tag + "-ns", PodName: fmt.Sprintf("%s-pod-%d", tag, i), Labels: []string{"k8s:app=" + tag}},
				DestinationNames: []string{tag + ".example"},
				DropReasonKernel: tag + "_REASON",
			}))
		}
		return out
	}
	p, tbl := NewSlabs(1), NewStrings(0)
	first, s := decodePooled(t, p, tbl, batchWire(batch("aaaaaaaa")...))
	type kept struct{ uuid, ns, pod, label, name, reason string }
	var taken []kept
	for _, f := range first.GetBatch().GetFlows() {
		taken = append(taken, kept{f.Uuid, f.Source.Namespace, f.Source.PodName, f.Source.Labels[0], f.DestinationNames[0], f.DropReasonKernel})
	}
	p.Put(s)
	if _, again := decodePooled(t, p, tbl, batchWire(batch("bbbbbbbb")...)); again != s {
		t.Fatal("the second batch was not decoded into the recycled slab")
	}
	for i, k := range taken {
		want := kept{fmt.Sprintf("aaaaaaaa-0000-4000-8000-%012d", i), "aaaaaaaa-ns", fmt.Sprintf("aaaaaaaa-pod-%d", i), "k8s:app=aaaaaaaa", "aaaaaaaa.example", "aaaaaaaa_REASON"}
		if k != want {
			t.Errorf("flow %d: strings taken from the first batch now read %+v, want %+v", i, k, want)
		}
	}
}

// The pool keeps at most its bound of slabs, and no slab a large batch
// grew beyond maxPooledSlabBytes: neither many streams nor a burst pins
// memory.
func TestThePoolOfSlabsIsBounded(t *testing.T) {
	small := batchWire(flowWire(t, &flowv1.Flow{Source: &flowv1.Endpoint{Namespace: "n"}}))
	var large [][]byte // about 7 MiB of slab
	for _, b := range benchdata.Generate(5_000, time.Now()) {
		for _, f := range b.Flows {
			large = append(large, flowWire(t, f))
		}
	}
	tbl := NewStrings(0)
	decoded := func(p *Slabs, wire []byte, n int) []*Slab {
		var out []*Slab
		for range n {
			_, s := decodePooled(t, p, tbl, wire)
			out = append(out, s)
		}
		return out
	}
	tests := []struct {
		name    string
		bound   int
		wire    []byte
		put     int
		wantLen int
	}{
		{"more slabs put back than the bound", 3, small, 7, 3},
		{"fewer slabs put back than the bound", 3, small, 2, 2},
		{"slabs grown by a large batch", 3, batchWire(large...), 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewSlabs(tc.bound)
			for _, s := range decoded(p, tc.wire, tc.put) {
				p.Put(s)
			}
			if got := p.Len(); got != tc.wantLen {
				t.Errorf("the pool keeps %d slabs, want %d", got, tc.wantLen)
			}
		})
	}
}
