package hubble

import (
	"math"
	"slices"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trawl-dev/trawl/internal/filter"
	"github.com/trawl-dev/trawl/internal/filter/filtertest"
)

// hubbleCases are Hubble filters with the flows of filtertest's data set
// Hubble's own filter semantics select (Cilium's pkg/hubble/filters), for
// the records as Trawl serves them (a record's event type as eventType
// gives it).
var hubbleCases = []struct {
	name   string
	wl, bl []*flowpb.FlowFilter
	want   []int
}{
	{name: "no filter", want: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	{name: "--type drop", wl: ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypeDrop}}}), want: []int{2, 3, 10}},
	{name: "--type trace", wl: ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypeTrace}}}), want: []int{0, 1, 4, 5, 6, 7, 9}},
	{name: "--type policy-verdict", wl: ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypePolicyVerdict}}}), want: []int{8}},
	{name: "--type drop:133 (policy denied)", wl: ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypeDrop, MatchSubType: true, SubType: 133}}}), want: []int{2}},
	{name: "--type trace --type drop:133", wl: ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypeTrace}, {Type: msgTypeDrop, MatchSubType: true, SubType: 133}}}),
		want: []int{0, 1, 2, 4, 5, 6, 7, 9}},
	{name: "event type 0 matches every flow", wl: ff(&flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{}}}), want: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	{name: "reply false also matches drops of unknown direction", wl: ff(&flowpb.FlowFilter{Reply: []bool{false}}), want: []int{0, 2, 3, 5, 10}},
	{name: "reply true", wl: ff(&flowpb.FlowFilter{Reply: []bool{true}}), want: []int{1, 8}},
	{name: "forwarded, not replies", wl: ff(&flowpb.FlowFilter{Verdict: []flowpb.Verdict{flowpb.Verdict_FORWARDED}, Reply: []bool{false}}), want: []int{0, 5}},
	{name: "dropped, not replies", wl: ff(&flowpb.FlowFilter{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}, Reply: []bool{false}}), want: []int{2, 3, 10}},
	{name: "Hubble UI's namespace view: from shop, drops and traces, not replies",
		wl: ff(&flowpb.FlowFilter{SourcePod: []string{"shop/"}, Reply: []bool{false}, EventType: []*flowpb.EventTypeFilter{{Type: msgTypeDrop}, {Type: msgTypeTrace}}},
			&flowpb.FlowFilter{DestinationPod: []string{"shop/"}, Reply: []bool{false}, EventType: []*flowpb.EventTypeFilter{{Type: msgTypeDrop}, {Type: msgTypeTrace}}}),
		bl: ff(&flowpb.FlowFilter{SourceLabel: []string{"reserved:unknown"}}, &flowpb.FlowFilter{DestinationLabel: []string{"reserved:unknown"}},
			&flowpb.FlowFilter{SourceFqdn: []string{"*.cluster.local*"}}, &flowpb.FlowFilter{DestinationFqdn: []string{"*.cluster.local*"}},
			&flowpb.FlowFilter{Protocol: []string{"ICMPv4"}}, &flowpb.FlowFilter{Protocol: []string{"ICMPv6"}}),
		want: []int{0, 2, 3, 5}},
	{name: "--not --protocol icmp", bl: ff(&flowpb.FlowFilter{Protocol: []string{"icmp"}}), want: []int{0, 1, 2, 3, 5, 6, 8, 9, 10}},
	{name: "--node-name node-c*", wl: ff(&flowpb.FlowFilter{NodeName: []string{"node-c*"}}), want: []int{5, 6}},
	{name: "--node-name default/node-a (Cilium's default cluster)", wl: ff(&flowpb.FlowFilter{NodeName: []string{"default/node-a"}}), want: []int{0, 1, 4, 7}},
	{name: "--node-name other-cluster/node-a", wl: ff(&flowpb.FlowFilter{NodeName: []string{"other/node-a"}}), want: nil},
	{name: "--not --node-name other-cluster/", bl: ff(&flowpb.FlowFilter{NodeName: []string{"other/"}}), want: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
	{name: "drop reason POLICY_DENIED", wl: ff(&flowpb.FlowFilter{DropReasonDesc: []flowpb.DropReason{flowpb.DropReason_POLICY_DENIED}}), want: []int{2}},
	{name: "drop reason Trawl never reports", wl: ff(&flowpb.FlowFilter{DropReasonDesc: []flowpb.DropReason{flowpb.DropReason_TTL_EXCEEDED}}), want: nil},
	{name: "--to-fqdn as typed", wl: ff(&flowpb.FlowFilter{DestinationFqdn: []string{"API.example.com."}}), want: []int{3}},
	{name: "--tcp-flags SYN", wl: ff(&flowpb.FlowFilter{TcpFlags: []*flowpb.TCPFlags{{SYN: true}}}), want: []int{0, 2}},
	{name: "--from-pod shop/web --to-port 5432", wl: ff(&flowpb.FlowFilter{SourcePod: []string{"shop/web"}, DestinationPort: []string{"5432"}}), want: []int{0}},
	{name: "--to-service shop/web-svc", wl: ff(&flowpb.FlowFilter{DestinationService: []string{"shop/web-svc"}}), want: []int{5}},
	{name: "--from-label k8s:app=db", wl: ff(&flowpb.FlowFilter{SourceLabel: []string{"k8s:app=db"}}), want: []int{1, 8}},
	{name: "--to-workload StatefulSet", wl: ff(&flowpb.FlowFilter{DestinationWorkload: []*flowpb.Workload{{Kind: "StatefulSet"}}}), want: []int{0, 2}},
	{name: "--traffic-direction ingress --verdict DROPPED", wl: ff(&flowpb.FlowFilter{TrafficDirection: []flowpb.TrafficDirection{flowpb.TrafficDirection_INGRESS}, Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}), want: []int{2}},
	{name: "--ip-version v6", wl: ff(&flowpb.FlowFilter{IpVersion: []flowpb.IPVersion{flowpb.IPVersion_IPv6}}), want: []int{4}},
	{name: "--interface eth0", wl: ff(&flowpb.FlowFilter{Interface: []*flowpb.NetworkInterface{{Name: "eth0"}}}), want: []int{6}},
	{name: "--from-ip CIDR", wl: ff(&flowpb.FlowFilter{SourceIp: []string{"10.0.1.0/24"}}), want: []int{0, 3, 7}},
	{name: "--uuid", wl: ff(&flowpb.FlowFilter{Uuid: []string{filtertest.UUID(6)}}), want: []int{6}},
	{name: "an allow filter nothing matches", wl: ff(&flowpb.FlowFilter{NodeName: []string{"elsewhere/"}}), want: nil},
}

