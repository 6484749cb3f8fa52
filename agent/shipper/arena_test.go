package shipper

import (
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/internal/flowid"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func TestTheArenaPlacesBatchesInOrderAndReusesSpaceFromTheOldest(t *testing.T) {
	type step struct {
		alloc   int // bytes to place (0: free instead)
		free    int // index of an earlier allocation to free
		wantOff int // -1: no room
	}
	tests := []struct {
		name  string
		size  int
		steps []step
	}{
		{name: "batches follow one another", size: 100,
			steps: []step{{alloc: 30, wantOff: 0}, {alloc: 30, wantOff: 30}, {alloc: 40, wantOff: 60}}},
		{name: "a full arena has no room", size: 100,
			steps: []step{{alloc: 60, wantOff: 0}, {alloc: 41, wantOff: -1}}},
		{name: "a batch that does not fit before the end wraps to the start once the oldest is freed", size: 100,
			steps: []step{{alloc: 40, wantOff: 0}, {alloc: 40, wantOff: 40}, {free: 0}, {alloc: 30, wantOff: 0}, {alloc: 11, wantOff: -1}, {alloc: 10, wantOff: 30}}},
		{name: "space freed behind an older batch waits for it", size: 100,
			steps: []step{{alloc: 50, wantOff: 0}, {alloc: 50, wantOff: 50}, {free: 1}, {alloc: 10, wantOff: -1}, {free: 0}, {alloc: 100, wantOff: 0}}},
		{name: "a batch larger than the arena never fits", size: 100,
			steps: []step{{alloc: 101, wantOff: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := newArena(tt.size)
			if err != nil {
				t.Fatal(err)
			}
			var regs []*region
			for i, s := range tt.steps {
				if s.alloc == 0 {
					a.free(regs[s.free])
					continue
				}
				r, buf := a.alloc(s.alloc)
				regs = append(regs, r)
				switch {
				case s.wantOff < 0 && r != nil:
					t.Fatalf("step %d: %d bytes placed at %d, want no room", i, s.alloc, r.off)
				case s.wantOff >= 0 && r == nil:
					t.Fatalf("step %d: no room for %d bytes, want them at %d", i, s.alloc, s.wantOff)
				case r != nil && (r.off != s.wantOff || len(buf) != s.alloc || cap(buf) != s.alloc):
					t.Fatalf("step %d: placed at %d (len %d, cap %d), want %d bytes at %d", i, r.off, len(buf), cap(buf), s.alloc, s.wantOff)
				}
				for j := range buf { // a later batch must not write into this one
					buf[j] = byte(i)
				}
			}
		})
	}
}

// The buffer's memory is taken when the shipper is made, every page of it
// resident, outside the Go heap: filling it while the relay is away does not
// grow the live heap (before, a full buffer was live heap, and the collector
// let garbage grow as much again, so an agent's RSS followed the relay's
// health).
func TestTheBufferIsResidentFromTheStartAndFillingItDoesNotGrowTheHeap(t *testing.T) {
	const buffer = 16 << 20
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: every batch stays buffered
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	s, err := New(Config{Addr: addr, NodeName: "node-a", Insecure: true, BufferBytes: buffer}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if in, pages := residentPages(t, s.arena.mem); in != pages {
		t.Fatalf("%d of the buffer's %d pages resident after New, want all", in, pages)
	}
	for i := 0; ; i++ {
		s.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: labelledFlow(i)}})
		if _, held := s.Stats(); held > buffer-(256<<10) || i > 1_000_000 {
			break
		}
	}
	s.Flush()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	batches, held := s.Stats()
	if held < buffer/2 {
		t.Fatalf("the buffer holds %d bytes, want it nearly full (%d)", held, buffer)
	}
	if grew := int64(m1.HeapAlloc) - int64(m0.HeapAlloc); grew > buffer/16 {
		t.Errorf("live heap grew %d bytes holding %d buffered bytes in %d batches, want the batches outside the heap", grew, held, batches)
	}
	runtime.KeepAlive(s)
}

// residentPages counts b's pages in memory (mincore(2)).
func residentPages(t *testing.T, b []byte) (in, pages int) {
	t.Helper()
	pages = (len(b) + os.Getpagesize() - 1) / os.Getpagesize()
	vec := make([]byte, pages)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatalf("mincore: %v", e)
	}
	for _, v := range vec {
		in += int(v & 1)
	}
	return in, pages
}

// labelledFlow is an aggregated record with pods, labels and ports, as an
// agent's enriched record looks.
func labelledFlow(i int) *flowv1.Flow {
	return &flowv1.Flow{
		Time: timestamppb.New(time.Unix(1_700_000_000+int64(i), 0)),
		Uuid: flowid.Derive("node-a", "boot", uint64(i/1000+1), i%1000),
		IP:   &flowv1.IP{Source: "10.0.1.5", Destination: "10.0.2.7", IpVersion: flowv1.IPVersion_IPv4},
		L4:   &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: uint32(30000 + i%20000), DestinationPort: 5432}}},
		Source: &flowv1.Endpoint{Namespace: "shop", PodName: "web-7d9f-abcde",
			Labels: []string{"k8s:app=web", "k8s:tier=frontend", "k8s:io.kubernetes.pod.namespace=shop"}},
		Destination: &flowv1.Endpoint{Namespace: "shop", PodName: "db-0", Labels: []string{"k8s:app=db", "k8s:tier=backend"}},
		Verdict:     flowv1.Verdict_FORWARDED, EventKind: flowv1.EventKind_AGGREGATE, Packets: uint64(i % 100), Bytes: uint64(i * 40),
	}
}
