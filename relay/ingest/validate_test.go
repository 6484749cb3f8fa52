package ingest_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	"github.com/trawl-dev/trawl/relay/ingest"
)

// FuzzValidateBatch feeds arbitrary bytes, decoded as a Batch, to the
// validator: it must never panic, and whatever it accepts must satisfy the
// invariants the writer relies on. The seeds run in every `go test`.
func FuzzValidateBatch(f *testing.F) {
	hello := &ingestv1.Hello{NodeName: "node-a", BootId: "boot1"}
	good := &ingestv1.Batch{NodeName: "node-a", BootId: "boot1", Sequence: 3, Flows: []*flowv1.Flow{testFlow(1).GetFlow(), testFlow(2).GetFlow()}}
	seeds := []*ingestv1.Batch{
		good,
		{NodeName: "node-a", BootId: "boot1", Sequence: 1, Conntrack: []*flowv1.ConntrackSample{{NodeName: "node-a", Time: good.Flows[0].Time}}},
		{NodeName: "node-a", BootId: "boot1", Sequence: 1, LostEvents: []*flowv1.LostEvent{{NumEventsLost: 5}}},
		{NodeName: "node-b", BootId: "boot1", Sequence: 1, Flows: good.Flows},
		{NodeName: "node-a", BootId: "boot1", Sequence: 0, Flows: good.Flows},
		{NodeName: "node-a", BootId: "boot1", Sequence: 1, Flows: []*flowv1.Flow{{Uuid: "'; DROP TABLE flows; --"}}},
		{NodeName: "node-a", BootId: "boot1", Sequence: 1},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0x01, 0x02})
	lim := ingest.Limits{MaxBatchBytes: 1 << 16, MaxBatchRecords: 100}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b ingestv1.Batch
		if proto.Unmarshal(data, &b) != nil {
			return
		}
		if err := ingest.ValidateBatch(&b, hello, lim); err != nil {
			if err.Error() == "" {
				t.Fatal("rejection without a reason")
			}
			return
		}
		n := len(b.Flows) + len(b.Conntrack) + len(b.LostEvents)
		switch {
		case b.NodeName != hello.NodeName || b.BootId != hello.BootId:
			t.Fatalf("accepted a batch of node %q boot %q", b.NodeName, b.BootId)
		case b.Sequence == 0:
			t.Fatal("accepted sequence 0")
		case n == 0 || n > lim.MaxBatchRecords:
			t.Fatalf("accepted %d records", n)
		case proto.Size(&b) > lim.MaxBatchBytes:
			t.Fatal("accepted an oversized batch")
		}
		for _, f := range b.Flows {
			if f.GetTime() == nil {
				t.Fatal("accepted a flow without time")
			}
		}
	})
}

func TestValidateBatchAcceptsWhatAShipperSends(t *testing.T) {
	hello := &ingestv1.Hello{NodeName: "node-a", BootId: "boot1"}
	b := &ingestv1.Batch{NodeName: "node-a", BootId: "boot1", Sequence: 1, Flows: []*flowv1.Flow{testFlow(1).GetFlow()}}
	b.Flows[0].Uuid = "0123abcd-0000-8000-8000-000000100000"
	if err := ingest.ValidateBatch(b, hello, ingest.Limits{}); err != nil {
		t.Fatalf("valid batch rejected: %v", err)
	}
}
