package ingest

import (
	"context"
	"sync"

	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
)

// outbox queues responses for one stream without ever blocking the writer
// that produces acks.
type outbox struct {
	mu     sync.Mutex
	q      []*ingestv1.StreamResponse
	closed bool
	signal chan struct{}
}

func newOutbox() *outbox { return &outbox{signal: make(chan struct{}, 1)} }

func (o *outbox) put(r *ingestv1.StreamResponse) {
	o.mu.Lock()
	if !o.closed {
		o.q = append(o.q, r)
	}
	o.mu.Unlock()
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

func (o *outbox) close() {
	o.mu.Lock()
	o.closed, o.q = true, nil
	o.mu.Unlock()
}

func (o *outbox) drain(ctx context.Context, send func(*ingestv1.StreamResponse) error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-o.signal:
		}
		o.mu.Lock()
		q := o.q
		o.q = nil
		o.mu.Unlock()
		for _, r := range q {
			if err := send(r); err != nil {
				return err
			}
		}
	}
}
