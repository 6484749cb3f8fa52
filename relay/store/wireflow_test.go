package store

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trawl-dev/trawl/dev/benchdata"
	"github.com/trawl-dev/trawl/internal/flowid"
	"github.com/trawl-dev/trawl/internal/vtcodec"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	ingestv1 "github.com/trawl-dev/trawl/proto/trawl/ingest/v1"
	"github.com/trawl-dev/trawl/relay/enrich"
)

// benchBatch is one batch of the relay benchmark's data set as an agent
// sends it: the StreamRequest's bytes and the batch inside.
func benchBatch(t testing.TB, flows []*flowv1.Flow) (req []byte, b *ingestv1.Batch) {
	b = &ingestv1.Batch{NodeName: "node-0", BootId: "boot-0", Sequence: 1, Flows: flows}
	req, err := (&ingestv1.StreamRequest{Msg: &ingestv1.StreamRequest_Batch{Batch: b}}).MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return req, b
}

// flowPath is what the relay does to a batch today without Kubernetes
// metadata: decode into Flows (the ingest codec, strings from the stream's
// table), complete them as ingest's prepare does, encode them into columns.
func flowPath(t testing.TB, c *flowColumns, strs *vtcodec.Strings, req []byte) {
	m := new(ingestv1.StreamRequest)
	if err := (vtcodec.Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(req)}, &vtcodec.Request{Msg: m, Strings: strs}); err != nil {
		t.Fatal(err)
	}
	b := m.GetBatch()
	for i, f := range b.GetFlows() {
		if f.Uuid == "" {
			f.Uuid = flowid.Derive(b.NodeName, b.BootId, b.Sequence, i)
		}
		f.NodeName = b.NodeName
		enrich.DropFields(f)
	}
	addFlows(c, b.GetFlows(), 1)
}

// encodedColumns is each column of c as ClickHouse receives it.
func encodedColumns(c *flowColumns) map[string][]byte {
	out := map[string][]byte{}
	for _, col := range c.input {
		var buf proto.Buffer
		col.Data.EncodeColumn(&buf)
		out[col.Name] = buf.Buf
	}
	return out
}

// The flat view must give every column exactly what the Flow path gives,
// and leave to the Flow path what it cannot carry.
func TestWireFlowColumnsEqualTheFlowPath(t *testing.T) {
	flows := benchdata.Generate(3000, time.Now())[0].Flows
	// Shapes the data set lacks: a flow without uuid, a drop with a
	// class in another spelling, a reply, SCTP and ICMP, a failed handshake.
	flows[1].Uuid = ""
	flows[2].Verdict, flows[2].EventKind, flows[2].DropReasonKernel, flows[2].DropReasonDesc, flows[2].DropClass =
		flowv1.Verdict_DROPPED, flowv1.EventKind_DROP, "NO_SOCKET", "", "No-Socket"
	flows[3].IsReply.Value = true
	flows[4].L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_SCTP{SCTP: &flowv1.SCTP{SourcePort: 9, DestinationPort: 10}}}
	flows[5].L4 = &flowv1.Layer4{Protocol: &flowv1.Layer4_ICMPv4{ICMPv4: &flowv1.ICMPv4{Type: 8}}}
	flows[6].TcpHealth = &flowv1.TCPHealth{HandshakeSynAck: durationpb.New(-time.Second), ResetBy: flowv1.TCPSide_SERVER, ZeroWindows: 2}
	flows[7].Source.Workloads = append(flows[7].Source.Workloads, &flowv1.Workload{Name: "cron", Kind: "CronJob"})
	// Not flat: these take the Flow path.
	notFlat := map[int]*flowv1.Flow{
		10: {DestinationService: &flowv1.Service{Name: "web", Namespace: "team-01"}},
		11: {L7: &flowv1.Layer7{Record: &flowv1.Layer7_Dns{Dns: &flowv1.DNS{Query: "example.com."}}}},
		12: {IngressAllowedBy: []*flowv1.Policy{{Namespace: "team-01", Name: "allow", Kind: "CiliumNetworkPolicy"}}},
		13: {Source: &flowv1.Endpoint{Identity: 1, Labels: []string{"reserved:host"}}},
		14: {SourceNames: []string{"db.example.com"}},
	}
	for i, extra := range notFlat {
		flows[i].DestinationService, flows[i].L7, flows[i].IngressAllowedBy, flows[i].SourceNames = extra.DestinationService, extra.L7, extra.IngressAllowedBy, extra.SourceNames
		if extra.Source != nil {
			flows[i].Source = extra.Source
		}
	}
	req, _ := benchBatch(t, flows)

	wire := newFlowColumns()
	got, err := wire.addBatchWire(&wireFlow{}, batchBytes(t, req), "node-0")
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(func(yield func(int) bool) {
		for i := range notFlat {
			if !yield(i) {
				return
			}
		}
	})
	if !slices.Equal(got, want) {
		t.Errorf("flows left to the Flow path: %v, want %v", got, want)
	}

	// The Flow path over the same flows, without those.
	var flat []*flowv1.Flow
	for i, f := range flows {
		if notFlat[i] == nil {
			flat = append(flat, f)
		}
	}
	flatReq, _ := benchBatch(t, flat)
	ref := newFlowColumns()
	flowPath(t, ref, vtcodec.NewStrings(0), flatReq)
	// Uuids derive from the index in the batch: the one flow without one is
	// before every left-out flow, so both paths give it the same.
	*wire.batch = appendN(*wire.batch, 1, wire.len())
	gotCols, wantCols := encodedColumns(wire), encodedColumns(ref)
	if wire.len() != ref.len() {
		t.Fatalf("%d rows through the view, %d through Flows", wire.len(), ref.len())
	}
	for name, w := range wantCols {
		if !bytes.Equal(gotCols[name], w) {
			t.Errorf("column %s differs between the view and the Flow path", name)
		}
	}
}

