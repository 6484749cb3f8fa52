package observe

import (
	"os"
	"strings"
	"testing"
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
