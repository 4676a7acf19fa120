package journal_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/journal/journaltest"
	"github.com/heraldmail/herald/campaign/journal/pgtest"
)

// BenchmarkWriter: 8 workers hand b.N claimed recipients over and record them sent,
// on an SQLite store, with the run's group commits.
func BenchmarkWriter(b *testing.B) {
	benchWriter(b, filepath.Join(b.TempDir(), "herald.db"), nil)
}

// BenchmarkWriterPostgres is BenchmarkWriter on a PostgreSQL store with fsync on; it
// also reports the server's processor time per message.
func BenchmarkWriterPostgres(b *testing.B) {
	cl := pgtest.SharedDurable(b)
	benchWriter(b, cl.NewDatabase(b), cl)
}

func benchWriter(b *testing.B, location string, cl *pgtest.Cluster) {
	ctx := context.Background()
	s, err := journal.Open(ctx, location, journal.Options{Conns: 12})
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
	b.ReportAllocs()
	var cpu0 time.Duration
	if cl != nil {
		cpu0 = cl.CPU()
	}
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
	b.StopTimer()
	if cl != nil {
		b.ReportMetric(float64((cl.CPU()-cpu0).Microseconds())/float64(b.N), "server-µs/op")
	}
}
