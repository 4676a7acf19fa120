package campaign

import (
	"context"
	"errors"
	"testing"

	"github.com/heraldmail/herald/campaign/journal"
)

// liveRuns is a run whose count of live runs the test sets.
type liveRuns struct {
	journal.Run
	n   int
	err error
}

func (r *liveRuns) Live(context.Context) (int, error) { return r.n, r.err }

// TestRateShareKeepsShareWhenCountFails: a run's share follows the count of live runs,
// and a count that fails (the store slow or gone for a moment) keeps the share it had
// instead of taking the campaign's whole rate beside the others.
func TestRateShareKeepsShareWhenCountFails(t *testing.T) {
	ctx := context.Background()
	run := &liveRuns{n: 3}
	s := &rateShare{run: run, rate: 150, pacer: NewPacer(150)}
	if n := s.update(ctx); n != 3 || s.pacer.Ceiling() != 50 {
		t.Fatalf("three live runs: %d, ceiling %v, want 50/s", n, s.pacer.Ceiling())
	}
	run.err = errors.New("statement timeout")
	s.update(ctx)
	if got := s.pacer.Ceiling(); got != 50 {
		t.Fatalf("after a failed count the ceiling is %v/s, want the share of 50/s kept", got)
	}
	run.n, run.err = 2, nil
	if n := s.update(ctx); n != 2 || s.pacer.Ceiling() != 75 {
		t.Fatalf("two live runs: %d, ceiling %v, want 75/s", n, s.pacer.Ceiling())
	}
}
