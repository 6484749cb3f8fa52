package observe

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/trawl-dev/trawl/cli/output"
	"github.com/trawl-dev/trawl/internal/filter"
	observerv1 "github.com/trawl-dev/trawl/proto/trawl/observer/v1"
)

func benchLines(b *testing.B) [][]byte {
	data, err := os.ReadFile("testdata/trawl.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	var lines [][]byte
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.HasPrefix(l, `{"flow"`) {
			lines = append(lines, []byte(l))
		}
	}
	return lines
}

func BenchmarkDecode(b *testing.B) {
	lines := benchLines(b)
	var d Decoder
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Decode(lines[i%len(lines)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadInputCompact is the --input-file pipeline end to end, per record.
func BenchmarkReadInputCompact(b *testing.B) {
	lines := benchLines(b)
	var buf []byte
	for i := 0; i < b.N; i++ {
		buf = append(buf, lines[i%len(lines)]...)
		buf = append(buf, '\n')
	}
	p, err := output.New(io.Discard, io.Discard, output.Options{Format: output.Compact, IPTranslation: true})
	if err != nil {
		b.Fatal(err)
	}
	flt, _ := filter.Compile(nil, nil)
	b.ReportAllocs()
	b.ResetTimer()
	err = ReadInput(context.Background(), bytes.NewReader(buf), &observerv1.GetFlowsRequest{Number: math.MaxUint64}, flt, p.Write, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
}