// batchBytes is the Batch inside a StreamRequest's bytes.
func batchBytes(t testing.TB, req []byte) []byte {
	var b []byte
	err := fields(req, func(n protowire.Number, _ protowire.Type, _ uint64, v []byte) error {
		if n == 2 {
			b = v
		}
		return nil
	})
	if err != nil || b == nil {
		t.Fatalf("no batch in the request: %v", err)
	}
	return b
}

// A string that is not UTF-8 rejects the batch with a clear error, as the
// ingest codec does.
func TestWireFlowRejectsInvalidUTF8(t *testing.T) {
	flows := benchdata.Generate(10, time.Now())[0].Flows
	flows[4].ObservationPoint = "tcx-\xff"
	req, _ := benchBatch(t, flows)
	_, err := newFlowColumns().addBatchWire(&wireFlow{}, batchBytes(t, req), "node-0")
	if !errors.Is(err, errInvalidUTF8) {
		t.Fatalf("err = %v, want invalid UTF-8", err)
	}
}

// BenchmarkWirePath: the relay's storage path per flow on a batch of the
// benchmark's data set (1,000 flows, as the synthetic agents send them):
// "flows" decodes into Flow messages, completes them and encodes the
// columns (today's path, without Hubble metrics); "view" reads the wire
// bytes into the flat view and encodes the same columns from it.
func BenchmarkWirePath(b *testing.B) {
	flows := benchdata.Generate(1000, time.Now())[0].Flows
	req, _ := benchBatch(b, flows)
	batch := batchBytes(b, req)
	perFlow := func(b *testing.B) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
	}
	b.Run("flows", func(b *testing.B) {
		c, strs := newFlowColumns(), vtcodec.NewStrings(0)
		b.ReportAllocs()
		for b.Loop() {
			c.reset()
			flowPath(b, c, strs, req)
		}
		perFlow(b)
	})
	b.Run("view", func(b *testing.B) {
		c, w := newFlowColumns(), &wireFlow{}
		b.ReportAllocs()
		for b.Loop() {
			c.reset()
			notFlat, err := c.addBatchWire(w, batch, "node-0")
			if err != nil || len(notFlat) > 0 {
				b.Fatalf("%v, %d flows not flat", err, len(notFlat))
			}
			*c.batch = appendN(*c.batch, 1, len(flows))
		}
		perFlow(b)
	})
}
