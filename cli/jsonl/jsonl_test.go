package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func protojsonCompact(t testing.TB, r *observerv1.GetFlowsResponse) string {
	out, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, out); err != nil {
		t.Fatal(err)
	}
	return c.String()
}

// randomRecord fills a random subset of fields with values that exercise
// the encodings: zero and non-zero, unknown enum numbers, nanosecond
// precisions, empty messages, every L4 member, strings needing escapes.
func randomRecord(rng *rand.Rand) *observerv1.GetFlowsResponse {
	pick := func() bool { return rng.IntN(2) == 0 }
	str := func() string {
		switch rng.IntN(8) {
		case 0:
			return ""
		case 1:
			return "quote\"back\\slash\nnewline"
		case 2:
			return "ünïcode-ポッド"
		}
		return fmt.Sprintf("name-%d", rng.IntN(1000))
	}
	ts := func() *timestamppb.Timestamp {
		if !pick() {
			return nil
		}
		nanos := []int32{0, 123000000, 123456000, 123456789, 1}[rng.IntN(5)]
		return &timestamppb.Timestamp{Seconds: 1795000000 + rng.Int64N(1e6), Nanos: nanos}
	}
	ep := func() *flowv1.Endpoint {
		if !pick() {
			return nil
		}
		e := &flowv1.Endpoint{ID: uint32(rng.IntN(3)), Identity: uint32(rng.IntN(70000)), ClusterName: str(), Namespace: str(), PodName: str(), NodeName: str()}
		for range rng.IntN(3) {
			e.Labels = append(e.Labels, "k8s:"+str())
		}
		if pick() {
			e.Workloads = []*flowv1.Workload{{Name: str(), Kind: str()}}
		}
		return e
	}
	if rng.IntN(10) == 0 {
		return &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_LostEvents{LostEvents: &flowv1.LostEvent{
			Source: flowv1.LostEventSource(rng.IntN(9)), NumEventsLost: rng.Uint64(), Cpu: wrapperspb.Int32(int32(rng.IntN(64)) - 1),
			NodeName: str(), Time: ts(), Detail: str()}}, NodeName: str(), Time: ts()}
	}
	if rng.IntN(20) == 0 {
		return &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Conntrack{Conntrack: &flowv1.ConntrackSample{NodeName: str(), Entries: 5, Utilization: 0.25}}}
	}
	f := &flowv1.Flow{
		Time: ts(), Uuid: str(), Verdict: flowv1.Verdict(rng.IntN(10)), DropReasonDesc: str(),
		Source: ep(), Destination: ep(), Type: flowv1.FlowType(rng.IntN(4)), NodeName: str(),
		TrafficDirection: flowv1.TrafficDirection(rng.IntN(3)), EventKind: flowv1.EventKind(rng.IntN(9)),
		FirstSeen: ts(), LastSeen: ts(), Packets: rng.Uint64N(1 << 40), Bytes: rng.Uint64(), DropReasonKernel: str(),
		Netns: rng.Uint64N(5e9), ObservationPoint: str(), DropClass: str(),
	}
	if pick() {
		f.Ethernet = &flowv1.Ethernet{Source: str(), Destination: str()}
	}
	if pick() {
		f.IP = &flowv1.IP{Source: "10.0.0.1", Destination: "fd00::1", IpVersion: flowv1.IPVersion(rng.IntN(3)), Encrypted: pick()}
	}
	switch rng.IntN(7) {
	case 0:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_TCP{TCP: &flowv1.TCP{SourcePort: uint32(rng.IntN(65536)), DestinationPort: 443,
			Flags: &flowv1.TCPFlags{SYN: pick(), ACK: pick(), FIN: pick(), RST: pick(), PSH: pick(), URG: pick(), ECE: pick(), CWR: pick(), NS: pick()}}}}
	case 1:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_UDP{UDP: &flowv1.UDP{SourcePort: 53, DestinationPort: uint32(rng.IntN(65536))}}}
	case 2:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv4{ICMPv4: &flowv1.ICMPv4{Type: uint32(rng.IntN(20)), Code: uint32(rng.IntN(3))}}}
	case 3:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv6{ICMPv6: &flowv1.ICMPv6{Type: 129}}}
	case 4:
		f.L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_SCTP{SCTP: &flowv1.SCTP{}}}
	case 5:
		f.L4 = &flowv1.Layer4{}
	}
	if pick() {
		f.IsReply = wrapperspb.Bool(pick())
	}
	if pick() {
		f.SourceService = &flowv1.Service{Name: str(), Namespace: str()}
	}
	if pick() {
		f.DestinationService = &flowv1.Service{}
	}
	if pick() {
		f.SourceNames = []string{str(), str()}
		f.DestinationNames = []string{str()}
	}
	if pick() {
		f.Interface = &flowv1.NetworkInterface{Index: uint32(rng.IntN(50)), Name: str()}
	}
	switch rng.IntN(4) {
	case 0:
		f.L7 = &flowv1.Layer7{Type: flowv1.L7FlowType(rng.IntN(5)), LatencyNs: rng.Uint64N(1 << 40)}
	case 1:
		f.L7 = &flowv1.Layer7{Type: flowv1.L7FlowType_RESPONSE, LatencyNs: rng.Uint64N(3), Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{
			Query: str() + ".", Ips: []string{"93.184.216.34", "2001:db8::1"}[:rng.IntN(3)], Ttl: uint32(rng.IntN(2)) * rng.Uint32(),
			Cnames: []string{str()}, ObservationSource: str(), Rcode: uint32(rng.IntN(12)), Qtypes: []string{"A", "AAAA"}[:rng.IntN(3)],
			Rrtypes: []string{"CNAME", "A"}[:rng.IntN(3)]}}}
	case 2:
		f.L7 = &flowv1.Layer7{Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{}}}
	}
	pol := func() []*flowv1.Policy {
		if !pick() {
			return nil
		}
		return []*flowv1.Policy{{Name: str(), Namespace: str(), Labels: []string{str()}, Revision: rng.Uint64N(100), Kind: "NetworkPolicy"}}
	}
	f.EgressAllowedBy, f.IngressAllowedBy, f.EgressDeniedBy, f.IngressDeniedBy = pol(), pol(), pol(), pol()
	if pick() {
		f.Conntrack = &flowv1.ConntrackInfo{NewEntry: pick()}
	}
	if pick() {
		dur := func() *durationpb.Duration {
			if !pick() {
				return nil
			}
			nanos := []int32{0, 400000, 123456000, 123456789, 1}[rng.IntN(5)]
			secs := []int64{0, 0, 3, 86400}[rng.IntN(4)]
			if rng.IntN(5) == 0 {
				secs, nanos = -secs, -nanos
			}
			return &durationpb.Duration{Seconds: secs, Nanos: nanos}
		}
		f.TcpHealth = &flowv1.TCPHealth{HandshakeSynAck: dur(), HandshakeAck: dur(), Retransmits: uint32(rng.IntN(3)) * rng.Uint32(),
			ResetBy: flowv1.TCPSide(rng.IntN(4)), ZeroWindows: uint32(rng.IntN(3))}
	}
	return &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: f}, NodeName: str(), Time: ts()}
}

