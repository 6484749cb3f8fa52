package output

import (
	"io"
	"testing"
)

func benchPrint(b *testing.B, o Options) {
	records := fixture(&testing.T{})[:10]
	p, err := New(io.Discard, io.Discard, o)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Write(records[i%len(records)]); err != nil {
			b.Fatal(err)
		}
	}
	p.Flush()
}

func BenchmarkCompact(b *testing.B) { benchPrint(b, Options{Format: Compact, IPTranslation: true}) }
func BenchmarkJSON(b *testing.B)    { benchPrint(b, Options{Format: JSON}) }
