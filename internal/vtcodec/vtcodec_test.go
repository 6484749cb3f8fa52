package vtcodec

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/proto/prototest"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

// Every variant of the ingest stream's messages (each oneof member in turn,
// every field set) decodes through the codec to what the protobuf runtime
// decodes, and the codec's encoding decodes back to the message.
func TestTheCodecAgreesWithTheProtobufRuntime(t *testing.T) {
	for _, m := range []proto.Message{&ingestv1.StreamRequest{}, &ingestv1.StreamResponse{}, &flowv1.Flow{}} {
		md := m.ProtoReflect().Descriptor()
		for variant := range prototest.Variants(md) {
			msg := m.ProtoReflect().New()
			prototest.Fill(msg, variant)
			want := msg.Interface()
			wire, err := proto.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			got := m.ProtoReflect().New().Interface()
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, got); err != nil {
				t.Fatalf("%s variant %d: unmarshal: %v", md.FullName(), variant, err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("%s variant %d: the codec decoded\n%v\nthe runtime\n%v", md.FullName(), variant, got, want)
			}
			enc, err := (Codec{}).Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			back := m.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(enc.Materialize(), back); err != nil || !proto.Equal(back, want) {
				t.Errorf("%s variant %d: the codec's encoding decodes to %v (err %v)", md.FullName(), variant, back, err)
			}
		}
	}
}

func TestInvalidUTF8IsRefusedWhereverTheRuntimeRefusesIt(t *testing.T) {
	bad := string([]byte{'a', 0xff, 'b'})
	batch := func(f *flowv1.Flow) proto.Message {
		return &ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Batch{Batch: &ingestv1.Batch{NodeName: "n", Flows: []*flowv1.Flow{f}}}}
	}
	for _, tc := range []struct {
		name string
		msg  proto.Message
	}{
		{"a top-level string", &ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Hello{Hello: &ingestv1.Hello{NodeName: bad}}}},
		{"a nested label", batch(&flowv1.Flow{Source: &flowv1.Endpoint{Labels: []string{"k8s:a=b", bad}}})},
		{"a policy name at a high field number", batch(&flowv1.Flow{EgressAllowedBy: []*flowv1.Policy{{Name: bad}}})},
		{"a map key", &ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Heartbeat{Heartbeat: &ingestv1.Heartbeat{Counters: map[string]uint64{bad: 1}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := proto.Marshal(tc.msg); err == nil {
				t.Fatal("the runtime encoded invalid UTF-8; the test cannot build its input")
			}
			wire := rawEncode(t, tc.msg)
			if err := proto.Unmarshal(wire, &ingestv1.StreamRequest{}); err == nil {
				t.Fatal("the runtime accepts this input: nothing to compare")
			}
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &ingestv1.StreamRequest{}); err == nil {
				t.Error("the codec accepted invalid UTF-8 that the protobuf runtime refuses")
			}
			// The same through the stream's string table, twice: the
			// second time the table must not have remembered the bad string.
			tbl := NewStrings(0)
			for range 2 {
				req := &Request{Msg: &ingestv1.StreamRequest{}, Strings: tbl}
				if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, req); err == nil {
					t.Error("the codec accepted invalid UTF-8 into a Request that the protobuf runtime refuses")
				}
			}
		})
	}
}

// rawEncode encodes m with the generated marshaller, which does not check
// UTF-8: the way a faulty agent could send it.
func rawEncode(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := m.(Message).(interface{ MarshalVT() ([]byte, error) }).MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncodedBytesAreSentUnchanged(t *testing.T) {
	in := bytes.Repeat([]byte{1, 2, 3, 0xff}, 1000) // above gRPC's pooling threshold
	buf := mem.Copy(in, mem.DefaultBufferPool())
	out, err := (Codec{}).Marshal(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Materialize(); !bytes.Equal(got, in) {
		t.Errorf("sent %d bytes differing from the %d given", len(got), len(in))
	}
	out.Free() // what gRPC does once written; a second owner would panic here
}

// BenchmarkUnmarshalBatch decodes a 1,000-flow batch (every field set) with
// the protobuf runtime and with the codec.
func BenchmarkUnmarshalBatch(b *testing.B) {
	batch := &ingestv1.Batch{NodeName: "node-a", BootId: "boot", Sequence: 1}
	for range 1000 {
		f := &flowv1.Flow{}
		prototest.Fill(f.ProtoReflect(), 0)
		batch.Flows = append(batch.Flows, f)
	}
	wire, err := proto.Marshal(&ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Batch{Batch: batch}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("runtime", func(b *testing.B) {
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if err := proto.Unmarshal(wire, &ingestv1.StreamRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec, strings from the stream's table", func(b *testing.B) {
		b.SetBytes(int64(len(wire)))
		tbl := NewStrings(0)
		for b.Loop() {
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &Request{Msg: &ingestv1.StreamRequest{}, Strings: tbl}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.SetBytes(int64(len(wire)))
		for b.Loop() {
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &ingestv1.StreamRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