// The random records set every field of Flow, so a field added to the
// proto without a place in the fast encoder and decoder fails the tests
// below instead of vanishing from JSON output.
func TestRandomRecordsSetEveryFlowField(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	seen := map[protoreflect.Name]bool{}
	for range 2000 {
		f := randomRecord(rng).GetFlow()
		f.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			seen[fd.Name()] = true
			return true
		})
	}
	fields := (&flowv1.Flow{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		if name := fields.Get(i).Name(); !seen[name] {
			t.Errorf("Flow.%s is never set by randomRecord: add it there and to the fast encoder and decoder", name)
		}
	}
}

func TestAppendWritesWhatProtojsonWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		r := randomRecord(rng)
		got, err := Append(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		if want := protojsonCompact(t, r); string(got) != want {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestUnmarshalReadsWhatProtojsonReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		r := randomRecord(rng)
		// protojson's own spacing, and the compact form.
		spaced, _ := protojson.MarshalOptions{UseProtoNames: true, Multiline: i%2 == 0}.Marshal(r)
		camel, _ := protojson.Marshal(r) // JSON (camelCase) names are accepted too
		for _, line := range [][]byte{spaced, []byte(protojsonCompact(t, r)), camel} {
			got, err := Unmarshal(line)
			if err != nil {
				t.Fatalf("record %d: %v\n%s", i, err, line)
			}
			if !proto.Equal(got.GetFlowsResponse, r) {
				t.Fatalf("record %d differs after decoding\n%s\n got %v\nwant %v", i, line, got.GetFlowsResponse, r)
			}
		}
	}
}

