package collect

import (
	"slices"
	"testing"
	"time"

	"github.com/trawl-dev/trawl/agent/bpf"
)

func TestTheNodesOwnAddressesAreTheHostNeverTheWorld(t *testing.T) {
	c, dp, pub := newTestCollector(t, Config{FateWait: time.Nanosecond})
	k := flowKey(4000)
	copy(k.Tuple.Saddr[:], []byte{127, 0, 0, 1}) // an address of the agent's namespace
	quiet := monoNow() - uint64(10*time.Second)
	if err := dp.Flow.Flows.Put(k, bpf.FlowFlowAgg{FirstNs: quiet, LastNs: quiet, Packets: 1, Bytes: 60}); err != nil {
		t.Fatal(err)
	}
	c.Poll(false)
	got := aggregates(pub.take())
	if len(got) != 1 {
		t.Fatalf("%d records, want 1", len(got))
	}
	src, dst := got[0].Source, got[0].Destination
	if src.GetIdentity() != identityHost || !slices.Equal(src.GetLabels(), []string{"reserved:host"}) {
		t.Errorf("source %v, want reserved:host with identity 1", src)
	}
	if dst != nil {
		t.Errorf("destination 10.0.0.2 is not the node's, yet labelled %v", dst)
	}
}
