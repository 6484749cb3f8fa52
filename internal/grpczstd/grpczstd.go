// Package grpczstd registers a zstd compressor with gRPC under the name
// "zstd", for the agent → relay stream. Importing it is enough on either
// side: a server decompresses whatever a client names in grpc-encoding,
// provided the codec is registered there too.
package grpczstd

import (
	"bytes"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/encoding"
)

// Name is the grpc-encoding name of the codec.
const Name = "zstd"

func init() { encoding.RegisterCompressor(&compressor{}) }

// Encoders and decoders are costly to build and hold their window buffers;
// pools keep one per concurrent stream instead of one per message.
var (
	encoders = sync.Pool{New: func() any {
		// The fastest level: batches are small and repetitive (labels, names),
		// and the agent's CPU is what the node pays for.
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		return e
	}}
	decoders = sync.Pool{New: func() any {
		// Bounded memory per message: an ingest batch is at most the agent's
		// buffer, far below this.
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20), zstd.WithDecoderLowmem(true))
		return d
	}}
)

type compressor struct{}

func (*compressor) Name() string { return Name }

func (*compressor) Compress(w io.Writer) (io.WriteCloser, error) {
	e := encoders.Get().(*zstd.Encoder)
	e.Reset(w)
	return &writer{Encoder: e}, nil
}

type writer struct {
	*zstd.Encoder
}

// Close finishes the frame and returns the encoder to the pool.
func (w *writer) Close() error {
	err := w.Encoder.Close()
	encoders.Put(w.Encoder)
	w.Encoder = nil
	return err
}

func (*compressor) Decompress(r io.Reader) (io.Reader, error) {
	d := decoders.Get().(*zstd.Decoder)
	if err := d.Reset(r); err != nil {
		decoders.Put(d)
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
		decoders.Put(r.d)
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
