package hubble

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/trawl-dev/trawl/dev/benchdata"
	flowv1 "github.com/trawl-dev/trawl/proto/trawl/flow/v1"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

// benchRecords are the golden file's flow records: every kind, enriched
// with endpoints, labels, workloads and policies as the relay serves them.
func benchRecords(b *testing.B) []*observerv1.GetFlowsResponse {
	var out []*observerv1.GetFlowsResponse
	for _, c := range goldenRecords() {
		if c.rec.GetFlow() != nil {
			out = append(out, c.rec)
		}
	}
	if len(out) == 0 {
		b.Fatal("no records")
	}
	return out
}

// BenchmarkToHubble is the translation of one Trawl record to Hubble's
// GetFlowsResponse (flows/s per core = 1e9 / ns/op with -cpu 1).
func BenchmarkToHubble(b *testing.B) {
	recs := benchRecords(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if ToHubble(recs[i%len(recs)]) == nil {
			b.Fatal("nil")
		}
	}
}

// BenchmarkToHubbleMarshal adds the protobuf encoding gRPC does per flow.
func BenchmarkToHubbleMarshal(b *testing.B) {
	recs := benchRecords(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := proto.Marshal(ToHubble(recs[i%len(recs)])); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshalTrawl is the encoding of the same records on Trawl's own
// API, for comparison.
func BenchmarkMarshalTrawl(b *testing.B) {
	recs := benchRecords(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := proto.Marshal(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMetrics is the cost of Hubble's default metrics per ingested
// record, and with namespace contexts. The golden records include three
// DNS records and three of TCP health (two with tcp_health, a connect
// timeout) in fourteen (far more than real traffic has); "l3l4-records" leaves the DNS
// ones out; "without-tcp-health" runs the default metrics as they were
// before TCP health, "without-dns" as they were before DNS (neither
// handler) for comparison.
func BenchmarkMetrics(b *testing.B) {
	without := func(names ...string) []string {
		var out []string
		for _, spec := range DefaultMetrics {
			if !slices.Contains(names, familyName(spec)) {
				out = append(out, spec)
			}
		}
		return out
	}
	for _, c := range []struct {
		name  string
		specs []string
		l3l4  bool
	}{
		{"default", DefaultMetrics, false},
		{"default-l3l4-records", DefaultMetrics, true},
		{"without-tcp-health", without("tcp-health"), false},
		{"without-tcp-health-l3l4-records", without("tcp-health"), true},
		{"without-dns", without("dns", "tcp-health"), false},
		{"without-dns-l3l4-records", without("dns", "tcp-health"), true},
		{"namespace-context", []string{"flow:sourceContext=namespace;destinationContext=namespace", "drop:sourceContext=namespace;destinationContext=namespace",
			"tcp", "port-distribution", "icmp", "policy:sourceContext=namespace;destinationContext=namespace"}, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			m, err := NewMetrics(MetricsConfig{Metrics: c.specs}, nil)
			if err != nil {
				b.Fatal(err)
			}
			var batch []*flowv1.Flow
			for len(batch) < 1000 {
				for _, r := range benchRecords(b) {
					if !c.l3l4 || r.GetFlow().GetL7() == nil {
						batch = append(batch, r.GetFlow())
					}
				}
			}
			batch = batch[:1000]
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				m.Observe(batch, nil)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/record")
		})
	}
}

// BenchmarkMetricsOnTheRelayDataSet is the default metrics' cost per record
// on the relay benchmark's data set (dev/benchdata: 200 pods, 5,000 skewed
// tuples, 40 % with a policy, TCP health on a fifth of the aggregates),
// 50 batches of 1,000 records in turn, so that the series maps and the
// records are as large and as cold as at full ingest.
func BenchmarkMetricsOnTheRelayDataSet(b *testing.B) {
	m, err := NewMetrics(MetricsConfig{Metrics: DefaultMetrics}, nil)
	if err != nil {
		b.Fatal(err)
	}
	batches := benchdata.Generate(50_000, time.Now())
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		m.Observe(batches[n%len(batches)].Flows, nil)
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*benchdata.BatchSize), "ns/record")
}
