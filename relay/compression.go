package relay

// The ingest stream may be compressed by the agent (--relay-compression):
// a gRPC server decompresses what a client names, as long as the codec is
// registered in the process.
import (
	_ "google.golang.org/grpc/encoding/gzip"

	_ "github.com/trawl-dev/trawl/internal/grpczstd"
)
