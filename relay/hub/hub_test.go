package hub_test

import (
	"runtime"
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

func recs(from, n int) []*observerv1.GetFlowsResponse {
	var out []*observerv1.GetFlowsResponse
	for i := range n {
		out = append(out, rec(from+i))
	}
	return out
}

func TestSlowSubscriberLosesCountedRecordsWithoutSlowingOthers(t *testing.T) {
	lostTotal := 0
	h := hub.New(hub.Config{OnLost: func(n int) { lostTotal += n }})
	slow := h.Subscribe(nil, 10)
	defer slow.Close()
	fast := h.Subscribe(nil, 1000)
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

func isDone(f *hub.InFlight) bool {
	select {
	case <-f.Done():
		return true
	default:
		return false
	}
}

// A seam subscriber waits for the inserts in flight when it subscribed,
// and only for those; what their settling says decides what it reports
// as not stored.
func TestSeamSubscriberFollowsTheInsertsInFlightWhenItSubscribed(t *testing.T) {
	for _, tc := range []struct {
		name string
		// settle runs after the subscription: k1 (3 records) and k2 (2
		// records) were in flight, k3 (4 records) is published after.
		settle        func(h *hub.Hub)
		done          bool
		notStored     int
		afterwards    func(h *hub.Hub) // runs after Release
		stillReported int
	}{
		{
			name:   "both inserts stored: done, nothing missing",
			settle: func(h *hub.Hub) { h.Settled("k1", true); h.Settled("k2", true) },
			done:   true, notStored: 0, stillReported: 0,
		},
		{
			name:   "an insert published after subscribing is not waited for",
			settle: func(h *hub.Hub) { h.Settled("k2", true); h.Settled("k1", true) },
			done:   true, notStored: 0,
			afterwards: func(h *hub.Hub) { h.Settled("k3", false) }, stillReported: 0,
		},
		{
			name:   "one insert still in flight: not done, its records missing",
			settle: func(h *hub.Hub) { h.Settled("k1", true); h.Settled("k3", true) },
			done:   false, notStored: 2,
			afterwards: func(h *hub.Hub) { h.Settled("k2", true) }, stillReported: 2,
		},
		{
			name:   "an insert settled without being stored: done, its records missing",
			settle: func(h *hub.Hub) { h.Settled("k1", false); h.Settled("k2", true) },
			done:   true, notStored: 3, stillReported: 3,
		},
		{
			name:   "nothing settled: every record in flight missing",
			settle: func(*hub.Hub) {},
			done:   false, notStored: 5, stillReported: 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hub.New(hub.Config{})
			h.Publish("k0", recs(0, 7))
			h.Settled("k0", true) // stored before: not in flight
			h.Publish("k1", recs(10, 3))
			h.PublishFunc("k2", 2, func() []*observerv1.GetFlowsResponse { return recs(20, 2) })
			sub, f := h.SubscribeSeam(nil, 0)
			defer sub.Close()
			if isDone(f) {
				t.Fatal("done before any insert in flight settled")
			}
			h.Publish("k3", recs(30, 4))
			if got := len(sub.C()); got != 4 {
				t.Errorf("subscriber got %d live records, want k3's 4", got)
			}
			tc.settle(h)
			if got := isDone(f); got != tc.done {
				t.Errorf("done = %v, want %v", got, tc.done)
			}
			if got := f.Release(); got != tc.notStored {
				t.Errorf("Release says %d records not stored, want %d", got, tc.notStored)
			}
			if tc.afterwards != nil {
				tc.afterwards(h)
			}
			if got := f.Release(); got != tc.stillReported {
				t.Errorf("a second Release says %d, want %d (settles after Release change nothing)", got, tc.stillReported)
			}
		})
	}
}

func TestASeamWithNothingInFlightIsDoneAtOnceAndALiveSubscriberWaitsForNothing(t *testing.T) {
	h := hub.New(hub.Config{})
	sub, f := h.SubscribeSeam(nil, 0)
	defer sub.Close()
	if !isDone(f) || f.Release() != 0 {
		t.Fatal("a seam with nothing in flight is not done at once with 0 missing")
	}
	h.Publish("k1", recs(0, 2))
	live := h.Subscribe(nil, 0)
	defer live.Close()
	if h.InFlightRecords() != 2 {
		t.Errorf("in flight %d, want 2", h.InFlightRecords())
	}
	h.Settled("k1", true)
	h.Settled("k1", true) // a second settle of the same key changes nothing
	if h.InFlightRecords() != 0 {
		t.Errorf("in flight %d after the insert settled, want 0", h.InFlightRecords())
	}
	if h.Subscribers() != 2 {
		t.Errorf("subscribers %d, want 2", h.Subscribers())
	}
}

// The hub keeps no published record: once the writer has them as columns
// the batch's decoded records can be collected, subscribers or not. (It
// kept them until the insert was stored, for the seam's snapshot: about
// half the relay's live heap at full ingest.)
func TestPublishedRecordsAreNotKeptUntilTheirInsertIsStored(t *testing.T) {
	for _, subscribed := range []bool{false, true} {
		name := map[bool]string{false: "without subscribers", true: "with a subscriber that read them"}[subscribed]
		t.Run(name, func(t *testing.T) {
			h := hub.New(hub.Config{})
			builds := 0
			var sub *hub.Subscription
			if subscribed {
				sub = h.Subscribe(nil, 0)
				defer sub.Close()
			}
			const n = 50
			freed := make(chan struct{}, n)
			func() { // a function of its own: no variable of the test keeps the records
				rs := recs(0, n)
				for _, r := range rs {
					runtime.AddCleanup(r.GetFlow(), func(ch chan struct{}) { ch <- struct{}{} }, freed)
				}
				h.PublishFunc("k1", n, func() []*observerv1.GetFlowsResponse { builds++; return rs })
				if sub != nil { // the subscriber reads them; then only the hub could keep them
					for range n {
						<-sub.C()
					}
				}
			}()
			if want := map[bool]int{false: 0, true: 1}[subscribed]; builds != want {
				t.Errorf("records built %d times, want %d", builds, want)
			}
			got := 0
			for round := 0; got < n && round < 50; round++ {
				runtime.GC()
				wait := time.After(100 * time.Millisecond) // cleanups run after a collection, on a goroutine of their own
			drain:
				for got < n {
					select {
					case <-freed:
						got++
					case <-wait:
						break drain
					}
				}
			}
			if got < n {
				t.Fatalf("%d of %d published records were freed while their insert is in flight: the hub keeps them", got, n)
			}
			if h.InFlightRecords() != n {
				t.Errorf("in flight %d, want %d (counted, not kept)", h.InFlightRecords(), n)
			}
		})
	}
}