func TestADecoderKeepsEveryRecordItDecoded(t *testing.T) {
	// A Decoder shares strings and cuts messages from slabs: records decoded
	// earlier must stay intact while later ones are decoded.
	rng := rand.New(rand.NewPCG(9, 10))
	var d Decoder
	var want, got []*observerv1.GetFlowsResponse
	for range 3000 {
		r := randomRecord(rng)
		res, err := d.Unmarshal([]byte(protojsonCompact(t, r)))
		if err != nil {
			t.Fatal(err)
		}
		want, got = append(want, r), append(got, res.GetFlowsResponse)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("record %d changed after later decodes\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

func TestUnmarshalOfHubbleAndOddLinesMatchesProtojson(t *testing.T) {
	var lines [][]byte
	for _, file := range []string{"../observe/testdata/hubble.jsonl", "../observe/testdata/trawl.jsonl"} {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, append([]byte(nil), sc.Bytes()...))
		}
		f.Close()
	}
	lines = append(lines,
		[]byte(`{"flow":{"verdict":"NOT_A_VERDICT","l4":{"TCP":{"source_port":"80"}},"extra":{"deep":[1,2.5e3,{"x":null}]}}}`),
		[]byte(`{"flow":{"verdict":3,"packets":12,"bytes":"13"}}`),
		[]byte(`{"flow":{"uuid":null}}`),
		[]byte(`{"flow":{"time":"2026-11-27T10:00:00.5+02:00"}}`),
		[]byte(`{"flow":{"node_name":"esc\u0041ped"}}`),
		[]byte(hubbleDNSLine),
		[]byte(`{"flow":{"Type":"L7","l7":{"type":"REQUEST","latency_ns":"0","http":{"code":200,"method":"GET"}},"event_type":{"type":129}}}`),
		[]byte(`{"flow":{"l7":{"dns":{"query":"a."},"dns":{"rcode":3}}}}`),
		[]byte(`{"flow":{"l7":{"type":"RESPONSE","dns":{"rcode":"3"}}}}`),
		[]byte(`{"flow":{"tcp_health":{"handshake_syn_ack":"1.s","handshake_ack":".5s","retransmits":"3","reset_by":"CLIENT"}}}`),
		[]byte(`{"flow":{"tcpHealth":{"handshakeSynAck":"+0.000400s","resetBy":2,"zeroWindows":1}}}`),
		[]byte(`{"flow":{"tcp_health":{"handshake_ack":"0.0004000000s"}}}`),
		[]byte(`{"flow":{"tcp_health":{"handshake_ack":"315576000001s"}}}`),
		[]byte(`{"flow":{"tcp_health":{"retransmits":1},"tcp_health":{"zero_windows":1}}}`),
		[]byte(`{"flow":{"tcp_health":{"reset_by":"SOMEONE"},"event_kind":"CONNECT_TIMEOUT"}}`),
	)
	for i, line := range lines {
		want := &observerv1.GetFlowsResponse{}
		wantErr := protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(line, want)
		got, err := Unmarshal(line)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("line %d: error %v, protojson %v\n%s", i+1, err, wantErr, line)
		}
		if err == nil && !proto.Equal(got.GetFlowsResponse, want) {
			t.Fatalf("line %d differs from protojson\n got %v\nwant %v", i+1, got.GetFlowsResponse, want)
		}
	}
}

