package ingest_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/agent/shipper"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
	"github.com/trawl-dev/trawl/relay/ingest"
)

// An agent from before drop classes sends drops with only the kernel's
// reason: a relay without enrichment still stores them with their
// description and class, and counts them per class.
func TestDropsOfAnOlderAgentGetTheirClassWithoutEnrichment(t *testing.T) {
	b := startRelay(t, ingest.Config{})
	s, _ := startShipper(t, b.addr, shipper.Config{})
	reasons := []string{"QUEUE_PURGE", "NO_SOCKET", "NETFILTER_DROP", "A_REASON_OF_2030"}
	for i, r := range reasons {
		s.Publish(&observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{
			Time: timestamppb.New(time.Unix(1_700_000_000, int64(i))), Verdict: flowv1.Verdict_DROPPED, EventKind: flowv1.EventKind_DROP,
			DropReasonKernel: r, Packets: uint64(i + 1),
		}}})
	}
	s.Publish(testFlow(9))
	s.Flush()
	waitFor(t, "all flows stored", 10*time.Second, func() bool { return len(b.sink.flows()) == len(reasons)+1 })
	var got []string
	for _, f := range b.sink.flows() {
		got = append(got, f.GetDropReasonDesc()+"/"+f.GetDropClass())
	}
	sort.Strings(got)
	if g := strings.Join(got, " "); g != "/ A_REASON_OF_2030/other NETFILTER_DROP/policy NO_SOCKET/no-socket QUEUE_PURGE/teardown" {
		t.Errorf("stored desc/class %s", g)
	}
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var series []string
	for _, mf := range mfs {
		if mf.GetName() != "trawl_relay_drops_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			series = append(series, fmt.Sprintf("%s,%s=%g", l["reason"], l["drop_class"], m.GetCounter().GetValue()))
		}
	}
	sort.Strings(series)
	if g := strings.Join(series, " "); g != "A_REASON_OF_2030,other=4 NETFILTER_DROP,policy=3 NO_SOCKET,no-socket=2 QUEUE_PURGE,teardown=1" {
		t.Errorf("trawl_relay_drops_total series %s", g)
	}
}
