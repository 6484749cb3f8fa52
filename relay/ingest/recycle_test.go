package ingest_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/agent/shipper"
	"github.com/trawl-dev/trawl/dev/benchdata"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/enrich"
	"github.com/trawl-dev/trawl/relay/ingest"
)

// benchFlows are n flows of the relay benchmark's data set (endpoints with
// labels and workloads, policies, TCP flags: most of a slab's kinds of
// message), as the test agent may send them.
func benchFlows(n int, end time.Time) []*observerv1.GetFlowsResponse {
	var out []*observerv1.GetFlowsResponse
	for _, b := range benchdata.Generate(n, end) {
		for _, f := range b.Flows {
			f.NodeName = "" // the stream's node is the test agent's
			out = append(out, &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}})
		}
	}
	return out
}

// A record handed to a --follow subscriber stays as it was while the same
// stream decodes later batches: the stream gives a batch's decode memory
// back for reuse only when no subscriber took its records.
func TestARecordAFollowSubscriberHoldsNeverChanges(t *testing.T) {
	b := startRelay(t, ingest.Config{})
	sub := b.hub.Subscribe(nil, 1<<12)
	defer sub.Close()
	s, _ := startShipper(t, b.addr, shipper.Config{BatchRecords: 100, FlushInterval: time.Hour})
	first := benchFlows(100, time.Unix(1_700_000_000, 0))
	want := map[string]*flowv1.Flow{}
	for _, r := range first {
		f := stored(r.GetFlow())
		want[f.Uuid] = f
		s.Publish(r)
	}
	s.Flush()
	var held []*flowv1.Flow
	for len(held) < len(first) {
		select {
		case r := <-sub.C():
			held = append(held, r.GetFlow())
		case <-time.After(10 * time.Second):
			t.Fatalf("the subscriber got %d of the first batch's %d records", len(held), len(first))
		}
	}
	// Later batches of other flows through the same stream, unread by the
	// subscriber meanwhile.
	later := benchFlows(1000, time.Unix(1_800_000_000, 0))
	for _, r := range later {
		s.Publish(r)
	}
	s.Flush()
	waitFor(t, "every batch acked", 10*time.Second, func() bool { q, _ := s.Stats(); return q == 0 })
	for i, f := range held {
		if w := want[f.GetUuid()]; !proto.Equal(f, w) {
			t.Fatalf("record %d the subscriber holds reads, after later batches,\n%v\nwant\n%v", i, f, w)
		}
	}
}

// stored is f as ingest completes it without enrichment.
func stored(f *flowv1.Flow) *flowv1.Flow {
	f = proto.Clone(f).(*flowv1.Flow)
	f.NodeName = "node-a"
	enrich.DropFields(f)
	return f
}

// Without subscribers a stream's decode memory goes back to the server's
// pool after each batch; while a subscriber may hold the records, none
// does.
func TestABatchsDecodeMemoryIsReusedOnlyWithoutSubscribers(t *testing.T) {
	tests := []struct {
		name       string
		subscribed bool
		wantPooled bool
	}{
		{"without a subscriber the slabs come back", false, true},
		{"with a subscriber no slab comes back", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := startRelay(t, ingest.Config{})
			if tc.subscribed {
				sub := b.hub.Subscribe(nil, 1<<12)
				defer sub.Close()
			}
			s, _ := startShipper(t, b.addr, shipper.Config{BatchRecords: 100, FlushInterval: time.Hour})
			flows := benchFlows(500, time.Unix(1_700_000_000, 0))
			for _, r := range flows {
				s.Publish(r)
			}
			s.Flush()
			waitFor(t, "every flow stored", 10*time.Second, func() bool { return len(b.sink.flows()) >= len(flows) })
			waitFor(t, "every batch acked", 10*time.Second, func() bool { q, _ := s.Stats(); return q == 0 })
			if pooled := ingest.PooledSlabs(b.srv); (pooled > 0) != tc.wantPooled {
				t.Errorf("the server's pool keeps %d slabs after %d batches", pooled, len(flows)/100)
			}
		})
	}
}

// The flows a sink receives are the batch's, with every field: the sink
// (here copying, as the store's Writer does into columns) sees each batch
// whole, while the stream reuses the memory of the ones before.
func TestEveryBatchReachesTheSinkWholeWhileSlabsAreReused(t *testing.T) {
	b := startRelay(t, ingest.Config{})
	s, _ := startShipper(t, b.addr, shipper.Config{BatchRecords: 100, FlushInterval: time.Hour})
	flows := benchFlows(2000, time.Unix(1_700_000_000, 0))
	want := map[string]*flowv1.Flow{}
	for _, r := range flows {
		f := stored(r.GetFlow())
		want[f.Uuid] = f
		s.Publish(r)
	}
	s.Flush()
	waitFor(t, "every flow stored", 10*time.Second, func() bool { return len(b.sink.flows()) >= len(flows) })
	got := b.sink.flows()
	if len(got) != len(want) {
		t.Fatalf("%d flows stored, want %d", len(got), len(want))
	}
	for id, w := range want {
		if !proto.Equal(got[id], w) {
			t.Fatalf("flow %s stored as\n%v\nwant\n%v", id, got[id], w)
		}
	}
}