// A DNS response as `hubble observe -o jsonpb` prints Cilium's proxy records.
const hubbleDNSLine = `{"flow":{"time":"2026-11-27T10:00:00.123Z","verdict":"FORWARDED","Type":"L7","node_name":"kind-worker",` +
	`"l7":{"type":"RESPONSE","latency_ns":"1250000","dns":{"query":"api.example.com.","ips":["93.184.216.34"],"ttl":300,` +
	`"observation_source":"proxy","rcode":3,"qtypes":["A"],"rrtypes":["A"]}},"destination_names":["api.example.com"],` +
	`"event_type":{"type":129},"Summary":"DNS Answer"}}`

// DNS records stay on the fast path both ways: decoded without protojson
// (the Hubble event type is known), and Append's line is Append's own.
func TestDNSRecordsTakeTheFastPath(t *testing.T) {
	d, err := Unmarshal([]byte(hubbleDNSLine))
	if err != nil {
		t.Fatal(err)
	}
	if d.HubbleEventType != 129 {
		t.Errorf("Hubble event type %d, want 129 (-1: the line went to protojson)", d.HubbleEventType)
	}
	dns := d.GetFlow().GetL7().GetDns()
	if dns.GetQuery() != "api.example.com." || dns.GetRcode() != 3 || d.GetFlow().GetL7().GetLatencyNs() != 1250000 || len(dns.GetIps()) != 1 {
		t.Errorf("decoded l7 %v", d.GetFlow().GetL7())
	}
	e := encoder{}
	if !e.response(d.GetFlowsResponse) {
		t.Errorf("the encoder's fast path refused the record: %s", e.b)
	}
}

// A connection's TCP health and a connection timeout stay on the fast path
// both ways.
func TestTCPHealthTakesTheFastPath(t *testing.T) {
	line := `{"flow":{"event_kind":"AGGREGATE","tcp_health":{"handshake_syn_ack":"0.000300s","handshake_ack":"0.000100s",` +
		`"retransmits":3,"reset_by":"SERVER","zero_windows":2}}}`
	d, err := Unmarshal([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if d.HubbleEventType == -1 {
		t.Error("the line went to protojson")
	}
	h := d.GetFlow().GetTcpHealth()
	if h.GetHandshakeSynAck().AsDuration() != 300*time.Microsecond || h.GetHandshakeAck().AsDuration() != 100*time.Microsecond ||
		h.GetRetransmits() != 3 || h.GetResetBy() != flowv1.TCPSide_SERVER || h.GetZeroWindows() != 2 {
		t.Errorf("decoded tcp_health %v", h)
	}
	e := encoder{}
	if !e.response(d.GetFlowsResponse) || string(e.b) != line {
		t.Errorf("the encoder's fast path wrote %s (ok %v), want %s", e.b, e.ok, line)
	}
	timeout := &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{EventKind: flowv1.EventKind_CONNECT_TIMEOUT}}}
	if b, _ := Append(nil, timeout); string(b) != `{"flow":{"event_kind":"CONNECT_TIMEOUT"}}` {
		t.Errorf("a timeout is written %s", b)
	}
}

// Durations the encoder cannot write the way protojson does go to
// protojson, which reports them.
func TestInvalidDurationsAreProtojsonsErrors(t *testing.T) {
	for _, d := range []*durationpb.Duration{{Seconds: 1, Nanos: -1}, {Seconds: maxDurationSeconds + 1}, {Nanos: 1e9}} {
		r := &observerv1.GetFlowsResponse{ResponseTypes: &observerv1.GetFlowsResponse_Flow{Flow: &flowv1.Flow{TcpHealth: &flowv1.TCPHealth{HandshakeAck: d}}}}
		if _, err := Append(nil, r); err == nil {
			t.Errorf("%v: no error", d)
		}
	}
}

