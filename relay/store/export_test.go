package store

import "context"

// WriteGroupForTest inserts a group of batches exactly as one writer insert
// (and each of its retries) does.
func WriteGroupForTest(ctx context.Context, s *Store, batches []*Batch) error {
	w := s.NewWriter(nil)
	group := make([]pending, len(batches))
	for i, b := range batches {
		group[i] = pending{b: b, done: func(error) {}}
	}
	return w.write(ctx, group)
}