func ff(fs ...*flowpb.FlowFilter) []*flowpb.FlowFilter { return fs }

// Translated Hubble filters select, with Trawl's one filter
// implementation, what Hubble's semantics select.
func TestTranslatedFiltersMatchHubbleSemantics(t *testing.T) {
	flows := filtertest.Flows()
	for _, c := range hubbleCases {
		t.Run(c.name, func(t *testing.T) {
			allow, deny, err := TranslateFilters(c.wl, c.bl)
			if err != nil {
				t.Fatal(err)
			}
			f, err := filter.Compile(allow, deny)
			if err != nil {
				t.Fatalf("Trawl refuses the translation: %v", err)
			}
			var got []int
			for i, fl := range flows {
				if f.MatchFlow(fl) {
					got = append(got, i)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("selected %v, want %v\nallow %v\ndeny %v", got, c.want, allow, deny)
			}
		})
	}
}

// Every FlowFilter field of the pinned Cilium API is either translated or
// refused with a reason: a Cilium upgrade that adds one fails here until
// it is decided.
func TestEveryFilterFieldIsDecided(t *testing.T) {
	fds := (&flowpb.FlowFilter{}).ProtoReflect().Descriptor().Fields()
	for i := range fds.Len() {
		name := fds.Get(i).Name()
		if supportedFields[name] == (unsupportedWhy[name] != "") {
			t.Errorf("FlowFilter.%s: supported=%v, refusal reason %q: decide one", name, supportedFields[name], unsupportedWhy[name])
		}
	}
}

// A filter Trawl cannot evaluate is refused with InvalidArgument naming
// the list, the filter and the field.
func TestUnsupportedFiltersAreRefused(t *testing.T) {
	fds := (&flowpb.FlowFilter{}).ProtoReflect().Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if supportedFields[fd.Name()] {
			continue
		}
		f := &flowpb.FlowFilter{}
		m := f.ProtoReflect()
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(sample(l.NewElement(), fd))
		case fd.Kind() == protoreflect.MessageKind:
			f.Experimental = &flowpb.FlowFilter_Experimental{CelExpression: []string{"true"}}
		}
		_, _, err := TranslateFilters(nil, []*flowpb.FlowFilter{{}, f})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "blacklist[1]."+string(fd.Name())) {
			t.Errorf("%s: got %v, want InvalidArgument naming blacklist[1].%s", fd.Name(), err, fd.Name())
		}
	}
	for _, c := range []struct {
		name  string
		f     *flowpb.FlowFilter
		field string
	}{
		{"pod without namespace", &flowpb.FlowFilter{SourcePod: []string{"xwing"}}, "source_pod"},
		{"pod in any namespace", &flowpb.FlowFilter{DestinationPod: []string{"/xwing"}}, "destination_pod"},
		{"service without namespace", &flowpb.FlowFilter{SourceService: []string{"api"}}, "source_service"},
		{"L7 protocol", &flowpb.FlowFilter{Protocol: []string{"http"}}, "protocol"},
		{"unknown protocol", &flowpb.FlowFilter{Protocol: []string{"quic"}}, "protocol"},
		{"debug event type", &flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypeDebug}}}, "event_type"},
		{"Kafka protocol", &flowpb.FlowFilter{Protocol: []string{"kafka"}}, "protocol"},
		{"a bad dns_query expression", &flowpb.FlowFilter{DnsQuery: []string{"a(b"}}, "dns_query"},
		{"trace observation point", &flowpb.FlowFilter{EventType: []*flowpb.EventTypeFilter{{Type: msgTypeTrace, MatchSubType: true, SubType: traceToLxc}}}, "event_type"},
		{"unknown drop reason", &flowpb.FlowFilter{DropReasonDesc: []flowpb.DropReason{flowpb.DropReason_DROP_REASON_UNKNOWN}}, "drop_reason_desc"},
		{"node name with two slashes", &flowpb.FlowFilter{NodeName: []string{"a/b/c"}}, "node_name"},
		{"a bad address (refused by Trawl's filter)", &flowpb.FlowFilter{SourceIp: []string{"10.0.0.300"}}, "source_ip"},
		{"a bad port", &flowpb.FlowFilter{Reply: []bool{false}, DestinationPort: []string{"http"}}, "destination_port"},
		{"a bad selector", &flowpb.FlowFilter{SourceLabel: []string{"app in (a"}}, "source_label"},
	} {
		_, _, err := TranslateFilters([]*flowpb.FlowFilter{c.f}, nil)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "whitelist[0]."+c.field) {
			t.Errorf("%s: got %v, want InvalidArgument naming whitelist[0].%s", c.name, err, c.field)
		}
	}
}

