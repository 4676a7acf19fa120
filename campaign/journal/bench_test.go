package journal_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/journal/journaltest"
)

// BenchmarkWriter: 8 workers hand b.N claimed recipients over and record them sent,
// on an SQLite store, with the run's group commits.
func BenchmarkWriter(b *testing.B) {
	ctx := context.Background()
	s, err := journal.Open(ctx, filepath.Join(b.TempDir(), "herald.db"), journal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r, err := s.BeginRun(ctx, journal.RunSpec{Campaign: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer r.End(ctx, nil)
	journaltest.Load(b, r, "h", journaltest.Items("w", 0, b.N))
	items, err := r.Claim(ctx, b.N)
	if err != nil || len(items) != b.N {
		b.Fatalf("claimed %d of %d: %v", len(items), b.N, err)
	}
	keys := make(chan string, b.N)
	for _, it := range items {
		keys <- it.Key
	}
	close(keys)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				if err := r.Handoff(ctx, k)(); err != nil {
					b.Error(err)
					return
				}
				r.Record(journal.Outcome{Key: k, State: journal.Sent, ProviderID: fmt.Sprint("<", k, ">")})
			}
		}()
	}
	wg.Wait()
	if err := r.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}
