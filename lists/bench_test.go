package lists

import (
	"bytes"
	"io"
	"strconv"
	"testing"
)

// BenchmarkReader reads a generated 100,000-row, 5-column list from memory
// and reports rows per second.
func BenchmarkReader(b *testing.B) {
	const rows = 100_000
	data, err := io.ReadAll(&genList{n: rows})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rd, err := NewReader(bytes.NewReader(data), Options{Name: "bench.csv"})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != rows {
			b.Fatalf("read %d rows", n)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkDeduper adds distinct keys (one per iteration) to one Deduper.
func BenchmarkDeduper(b *testing.B) {
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = "subscriber" + strconv.Itoa(i) + "@example.com"
	}
	b.ReportAllocs()
	b.ResetTimer()
	d := NewDeduper()
	for i := 0; i < b.N; i++ {
		if i%len(keys) == 0 && i > 0 {
			d = NewDeduper()
		}
		d.Add(keys[i%len(keys)], i)
	}
}

// BenchmarkValidateAddress validates a typical address.
func BenchmarkValidateAddress(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if ValidateAddress("jane.doe+news@mail.example.com") != "" {
			b.Fatal("invalid")
		}
	}
}