func sample(v protoreflect.Value, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.Uint32Kind:
		return protoreflect.ValueOfUint32(7)
	case protoreflect.Uint64Kind:
		return protoreflect.ValueOfUint64(7)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	}
	return v // an empty message element
}

func TestTranslateRequest(t *testing.T) {
	since := timestamppb.Now()
	for _, c := range []struct {
		name        string
		req         *observerpb.GetFlowsRequest
		number      uint64
		first, keep bool
		sinceSet    bool
	}{
		{"--last 20", &observerpb.GetFlowsRequest{Number: 20}, 20, false, false, false},
		{"--first 5", &observerpb.GetFlowsRequest{Number: 5, First: true}, 5, true, false, false},
		{"--since with --last: since wins, the first N from it", &observerpb.GetFlowsRequest{Number: 5, Since: since}, 5, true, false, true},
		{"--since --follow: everything from since", &observerpb.GetFlowsRequest{Number: 5, Since: since, Follow: true}, 0, false, false, true},
		{"--all: everything, oldest first", &observerpb.GetFlowsRequest{Number: math.MaxUint64}, 0, false, false, true},
		{"--follow: live only", &observerpb.GetFlowsRequest{Follow: true}, 0, false, false, false},
	} {
		got, err := TranslateRequest(c.req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got.GetNumber() != c.number || got.GetFirst() != c.first || (got.GetSince() != nil) != c.sinceSet || got.GetFollow() != c.req.GetFollow() {
			t.Errorf("%s: got %v", c.name, got)
		}
	}
	if _, err := TranslateRequest(&observerpb.GetFlowsRequest{First: true, Follow: true, Number: 3}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("first with follow: %v", err)
	}
}
