// Package vtcodec is the gRPC codec of the agent → relay ingest stream: it
// marshals and unmarshals with the reflection-free methods vtprotobuf
// generates beside the messages (proto/*_vtproto.pb.go), and sends a message
// already encoded (a mem.Buffer) as it is. It names itself "proto", so it is
// wire-compatible with every other protobuf peer; each side installs it on
// the ingest connection only (grpc.ForceServerCodecV2 on the relay's ingest
// server, grpc.ForceCodecV2 on the agent's stream), not globally.
//
// Why: decoding batches with the reflection-based runtime was about a third
// of the relay's CPU at full ingest, and an agent that keeps unacknowledged
// batches as messages holds about five times their encoded size in heap
// (docs/benchmarks/relay.md).
package vtcodec

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Name is the codec's content-subtype: protobuf, as gRPC's default.
const Name = "proto"

// Message is what vtprotobuf generates for each message.
type Message interface {
	SizeVT() int
	MarshalToSizedBufferVT(dAtA []byte) (int, error)
	UnmarshalVT(dAtA []byte) error
}

// Codec implements encoding.CodecV2.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name implements encoding.CodecV2.
func (Codec) Name() string { return Name }

// Marshal implements encoding.CodecV2: a message already in wire form
// (mem.Buffer: the agent's copy of a batch it holds encoded for resending)
// as it is, handed over to gRPC, which frees it once written; generated
// messages with their own marshaller; anything else with the protobuf
// runtime.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case mem.Buffer:
		return mem.BufferSlice{m}, nil
	case Message:
		size := m.SizeVT()
		if mem.IsBelowBufferPoolingThreshold(size) {
			b := make([]byte, size)
			if _, err := m.MarshalToSizedBufferVT(b); err != nil {
				return nil, err
			}
			return mem.BufferSlice{mem.SliceBuffer(b)}, nil
		}
		pool := mem.DefaultBufferPool()
		b := pool.Get(size)
		if _, err := m.MarshalToSizedBufferVT((*b)[:size]); err != nil {
			pool.Put(b)
			return nil, err
		}
		return mem.BufferSlice{mem.NewBuffer(b, pool)}, nil
	case proto.Message:
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return nil, fmt.Errorf("vtcodec: cannot marshal %T: not a protobuf message", v)
}

// Unmarshal implements encoding.CodecV2. A Request's batch takes its
// strings from the stream's table (strings.go) and its flows from a slab,
// recycled when the caller gives one back (flat.go, slabs.go); otherwise the generated
// unmarshaller copies every string and byte field out of the buffer. Either
// way nothing decoded refers to the pooled buffer, which is returned when
// Unmarshal returns; strings are checked for UTF-8 (utf8.go, strings.go).
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	switch m := v.(type) {
	case *Request:
		return unmarshalRequest(m, buf.ReadOnlyData())
	case Message:
		if err := m.UnmarshalVT(buf.ReadOnlyData()); err != nil {
			return err
		}
		if pm, ok := v.(proto.Message); ok {
			return checkUTF8(shapeOf(pm.ProtoReflect().Descriptor()), buf.ReadOnlyData())
		}
		return nil
	case proto.Message:
		return proto.Unmarshal(buf.ReadOnlyData(), m)
	}
	return fmt.Errorf("vtcodec: cannot unmarshal into %T: not a protobuf message", v)
}
