// Package grpczstd registers a zstd compressor with gRPC under the name
// "zstd", for the agent → relay stream. Importing it is enough on either
// side: a server decompresses whatever a client names in grpc-encoding,
// provided the codec is registered there too.
package grpczstd

import (
	"bytes"
	"io"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/encoding"
)

// Name is the grpc-encoding name of the codec.
const Name = "zstd"

func init() { encoding.RegisterCompressor(&compressor{}) }

// Encoders and decoders are costly to build and hold their window buffers,
// so a few are kept and reused: one per message in flight at once, which is
// one per stream. Not in a sync.Pool: the collector empties those every
// other cycle, and an agent collecting every second or two rebuilt its
// encoders over and over (about 5 MiB each, on its first message). That
// heap came and went, and the agent's resident memory swung with it by
// 10 MiB (docs/benchmarks/relay.md, "The agent's memory budget").
var (
	encoders = newKept(keptCoders, func() *zstd.Encoder {
		// The fastest level: batches are small and repetitive (labels, names),
		// and the agent's CPU is what the node pays for.
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		return e
	})
	decoders = newKept(keptCoders, func() *zstd.Decoder {
		// Bounded memory per message: an ingest batch is at most the agent's
		// buffer, far below this.
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20), zstd.WithDecoderLowmem(true))
		return d
	})
)

// keptCoders is how many encoders, and decoders, a process keeps: an agent
// has one stream; a relay's streams take more at once, and make the rest
// as needed (the collector takes those back).
const keptCoders = 8

// kept is a bounded free list that, unlike sync.Pool, the collector does
// not empty.
type kept[T any] struct {
	free  chan T
	build func() T
}

func newKept[T any](n int, build func() T) *kept[T] {
	return &kept[T]{free: make(chan T, n), build: build}
}

func (k *kept[T]) get() T {
	select {
	case v := <-k.free:
		return v
	default:
		return k.build()
	}
}

func (k *kept[T]) put(v T) {
	select {
	case k.free <- v:
	default: // enough are kept
	}
}

type compressor struct{}

func (*compressor) Name() string { return Name }

func (*compressor) Compress(w io.Writer) (io.WriteCloser, error) {
	e := encoders.get()
	e.Reset(w)
	return &writer{Encoder: e}, nil
}

type writer struct {
	*zstd.Encoder
}

// Close finishes the frame and returns the encoder to the pool.
func (w *writer) Close() error {
	err := w.Encoder.Close()
	encoders.put(w.Encoder)
	w.Encoder = nil
	return err
}

func (*compressor) Decompress(r io.Reader) (io.Reader, error) {
	d := decoders.get()
	if err := d.Reset(r); err != nil {
		decoders.put(d)
		return nil, err
	}
	return &reader{d: d}, nil
}

// reader returns its decoder to the pool at the end of the message.
type reader struct {
	d *zstd.Decoder
}

func (r *reader) Read(p []byte) (int, error) {
	if r.d == nil {
		return 0, io.EOF
	}
	n, err := r.d.Read(p)
	if err == io.EOF {
		decoders.put(r.d)
		r.d = nil
	}
	return n, err
}

// compress is the codec's round trip on a whole message, for tests and
// benchmarks.
func compress(msg []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := (&compressor{}).Compress(&buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(msg); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
