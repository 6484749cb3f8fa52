package hub_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/hub"
)

func rec(i int) *observerv1.GetFlowsResponse {
	return &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{
		Uuid: string(rune('a' + i%26)), Time: timestamppb.New(time.Unix(int64(i), 0)), Packets: uint64(i)}}}
}

func TestSlowSubscriberLosesCountedRecordsWithoutSlowingOthers(t *testing.T) {
	lostTotal := 0
	h := hub.New(hub.Config{OnLost: func(n int) { lostTotal += n }})
	slow, _ := h.Subscribe(nil, 10)
	defer slow.Close()
	fast, _ := h.Subscribe(nil, 1000)
	defer fast.Close()
	done := make(chan struct{})
	go func() { // publishing must finish although nobody reads slow
		for i := range 100 {
			h.Publish("", []*observerv1.GetFlowsResponse{rec(i)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	if got := len(fast.C()); got != 100 {
		t.Errorf("fast subscriber has %d records, want 100", got)
	}
	if got, lost := len(slow.C()), slow.TakeLost(); got != 10 || lost != 90 {
		t.Errorf("slow subscriber has %d records and %d lost, want 10 and 90", got, lost)
	}
	if slow.TakeLost() != 0 {
		t.Error("TakeLost does not reset")
	}
	if lostTotal != 90 {
		t.Errorf("OnLost saw %d, want 90", lostTotal)
	}
	// The first record kept is the oldest: order is preserved.
	if r := <-slow.C(); r.GetFlow().GetPackets() != 0 {
		t.Errorf("first record of slow subscriber is %d, want 0", r.GetFlow().GetPackets())
	}
}

func TestSubscribeReturnsRecordsNotYetStored(t *testing.T) {
	h := hub.New(hub.Config{})
	h.Publish("k1", []*observerv1.GetFlowsResponse{rec(1), rec(2)})
	h.Publish("k2", []*observerv1.GetFlowsResponse{rec(3)})
	h.Stored("k1")
	match := func(r *observerv1.GetFlowsResponse) bool { return r.GetFlow().GetPackets() != 4 }
	sub, snap := h.Subscribe(match, 0)
	defer sub.Close()
	if len(snap) != 1 || snap[0].GetFlow().GetPackets() != 3 {
		t.Fatalf("snapshot %v, want only the unstored record 3", snap)
	}
	h.Publish("k3", []*observerv1.GetFlowsResponse{rec(4), rec(5)})
	if got := len(sub.C()); got != 1 {
		t.Fatalf("subscriber got %d live records, want 1 (the filter drops record 4)", got)
	}
	if h.Unstored() != 3 {
		t.Errorf("unstored %d, want 3", h.Unstored())
	}
	h.Stored("k2")
	h.Stored("k3")
	if h.Unstored() != 0 {
		t.Errorf("unstored %d after all stored, want 0", h.Unstored())
	}
	if h.Subscribers() != 1 {
		t.Errorf("subscribers %d, want 1", h.Subscribers())
	}
}

func TestPublishFuncBuildsRecordsOnlyWhenASubscriberNeedsThem(t *testing.T) {
	h := hub.New(hub.Config{})
	builds := map[string]int{}
	publish := func(key string, from int) {
		h.PublishFunc(key, 2, func() []*observerv1.GetFlowsResponse {
			builds[key]++
			return []*observerv1.GetFlowsResponse{rec(from), rec(from + 1)}
		})
	}
	publish("k1", 1)
	publish("k2", 3)
	h.Stored("k1")
	if len(builds) != 0 {
		t.Fatalf("records built without subscribers: %v", builds)
	}
	if h.Unstored() != 2 {
		t.Errorf("unstored %d, want 2 (k2's records, counted before they are built)", h.Unstored())
	}
	sub, snap := h.Subscribe(nil, 0)
	defer sub.Close()
	if len(snap) != 2 || snap[0].GetFlow().GetPackets() != 3 || snap[1].GetFlow().GetPackets() != 4 {
		t.Fatalf("snapshot %v, want k2's records 3 and 4 in order", snap)
	}
	publish("k3", 5)
	if got := len(sub.C()); got != 2 {
		t.Fatalf("subscriber got %d live records, want 2", got)
	}
	sub2, snap2 := h.Subscribe(nil, 0)
	defer sub2.Close()
	if len(snap2) != 4 {
		t.Errorf("second snapshot has %d records, want 4 (k2 and k3)", len(snap2))
	}
	if builds["k1"] != 0 || builds["k2"] != 1 || builds["k3"] != 1 {
		t.Errorf("builds %v, want k1 never (stored first), k2 and k3 once each", builds)
	}
	h.Stored("k2")
	h.Stored("k3")
	if h.Unstored() != 0 {
		t.Errorf("unstored %d after all stored, want 0", h.Unstored())
	}
}
