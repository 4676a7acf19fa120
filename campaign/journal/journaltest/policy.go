package journaltest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
)

// runPolicy checks what the sending policy keeps in the store: expiry, the pause state,
// outcome counts since a resume, the first send and the store-wide warm-up counts.
func runPolicy(t *testing.T, e Engine) {
	ctx := context.Background()

	t.Run("ExpirePendingDeferredAndOwnClaims", func(t *testing.T) {
		clock := NewClock()
		s := Open(t, e.New(t), clock)
		r := Begin(t, s, "nov")
		Load(t, r, "h", Items("a", 0, 6))
		got := claim(t, r, 3) // a0 a1 a2
		handoff(t, r, got[0].Key)
		r.Record(journal.Outcome{Key: got[0].Key, State: journal.Sent})
		handoff(t, r, got[1].Key)
		// Deferred and not due for a day: it expires too.
		r.Record(journal.Outcome{Key: got[1].Key, State: journal.Deferred, Code: 451, NextAttempt: clock.Now().Add(24 * time.Hour)})
		flush(t, r)
		if _, err := s.Suppress(ctx, []journal.Suppression{{Email: "a5@x.test", Reason: "unsubscribed"}}); err != nil {
			t.Fatal(err)
		}
		n, err := r.Expire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// a1 (deferred), a2 (claimed by this run), a3, a4 (pending); a5 is suppressed.
		if n != 4 {
			t.Fatalf("Expire = %d, want 4", n)
		}
		wantCounts(t, s, "nov", map[journal.State]int{journal.Sent: 1, journal.Expired: 4, journal.Pending: 1})
		if got := claim(t, r, 10); len(got) != 0 {
			t.Fatalf("claimed expired recipients: %v", keys(got))
		}
		if err := r.Handoff(ctx, "a3@x.test")(); err == nil {
			t.Fatal("an expired recipient was handed off")
		}
		if !journal.Expired.Valid() {
			t.Fatal("expired is not a valid state")
		}
	})

	if e.Shared {
		t.Run("ExpireLeavesOtherRunsClaims", func(t *testing.T) {
			loc := e.New(t)
			s := Open(t, loc, nil)
			a := Begin(t, s, "nov")
			Load(t, a, "h", Items("a", 0, 4))
			b := Begin(t, Open(t, loc, nil), "nov")
			theirs := claim(t, b, 2)
			if _, err := a.Expire(ctx); err != nil {
				t.Fatal(err)
			}
			wantCounts(t, s, "nov", map[journal.State]int{journal.Claimed: 2, journal.Expired: 2})
			handoff(t, b, theirs[0].Key)
		})
	}

	t.Run("PauseState", func(t *testing.T) {
		clock := NewClock()
		s := Open(t, e.New(t), clock)
		p, err := s.PauseState(ctx, "nov")
		if err != nil || p.Paused || !p.ResumedAt.IsZero() {
			t.Fatalf("fresh pause state = %+v, %v", p, err)
		}
		want := journal.Pause{Paused: true, At: clock.Now().UTC(), Reason: "bounce rate 10% over 5%"}
		if err := s.SetPause(ctx, "nov", want); err != nil {
			t.Fatal(err)
		}
		if p, err := s.PauseState(ctx, "nov"); err != nil || !p.Paused || !p.At.Equal(want.At) || p.Reason != want.Reason {
			t.Fatalf("pause state = %+v, %v; want %+v", p, err, want)
		}
		if p, _ := s.PauseState(ctx, "dec"); p.Paused {
			t.Fatal("one campaign's pause paused another")
		}
		resumed := journal.Pause{ResumedAt: clock.Now().Add(time.Hour)}
		if err := s.SetPause(ctx, "nov", resumed); err != nil {
			t.Fatal(err)
		}
		if p, _ := s.PauseState(ctx, "nov"); p.Paused || !p.ResumedAt.Equal(resumed.ResumedAt) {
			t.Fatalf("after resume: %+v", p)
		}
	})

	t.Run("OutcomesSinceAResume", func(t *testing.T) {
		clock := NewClock()
		s := Open(t, e.New(t), clock)
		r := Begin(t, s, "nov")
		Load(t, r, "h", Items("a", 0, 8))
		if first, err := s.FirstAttempt(ctx, "nov"); err != nil || !first.IsZero() {
			t.Fatalf("FirstAttempt before any send = %v, %v", first, err)
		}
		start := clock.Now()
		out := func(key string, o journal.Outcome) {
			handoff(t, r, key)
			o.Key = key
			r.Record(o)
		}
		got := claim(t, r, 8)
		out(got[0].Key, journal.Outcome{State: journal.Sent})
		flush(t, r)
		clock.Advance(time.Minute)
		since := clock.Now()
		out(got[1].Key, journal.Outcome{State: journal.Sent})
		out(got[2].Key, journal.Outcome{State: journal.Sent})
		out(got[3].Key, journal.Outcome{State: journal.Failed, Code: 550, Enhanced: "5.1.1", Reason: "no such user", Suppress: true})
		out(got[4].Key, journal.Outcome{State: journal.Failed, Reason: "gave up after 72h0m0s: 451 try later"})
		out(got[5].Key, journal.Outcome{State: journal.Deferred, Code: 451})
		out(got[6].Key, journal.Outcome{State: journal.Sent})
		flush(t, r)
		// By mail after the run: a bounce of a sent message, a complaint report.
		b := s.(journal.Bouncer)
		if _, err := b.RecordBounce(ctx, "nov", got[2].Key, journal.Bounce{Code: 550, Enhanced: "5.1.1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.RecordComplaint(ctx, "nov", got[6].Key, "abuse"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Suppress(ctx, []journal.Suppression{
			{Email: got[1].Key, Reason: "complaint: abuse", Source: "webhook:ses"},
			{Email: got[2].Key, Reason: "unsubscribed", Source: "unsubscribe"},
			{Email: "stranger@x.test", Reason: "complaint", Source: "webhook:ses"},
		}); err != nil {
			t.Fatal(err)
		}
		oc, err := s.Outcomes(ctx, "nov", since)
		if err != nil {
			t.Fatal(err)
		}
		if want := (journal.OutcomeCounts{Outcomes: 5, Bounces: 2, Complaints: 2}); oc != want {
			t.Fatalf("Outcomes since = %+v, want %+v", oc, want)
		}
		if oc, _ := s.Outcomes(ctx, "nov", time.Time{}); oc.Outcomes != 6 {
			t.Fatalf("Outcomes of all time = %+v, want 6 outcomes", oc)
		}
		if first, err := s.FirstAttempt(ctx, "nov"); err != nil || !first.Equal(start) {
			t.Fatalf("FirstAttempt = %v, %v; want %v", first, err, start)
		}
	})

	t.Run("WarmupAcrossCampaigns", func(t *testing.T) {
		s := Open(t, e.New(t), nil)
		caps := func(day int) int { return []int{10, 15, 20}[min(day, 3)-1] }
		res := func(day string, n int) journal.WarmupGrant {
			t.Helper()
			g, err := s.ReserveWarmup(ctx, journal.WarmupRequest{Day: day, Cap: caps, N: n})
			if err != nil {
				t.Fatal(err)
			}
			return g
		}
		if g := res("2026-11-03", 0); g.Day != 1 || g.Cap != 10 || g.Used != 0 || g.Granted != 0 {
			t.Fatalf("read = %+v", g)
		}
		if g := res("2026-11-03", 6); g.Granted != 6 || g.Used != 6 {
			t.Fatalf("first reservation = %+v", g)
		}
		if g := res("2026-11-03", 6); g.Granted != 4 || g.Used != 10 {
			t.Fatalf("second reservation = %+v, want the 4 left", g)
		}
		if g := res("2026-11-03", 1); g.Granted != 0 {
			t.Fatalf("past the cap = %+v", g)
		}
		if g := res("2026-11-03", -3); g.Used != 7 {
			t.Fatalf("give back = %+v", g)
		}
		if g := res("2026-11-04", 100); g.Day != 2 || g.Granted != 15 {
			t.Fatalf("day 2 = %+v", g)
		}
		if g := res("2026-11-09", 100); g.Day != 7 || g.Granted != 20 {
			t.Fatalf("day 7 = %+v", g)
		}
	})

	t.Run("WarmupReservationsDoNotRace", func(t *testing.T) {
		loc := e.New(t)
		stores := []journal.Store{Open(t, loc, nil), Open(t, loc, nil)}
		caps := func(int) int { return 25 }
		var granted atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g, err := stores[i%2].ReserveWarmup(ctx, journal.WarmupRequest{Day: "2026-11-03", Cap: caps, N: 1})
				if err != nil {
					errs <- err
					return
				}
				granted.Add(int64(g.Granted))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := granted.Load(); got != 25 {
			t.Fatalf("40 concurrent reservations against a cap of 25 granted %d", got)
		}
		g, err := stores[0].ReserveWarmup(ctx, journal.WarmupRequest{Day: "2026-11-03", Cap: caps})
		if err != nil || g.Used != 25 {
			t.Fatalf("used = %+v, %v", g, err)
		}
	})
}
