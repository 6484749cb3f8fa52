package export

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func TestJSONLinesWritesThePinnedEnvelopeWithHubbleFieldNames(t *testing.T) {
	var buf bytes.Buffer
	j := NewJSONLines(&buf)
	ts := timestamppb.New(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC))
	j.Publish(&observerv1.GetFlowsResponse{
		ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{
			Time:           ts,
			Verdict:        flowv1.Verdict_DROPPED,
			DropReasonDesc: "NO_SOCKET",
			IP:             &flowv1.IP{Source: "10.0.0.1", Destination: "10.0.0.2", IpVersion: flowv1.IPVersion_IPv4},
			L4:             &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: 1, DestinationPort: 9}}},
		}},
		NodeName: "n1",
		Time:     ts,
	})
	j.Publish(&observerv1.GetFlowsResponse{
		ResponseTypes: &observerv1.GetFlowsResponse_Conntrack{Conntrack: &flowv1.ConntrackSample{Entries: 5}},
		NodeName:      "n1",
		Time:          ts,
	})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want one per record:\n%s", len(lines), buf.String())
	}
	var env map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &env); err != nil {
		t.Fatal(err)
	}
	f, _ := env["flow"].(map[string]any)
	if f["drop_reason_desc"] != "NO_SOCKET" || f["verdict"] != "DROPPED" {
		t.Errorf("flow %v: want proto field names and enum names", f)
	}
	if ip, _ := f["IP"].(map[string]any); ip["source"] != "10.0.0.1" {
		t.Errorf("IP %v", f["IP"])
	}
	if l4, _ := f["l4"].(map[string]any); l4["TCP"] == nil {
		t.Errorf("l4 %v, want a TCP key", f["l4"])
	}
	if env["node_name"] != "n1" || env["time"] != "2026-11-27T08:00:00Z" {
		t.Errorf("envelope %v: want node_name and time beside the flow", env)
	}
	if !strings.Contains(lines[1], `"conntrack":`) {
		t.Errorf("conntrack line %s", lines[1])
	}
}
