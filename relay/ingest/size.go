package ingest

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/encoding/protowire"

	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

// StatsHandler lets Stream learn the encoded size of each message gRPC
// decoded for it, so the batch size limit is checked without walking every
// record of the batch again (proto.Size costs about as much as a tenth of
// the decoding). Install it on the ingest server with grpc.StatsHandler;
// without it Stream computes the size itself.
func StatsHandler() stats.Handler { return sizeHandler{} }

type sizeHandler struct{}

type sizeKey struct{}

// recvSize is the uncompressed size of the message RecvMsg last decoded on
// one stream (-1: unknown). gRPC reports it from inside RecvMsg, on the
// goroutine that called it, before RecvMsg returns.
type recvSize struct{ n atomic.Int64 }

func (sizeHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if info.FullMethodName != ingestv1.IngestService_Stream_FullMethodName {
		return ctx
	}
	r := &recvSize{}
	r.n.Store(-1)
	return context.WithValue(ctx, sizeKey{}, r)
}

func (sizeHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.InPayload); ok {
		if r, _ := ctx.Value(sizeKey{}).(*recvSize); r != nil {
			r.n.Store(int64(p.Length))
		}
	}
}

func (sizeHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (sizeHandler) HandleConn(context.Context, stats.ConnStats)                       {}

// takeSize returns and forgets the size StatsHandler recorded for the
// message just received on the stream of ctx (-1 when there is none).
func takeSize(ctx context.Context) int {
	r, _ := ctx.Value(sizeKey{}).(*recvSize)
	if r == nil {
		return -1
	}
	return int(r.n.Swap(-1))
}

// batchSize derives the encoded size of m's batch from the size of m: a
// StreamRequest holding a batch is the batch's tag (field 2: one byte), its
// length as a varint, then the batch. It returns -1 when that does not hold
// exactly (unknown size, other fields), and the caller computes it.
func batchSize(m *ingestv1.StreamRequest, msgSize int) int {
	if msgSize < 0 || len(m.ProtoReflect().GetUnknown()) > 0 {
		return -1
	}
	for l := 1; l <= 10; l++ {
		n := msgSize - 1 - l
		if n >= 0 && protowire.SizeVarint(uint64(n)) == l {
			return n
		}
	}
	return -1
}
