package journal

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchWriter sends b.N messages (a claim, then a Sent outcome) through a writer that
// commits at most maxBatch operations at once, from 8 concurrent claimers, and reports
// messages per second and commits per message.
func benchWriter(b *testing.B, maxBatch int) {
	b.ReportAllocs()
	s := openTest(b, nil)
	w := s.newWriter("bench", maxBatch, nil)
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = fmt.Sprintf("user%08d@example.com", i)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := w.Claim(ctx, Claim{Key: keys[i], Email: keys[i], Line: i + 2}); err != nil {
					b.Error(err)
					return
				}
				w.Record(Outcome{Key: keys[i], State: Sent, ProviderID: "<id@example.com>", Code: 250})
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(w.commits.Load())/float64(b.N), "commits/msg")
}

// BenchmarkWriterGroupCommit is the writer as the pipeline uses it.
func BenchmarkWriterGroupCommit(b *testing.B) { benchWriter(b, defaultMaxBatch) }

// BenchmarkWriterOneTxPerOutcome is the same load with one transaction per claim or
// outcome, the baseline group commit is measured against.
func BenchmarkWriterOneTxPerOutcome(b *testing.B) { benchWriter(b, 1) }

// BenchmarkLookup300 looks up a list reader's batch of 300 keys, half of them present,
// in a campaign of 100,000 recipients.
func BenchmarkLookup300(b *testing.B) {
	b.ReportAllocs()
	s := filled(b, 100_000)
	ctx := context.Background()
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprintf("u%d@x", 50_000+i)
	}
	b.ResetTimer()
	for b.Loop() {
		m, err := s.Lookup(ctx, "c", keys)
		if err != nil || len(m) != 150 {
			b.Fatalf("%d, %v", len(m), err)
		}
	}
}

// BenchmarkCounts100k counts the states of a campaign of 100,000 recipients (status).
func BenchmarkCounts100k(b *testing.B) {
	b.ReportAllocs()
	s := filled(b, 100_000)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		c, err := s.Counts(ctx, "c")
		if err != nil || c[Sent]+c[Failed] != 100_000 {
			b.Fatalf("%v, %v", c, err)
		}
	}
}

// BenchmarkEachRowFailed100k lists the 1% failed recipients of a campaign of 100,000
// (status --failed).
func BenchmarkEachRowFailed100k(b *testing.B) {
	b.ReportAllocs()
	s := filled(b, 100_000)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := s.EachRow(ctx, "c", []State{Failed}, func(Row) error { n++; return nil }); err != nil || n != 1000 {
			b.Fatalf("%d, %v", n, err)
		}
	}
}

// filled returns a store whose campaign "c" has n recipients with keys u0@x, u2@x, …,
// every hundredth failed and the others sent.
func filled(b *testing.B, n int) *Store {
	b.Helper()
	s := openTest(b, nil)
	tx, err := s.wdb.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		state := Sent
		if i%100 == 0 {
			state = Failed
		}
		if _, err := tx.Exec(`INSERT INTO recipients (campaign, key, email, line, state, updated_at) VALUES ('c', ?, ?, ?, ?, 0)`,
			fmt.Sprintf("u%d@x", i*2), "e", i, string(state)); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	return s
}
