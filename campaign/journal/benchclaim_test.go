package journal_test

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/journal/journaltest"
	"github.com/heraldmail/herald/campaign/journal/pgtest"
)

// TestBenchClaims measures the batch claim query (64 rows, FOR UPDATE SKIP LOCKED) with
// three runs (three stores, as three hosts) of 8 workers each draining 100,000 rows, on
// a cluster with fsync on; the figure is in BENCHMARKS.md. Run it with
// HERALD_BENCH_STORE=1 go test -run TestBenchClaims -v ./campaign/journal/
func TestBenchClaims(t *testing.T) {
	if os.Getenv("HERALD_BENCH_STORE") == "" {
		t.Skip("set HERALD_BENCH_STORE=1 to measure")
	}
	ctx := context.Background()
	url := pgtest.NewDurable(t).NewDatabase(t)
	const rows, batch = 100000, 64
	var runs []journal.Run
	for i := range 3 {
		s, err := journal.Open(ctx, url, journal.Options{Conns: 12})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r := journaltest.Begin(t, s, "bench")
		if i == 0 {
			journaltest.Load(t, r, "h", journaltest.Items("b", 0, rows))
		}
		runs = append(runs, r)
	}
	var queries, claimed atomic.Int64
	seen := make([]sync.Map, 1)
	start := time.Now()
	var wg sync.WaitGroup
	for _, r := range runs {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					items, err := r.Claim(ctx, batch)
					if err != nil {
						t.Error(err)
						return
					}
					queries.Add(1)
					if len(items) == 0 {
						return
					}
					claimed.Add(int64(len(items)))
					for _, it := range items {
						if _, dup := seen[0].LoadOrStore(it.Key, true); dup {
							t.Errorf("%s claimed twice", it.Key)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	el := time.Since(start)
	if claimed.Load() != rows {
		t.Fatalf("claimed %d rows, want %d", claimed.Load(), rows)
	}
	t.Logf("3 runs x 8 workers, %d-row claims: %d rows in %s: %.0f claim queries/s, %.0f rows/s",
		batch, rows, el.Round(time.Millisecond), float64(queries.Load())/el.Seconds(), float64(rows)/el.Seconds())
}
