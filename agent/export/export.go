// Package export defines where the agent's records go: the Publisher
// interface (implemented by the relay stream client in agent/shipper) and a
// JSON-lines writer for local debugging.
package export

import (
	"bufio"
	"io"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"

	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// Publisher takes records; it must not block the caller for long.
type Publisher interface {
	Publish(*observerv1.GetFlowsResponse)
}

// Multi publishes to several publishers in order.
type Multi []Publisher

// Publish implements Publisher.
func (m Multi) Publish(r *observerv1.GetFlowsResponse) {
	for _, p := range m {
		p.Publish(r)
	}
}

// JSONLines writes each record as one line of the pinned envelope
// ({"flow": {...}, "node_name": "...", "time": "..."}) with proto field names.
type JSONLines struct {
	mu   sync.Mutex
	w    *bufio.Writer
	opts protojson.MarshalOptions
	// Errors counts records that could not be written.
	Errors uint64
}

// NewJSONLines writes to w.
func NewJSONLines(w io.Writer) *JSONLines {
	return &JSONLines{w: bufio.NewWriterSize(w, 64<<10), opts: protojson.MarshalOptions{UseProtoNames: true}}
}

// Publish implements Publisher. Lines are flushed at once so a reader of a
// pipe sees events as they happen.
func (j *JSONLines) Publish(r *observerv1.GetFlowsResponse) {
	b, err := j.opts.Marshal(r)
	j.mu.Lock()
	defer j.mu.Unlock()
	if err != nil {
		j.Errors++
		return
	}
	j.w.Write(b)
	j.w.WriteByte('\n')
	if err := j.w.Flush(); err != nil {
		j.Errors++
	}
}