func TestParseDurationAgreesWithProtojson(t *testing.T) {
	for _, s := range []string{"0s", "3s", "-3s", "0.5s", "-0.5s", "1.000000001s", "0.000400s", "315576000000s", "315576000000.999999999s",
		"315576000001s", "00s", "01s", "1.s", ".5s", "1.0000000001s", "s", "-s", "1", "1e3s", "1.5", "+1s", "1.-5s", "--1s"} {
		want := &durationpb.Duration{}
		wantErr := protojson.Unmarshal([]byte(`"`+s+`"`), want)
		secs, nanos, ok := parseDuration([]byte(s))
		if !ok {
			continue // protojson decides
		}
		if wantErr != nil || secs != want.GetSeconds() || nanos != want.GetNanos() {
			t.Errorf("%q: parseDuration %d s %d ns, protojson %v (%v)", s, secs, nanos, want, wantErr)
		}
	}
	if _, _, ok := parseDuration([]byte("0.000400s")); !ok {
		t.Error("protojson's own form left the fast path")
	}
}

func TestBrokenLinesAreErrors(t *testing.T) {
	for _, line := range []string{``, `{`, `{"flow":{}`, `[]`, `{"flow":5}`, `{"flow":{}} trailing`, `{"flow":{"packets":-1}}`} {
		if _, err := Unmarshal([]byte(line)); err == nil {
			t.Errorf("%q decoded without error", line)
		}
	}
}

// fixtureFlows are the flow lines of the CLI's fixture: realistic records.
func fixtureFlows(b *testing.B) [][]byte {
	data, err := os.ReadFile("../observe/testdata/trawl.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		if bytes.HasPrefix(l, []byte(`{"flow"`)) {
			lines = append(lines, l)
		}
	}
	return lines
}

func BenchmarkUnmarshal(b *testing.B) {
	lines := fixtureFlows(b)
	var d Decoder
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Unmarshal(lines[i%len(lines)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProtojsonUnmarshal(b *testing.B) {
	lines := fixtureFlows(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := &observerv1.GetFlowsResponse{}
		if err := protojson.Unmarshal(lines[i%len(lines)], r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	var rs []*observerv1.GetFlowsResponse
	for _, l := range fixtureFlows(b) {
		d, err := Unmarshal(l)
		if err != nil {
			b.Fatal(err)
		}
		rs = append(rs, d.GetFlowsResponse)
	}
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf, _ = Append(buf[:0], rs[i%len(rs)])
	}
}

func TestParseUTCAgreesWithTimeParse(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	check := func(s string) {
		t.Helper()
		sec, nanos, ok := parseUTC([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok {
			return // time.Parse decides these
		}
		if err != nil {
			t.Fatalf("%s: fast path accepted what time.Parse rejects (%v)", s, err)
		}
		if sec != want.Unix() || nanos != int32(want.Nanosecond()) {
			t.Fatalf("%s: got %d.%09d, want %d.%09d", s, sec, nanos, want.Unix(), want.Nanosecond())
		}
	}
	for range 20000 {
		at := time.Unix(rng.Int64N(253402300799), 0).UTC()
		for _, frac := range []string{"", ".5", ".123", ".123456", ".123456789", ".000000001"} {
			check(at.Format("2006-01-02T15:04:05") + frac + "Z")
		}
	}
	for _, s := range []string{"2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-27T24:00:00Z",
		"2026-11-27T10:00:60Z", "0000-01-01T00:00:00Z", "2026-11-27T10:00:00.Z", "2026-11-27T10:00:00.1234567890Z", "2026-11-27T10:00:00+01:00"} {
		check(s)
		if _, _, ok := parseUTC([]byte(s)); ok {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				t.Errorf("%s accepted by the fast path only", s)
			}
		}
	}
}
