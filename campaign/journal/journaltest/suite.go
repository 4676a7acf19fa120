// Package journaltest is the conformance suite of the journal contract: every engine
// runs it in its tests (like providertest for providers).
package journaltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
)

// Engine is what the suite needs of an engine.
type Engine struct {
	// New returns the location of a fresh, empty store.
	New func(t *testing.T) string
	// Shared is set when several runs of one campaign may be alive at once.
	Shared bool
}

// Clock is a settable clock for stores under test.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at a fixed time.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Open opens location with clock (nil: the real one) and closes it at the end of t.
func Open(t testing.TB, location string, clock *Clock) journal.Store {
	t.Helper()
	o := journal.Options{}
	if clock != nil {
		o.Now = clock.Now
	}
	s, err := journal.Open(context.Background(), location, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Begin starts a run of campaign, ended (with an empty summary) at the end of t.
func Begin(t testing.TB, s journal.Store, campaign string) journal.Run {
	t.Helper()
	r, err := s.BeginRun(context.Background(), journal.RunSpec{Campaign: campaign, Host: "test-host", PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.End(context.Background(), nil) })
	return r
}

// Items makes n list rows a0@x … with two fields each, on lines 2…n+1.
func Items(prefix string, from, n int) []journal.Item {
	var out []journal.Item
	for i := from; i < from+n; i++ {
		e := fmt.Sprintf("%s%d@x.test", prefix, i)
		out = append(out, journal.Item{Key: e, Email: e, Line: i + 2, Fields: []string{e, fmt.Sprintf("Name %d", i)}})
	}
	return out
}

// Load loads items with a list info naming the columns.
func Load(t testing.TB, r journal.Run, hash string, items []journal.Item) int {
	t.Helper()
	n, err := r.Load(context.Background(), &journal.ListInfo{Columns: []string{"email", "name"}, TemplateHash: hash, Total: len(items)},
		func(add func(journal.Item) error) error {
			for _, it := range items {
				if err := add(it); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Counts returns the non-zero state counts of campaign.
func Counts(t testing.TB, s journal.Store, campaign string) map[journal.State]int {
	t.Helper()
	c, err := s.Counts(context.Background(), campaign)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c {
		if v == 0 {
			delete(c, k)
		}
	}
	return c
}

func wantCounts(t *testing.T, s journal.Store, campaign string, want map[journal.State]int) {
	t.Helper()
	got := Counts(t, s, campaign)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
}

func claim(t *testing.T, r journal.Run, n int) []journal.Item {
	t.Helper()
	items, err := r.Claim(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

func handoff(t *testing.T, r journal.Run, key string) {
	t.Helper()
	if err := r.Handoff(context.Background(), key)(); err != nil {
		t.Fatalf("hand-off of %s: %v", key, err)
	}
}

func flush(t *testing.T, r journal.Run) {
	t.Helper()
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func keys(items []journal.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Key
	}
	return out
}

func rows(t *testing.T, s journal.Store, campaign string, states ...journal.State) map[string]journal.Row {
	t.Helper()
	out := map[string]journal.Row{}
	if err := s.EachRow(context.Background(), campaign, states, func(r journal.Row) error {
		out[r.Email] = r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Run runs the suite against e.
func Run(t *testing.T, e Engine) {
	ctx := context.Background()

	t.Run("Secret", func(t *testing.T) {
		loc := e.New(t)
		a, b := Open(t, loc, nil), Open(t, loc, nil)
		var wg sync.WaitGroup
		got := make([][]byte, 8)
		errs := make([]error, 8)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := a
				if i%2 == 1 {
					s = b
				}
				got[i], errs[i] = s.Secret(ctx)
			}()
		}
		wg.Wait()
		for i := range got {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if len(got[i]) != 32 || !bytes.Equal(got[i], got[0]) {
				t.Fatalf("secret %d differs or has %d bytes", i, len(got[i]))
			}
		}
		a.Close()
		c := Open(t, loc, nil)
		again, err := c.Secret(ctx)
		if err != nil || !bytes.Equal(again, got[0]) {
			t.Fatalf("secret after reopen differs (%v)", err)
		}
	})

	t.Run("Suppressions", func(t *testing.T) {
		s := Open(t, e.New(t), nil)
		n, err := s.Suppress(ctx, []journal.Suppression{{Email: " Bob@X.test ", Reason: "unsubscribed", Source: "unsubscribe"},
			{Email: "bob@x.test", Reason: "second"}, {Email: "  "}, {Email: "carol@x.test", Source: "import"}})
		if err != nil || n != 2 {
			t.Fatalf("Suppress = %d, %v; want 2 new", n, err)
		}
		m, err := s.Suppressed(ctx, []string{"BOB@x.test", "dave@x.test", "carol@x.test"})
		if err != nil || len(m) != 2 || m["bob@x.test"].Reason != "unsubscribed" || m["bob@x.test"].Email != "Bob@X.test" {
			t.Fatalf("Suppressed = %v, %v", m, err)
		}
		if ok, err := s.IsSuppressed(ctx, "CAROL@x.test"); !ok || err != nil {
			t.Fatalf("IsSuppressed = %v, %v", ok, err)
		}
		var all []string
		s.EachSuppressed(ctx, func(sp journal.Suppression) error { all = append(all, sp.Email); return nil })
		if fmt.Sprint(all) != "[Bob@X.test carol@x.test]" {
			t.Fatalf("EachSuppressed = %v", all)
		}
		if n, err := s.Unsuppress(ctx, []string{"bob@X.test", "nobody@x.test"}); n != 1 || err != nil {
			t.Fatalf("Unsuppress = %d, %v", n, err)
		}
		if ok, _ := s.IsSuppressed(ctx, "bob@x.test"); ok {
			t.Fatal("bob is still suppressed")
		}
	})

	t.Run("LoadClaimHandoffOutcome", func(t *testing.T) {
		clock := NewClock()
		s := Open(t, e.New(t), clock)
		r := Begin(t, s, "nov")
		if n := Load(t, r, "h1", Items("a", 0, 5)); n != 5 {
			t.Fatalf("loaded %d, want 5", n)
		}
		wantCounts(t, s, "nov", map[journal.State]int{journal.Pending: 5})
		got := claim(t, r, 2)
		if fmt.Sprint(keys(got)) != "[a0@x.test a1@x.test]" || got[1].Line != 3 || fmt.Sprint(got[1].Fields) != "[a1@x.test Name 1]" || got[0].Retry {
			t.Fatalf("claimed %+v", got)
		}
		wantCounts(t, s, "nov", map[journal.State]int{journal.Pending: 3, journal.Claimed: 2})
		handoff(t, r, "a0@x.test")
		wantCounts(t, s, "nov", map[journal.State]int{journal.Pending: 3, journal.Claimed: 1, journal.Sending: 1})
		r.Record(journal.Outcome{Key: "a0@x.test", State: journal.Sent, ProviderID: "<id0>", Provider: "smtp"})
		handoff(t, r, "a1@x.test")
		r.Record(journal.Outcome{Key: "a1@x.test", State: journal.Failed, Provider: "ses", Code: 550, Enhanced: "5.1.1", Reason: "no such user", Suppress: true, Email: "a1@x.test"})
		flush(t, r)
		wantCounts(t, s, "nov", map[journal.State]int{journal.Pending: 3, journal.Sent: 1, journal.Failed: 1})
		rs := rows(t, s, "nov")
		if r0 := rs["a0@x.test"]; r0.ProviderID != "<id0>" || r0.Provider != "smtp" || r0.Attempts != 1 || !r0.FirstAttempt.Equal(clock.Now().Truncate(time.Millisecond)) {
			t.Fatalf("row a0 = %+v", r0)
		}
		if r1 := rs["a1@x.test"]; r1.Provider != "ses" || r1.Code != 550 || r1.Enhanced != "5.1.1" || r1.Reason != "no such user" {
			t.Fatalf("row a1 = %+v", r1)
		}
		if ok, _ := s.IsSuppressed(ctx, "a1@x.test"); !ok {
			t.Fatal("a hard bounce did not suppress in the outcome's commit")
		}
		// A recipient this run did not claim is refused.
		err := r.Handoff(ctx, "a3@x.test")()
		var se *journal.StateError
		if !errors.As(err, &se) || !errors.Is(err, journal.ErrNotClaimable) || se.State != journal.Pending {
			t.Fatalf("hand-off of an unclaimed recipient = %v", err)
		}
		if err := r.Handoff(ctx, "a0@x.test")(); !errors.Is(err, journal.ErrNotClaimable) {
			t.Fatalf("hand-off of a sent recipient = %v", err)
		}
		if r.Err() != nil {
			t.Fatalf("a refused hand-off broke the run: %v", r.Err())
		}
	})

	t.Run("RecordThenSaysWhenDurable", func(t *testing.T) {
		s := Open(t, e.New(t), nil)
		r := Begin(t, s, "nov")
		Load(t, r, "h", Items("a", 0, 1))
		claim(t, r, 1)
		handoff(t, r, "a0@x.test")
		got := make(chan error, 1)
		r.RecordThen(journal.Outcome{Key: "a0@x.test", State: journal.Sent, ProviderID: "id-1"}, func(err error) { got <- err })
		if err := <-got; err != nil {
			t.Fatalf("RecordThen: %v", err)
		}
		if m, _ := s.Lookup(ctx, "nov", []string{"a0@x.test"}); m["a0@x.test"].State != journal.Sent {
			t.Fatalf("state after the callback = %v, want sent", m)
		}
		if err := r.End(ctx, nil); err != nil {
			t.Fatal(err)
		}
		r.RecordThen(journal.Outcome{Key: "a0@x.test", State: journal.Sent}, func(err error) { got <- err })
		if err := <-got; err == nil {
			t.Fatal("RecordThen after End: callback got nil, want an error")
		}
	})

	t.Run("ReopenReturnsFailedToPendingAndLiftsItsSuppression", func(t *testing.T) {
		s := Open(t, e.New(t), nil)
		if _, err := s.Suppress(ctx, []journal.Suppression{{Email: "a2@x.test", Source: "unsubscribe"}}); err != nil {
			t.Fatal(err)
		}
		r := Begin(t, s, "nov")
		Load(t, r, "h", Items("a", 0, 3))
		s.Unsuppress(ctx, []string{"a2@x.test"})
		claim(t, r, 3)
		s.Suppress(ctx, []journal.Suppression{{Email: "a2@x.test", Source: "unsubscribe"}})
		for _, k := range []string{"a0@x.test", "a1@x.test", "a2@x.test"} {
			handoff(t, r, k)
		}
		r.Record(journal.Outcome{Key: "a0@x.test", State: journal.Failed, Code: 550, Reason: "sender rejected", Suppress: true})
		r.Record(journal.Outcome{Key: "a1@x.test", State: journal.Sent})
		r.Record(journal.Outcome{Key: "a2@x.test", State: journal.Failed, Code: 550, Reason: "sender rejected", Suppress: true})
		for _, k := range []string{"a0@x.test", "a1@x.test", "a2@x.test"} {
			r.Record(journal.Outcome{Key: k, State: journal.Pending, Reopen: true})
		}
		flush(t, r)
		wantCounts(t, s, "nov", map[journal.State]int{journal.Pending: 2, journal.Sent: 1})
		got, err := s.Suppressed(ctx, []string{"a0@x.test", "a2@x.test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got["a0@x.test"]; ok {
			t.Error("a0 is still suppressed by the failure that was reopened")
		}
		if sp, ok := got["a2@x.test"]; !ok || sp.Source != "unsubscribe" {
			t.Errorf("a2: %+v %v: an earlier suppression of another source must stay", sp, ok)
		}
	})

	t.Run("OutcomeWithoutHandoffIsAnError", func(t *testing.T) {
		s := Open(t, e.New(t), nil)
		r := Begin(t, s, "nov")
		Load(t, r, "h", Items("a", 0, 2))
		claim(t, r, 1)
		r.Record(journal.Outcome{Key: "a0@x.test", State: journal.Sent})
		r.Flush(ctx)
		if r.Err() == nil {
			t.Fatal("an outcome without a hand-off was accepted")
		}
		wantCounts(t, s, "nov", map[journal.State]int{journal.Pending: 1, journal.Claimed: 1})
	})

	t.Run("ClaimTimeSuppression", func(t *testing.T) {
		s := Open(t, e.New(t), nil)
		r := Begin(t, s, "nov")
		Load(t, r, "h", Items("a", 0, 4))
		if got := claim(t, r, 1); got[0].Key != "a0@x.test" {
			t.Fatalf("claimed %v", keys(got))
		}
		// Committed after the first claim, before the next: honoured by the next.
		if _, err := s.Suppress(ctx, []journal.Suppression{{Email: "A2@x.test", Source: "unsubscribe"}}); err != nil {
			t.Fatal(err)
		}
		if got := claim(t, r, 10); fmt.Sprint(keys(got)) != "[a1@x.test a3@x.test]" {
			t.Fatalf("claimed %v, want a1 and a3", keys(got))
		}
		if n, err := s.PendingSuppressed(ctx, "nov"); n != 1 || err != nil {
			t.Fatalf("PendingSuppressed = %d, %v", n, err)
		}
		s.Unsuppress(ctx, []string{"a2@x.test"})
		if got := claim(t, r, 10); fmt.Sprint(keys(got)) != "[a2@x.test]" {
			t.Fatalf("after unsuppress claimed %v", keys(got))
		}
	})

	t.Run("DeferredDueLater", func(t *testing.T) {
		clock := NewClock()
		s := Open(t, e.New(t), clock)
		r := Begin(t, s, "nov")
		Load(t, r, "h", Items("a", 0, 1))
		claim(t, r, 1)
		handoff(t, r, "a0@x.test")
		r.Record(journal.Outcome{Key: "a0@x.test", State: journal.Deferred, Provider: "ses", Code: 451, NextAttempt: clock.Now().Add(time.Hour)})
		flush(t, r)
		if got := claim(t, r, 5); len(got) != 0 {
			t.Fatalf("claimed a deferred recipient before it was due: %v", keys(got))
		}
		clock.Advance(time.Hour)
		got := claim(t, r, 5)
		if len(got) != 1 || !got[0].Retry || got[0].Attempts != 1 || got[0].FirstAttempt.IsZero() {
			t.Fatalf("claimed %+v, want the due retry", got)
		}
		// A claimed retry past give-up becomes failed without a hand-off.
		r.Record(journal.Outcome{Key: "a0@x.test", State: journal.Failed, Reason: "gave up"})
		flush(t, r)
		wantCounts(t, s, "nov", map[journal.State]int{journal.Failed: 1})
		// No attempt, no provider: the one of the last attempt stays.
		if a0 := rows(t, s, "nov")["a0@x.test"]; a0.Provider != "ses" {
			t.Fatalf("provider after giving up = %q, want ses (the last attempt's)", a0.Provider)
		}
	})

	t.Run("ReleaseAndEnd", func(t *testing.T) {
		s := Open(t, e.New(t), nil)
		r, err := s.BeginRun(ctx, journal.RunSpec{Campaign: "nov", Host: "h1", PID: 42})
		if err != nil {
			t.Fatal(err)
		}
		Load(t, r, "h", Items("a", 0, 5))
		claim(t, r, 3)
		handoff(t, r, "a0@x.test")
		r.Record(journal.Outcome{Key: "a0@x.test", State: journal.Pending, Reason: "never handed over"})
		handoff(t, r, "a1@x.test")
		r.Record(journal.Outcome{Key: "a1@x.test", State: journal.Sent})
		flush(t, r)
		if a0 := rows(t, s, "nov")["a0@x.test"]; a0.State != journal.Pending || a0.Attempts != 0 {
			t.Fatalf("released row = %+v, want pending with no attempt", a0)
		}
		live, err := s.LiveRuns(ctx, "nov")
		if err != nil || len(live) != 1 || live[0].ID != r.ID() || live[0].Host != "h1" || live[0].PID != 42 || live[0].Sent != 1 {
			t.Fatalf("LiveRuns = %+v, %v", live, err)
		}
		if n, err := r.Live(ctx); n != 1 || err != nil {
			t.Fatalf("Live = %d, %v", n, err)
		}
		if err := r.End(ctx, []byte(`{"sent":1}`)); err != nil {
			t.Fatal(err)
		}
		wantCounts(t, s, "nov", map[journal.State]int{journal.Pending: 4, journal.Sent: 1})
		if live, _ := s.LiveRuns(ctx, "nov"); len(live) != 0 {
			t.Fatalf("LiveRuns after End = %+v", live)
		}
		last, ok, err := s.LastRun(ctx, "nov")
		if err != nil || !ok || last.ID != r.ID() || last.Ended.IsZero() || string(last.Summary) != `{"sent":1}` || last.Died {
			t.Fatalf("LastRun = %+v, %v, %v", last, ok, err)
		}
	})

	t.Run("HoldKeepsTheClaimUntilTheRunEnds", func(t *testing.T) {
		s := Open(t, e.New(t), nil)
		r, err := s.BeginRun(ctx, journal.RunSpec{Campaign: "nov", Host: "h1", PID: 42})
		if err != nil {
			t.Fatal(err)
		}
		Load(t, r, "h", Items("a", 0, 3))
		claim(t, r, 1)
		handoff(t, r, "a0@x.test")
		r.Record(journal.Outcome{Key: "a0@x.test", State: journal.Claimed, Reason: "could not be rendered"})
		flush(t, r)
		if a0 := rows(t, s, "nov")["a0@x.test"]; a0.State != journal.Claimed || a0.Attempts != 0 {
			t.Fatalf("held row = %+v, want claimed with no attempt", a0)
		}
		items, err := r.Claim(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if it.Key == "a0@x.test" {
				t.Fatalf("the run claimed its held row again: %+v", items)
			}
		}
		if len(items) != 2 {
			t.Fatalf("claimed %d rows, want the 2 others", len(items))
		}
		for _, it := range items {
			handoff(t, r, it.Key)
			r.Record(journal.Outcome{Key: it.Key, State: journal.Sent})
		}
		flush(t, r)
		if err := r.End(ctx, nil); err != nil {
			t.Fatal(err)
		}
		wantCounts(t, s, "nov", map[journal.State]int{journal.Pending: 1, journal.Sent: 2})
	})

	t.Run("DeadRunRecovery", func(t *testing.T) {
		loc := e.New(t)
		s := Open(t, loc, nil)
		a, err := s.BeginRun(ctx, journal.RunSpec{Campaign: "nov", Host: "a", PID: 1})
		if err != nil {
			t.Fatal(err)
		}
		Load(t, a, "h", Items("a", 0, 6))
		claim(t, a, 4)
		handoff(t, a, "a0@x.test")
		a.Record(journal.Outcome{Key: "a0@x.test", State: journal.Sent})
		handoff(t, a, "a1@x.test") // in flight when the process dies
		flush(t, a)
		// Nothing of a live run is settled.
		if st, err := s.Settle(ctx, "nov"); err != nil || st != (journal.Settled{}) {
			t.Fatalf("Settle of a live run = %+v, %v", st, err)
		}
		journal.Abandon(a)
		other := Open(t, loc, nil)
		b := Begin(t, other, "nov")
		wantCounts(t, s, "nov", map[journal.State]int{journal.Sent: 1, journal.Unknown: 1, journal.Pending: 4})
		last, _, _ := s.LastRun(ctx, "nov")
		if last.ID != b.ID() {
			t.Fatalf("last run %d, want %d", last.ID, b.ID())
		}
		got := claim(t, b, 10)
		if fmt.Sprint(keys(got)) != "[a2@x.test a3@x.test a4@x.test a5@x.test]" {
			t.Fatalf("the next run claimed %v", keys(got))
		}
		// --resend-unknown brings the unknown back.
		if n, err := s.ResendUnknown(ctx, "nov"); n != 1 || err != nil {
			t.Fatalf("ResendUnknown = %d, %v", n, err)
		}
		if got := claim(t, b, 10); fmt.Sprint(keys(got)) != "[a1@x.test]" {
			t.Fatalf("after resend claimed %v", keys(got))
		}
	})

	t.Run("LoadAgainAddsAppendedRows", func(t *testing.T) {
		s := Open(t, e.New(t), nil)
		r := Begin(t, s, "nov")
		Load(t, r, "h", Items("a", 0, 2))
		claim(t, r, 1)
		handoff(t, r, "a0@x.test")
		r.Record(journal.Outcome{Key: "a0@x.test", State: journal.Sent})
		flush(t, r)
		if err := r.End(ctx, nil); err != nil {
			t.Fatal(err)
		}
		r2 := Begin(t, s, "nov")
		Load(t, r2, "h2", Items("a", 0, 4))
		wantCounts(t, s, "nov", map[journal.State]int{journal.Sent: 1, journal.Pending: 3})
		li, ok, err := s.Campaign(ctx, "nov")
		if err != nil || !ok || li.TemplateHash != "h2" || li.Total != 4 || fmt.Sprint(li.Columns) != "[email name]" {
			t.Fatalf("Campaign = %+v, %v, %v", li, ok, err)
		}
		names, err := s.Campaigns(ctx)
		if err != nil || fmt.Sprint(names) != "[nov]" {
			t.Fatalf("Campaigns = %v, %v", names, err)
		}
		m, err := s.Lookup(ctx, "nov", []string{"a0@x.test", "a3@x.test", "zz@x.test"})
		if err != nil || len(m) != 2 || m["a0@x.test"].State != journal.Sent || m["a3@x.test"].State != journal.Pending {
			t.Fatalf("Lookup = %v, %v", m, err)
		}
	})

	t.Run("CopyToAnotherStore", func(t *testing.T) {
		src := Open(t, e.New(t), nil)
		secret, _ := src.Secret(ctx)
		r := Begin(t, src, "nov")
		Load(t, r, "h", Items("a", 0, 3))
		claim(t, r, 2)
		handoff(t, r, "a0@x.test")
		r.Record(journal.Outcome{Key: "a0@x.test", State: journal.Sent})
		flush(t, r)
		src.Suppress(ctx, []journal.Suppression{{Email: "x@x.test", Source: "unsubscribe"}})
		dst := Open(t, e.New(t), nil)
		_, err := dst.Import(ctx, func(add func(journal.Record) error) error { return src.Export(ctx, add) })
		if err != nil {
			t.Fatal(err)
		}
		wantCounts(t, dst, "nov", map[journal.State]int{journal.Sent: 1, journal.Pending: 2})
		if got, _ := dst.Secret(ctx); !bytes.Equal(got, secret) {
			t.Fatal("the secret was not copied")
		}
		if ok, _ := dst.IsSuppressed(ctx, "x@x.test"); !ok {
			t.Fatal("the suppression was not copied")
		}
		if li, ok, _ := dst.Campaign(ctx, "nov"); !ok || li.Total != 3 {
			t.Fatalf("campaign not copied: %+v", li)
		}
	})

	runPolicy(t, e)

	if !e.Shared {
		t.Run("OneRunAtATime", func(t *testing.T) {
			s := Open(t, e.New(t), nil)
			Begin(t, s, "nov")
			_, err := s.BeginRun(ctx, journal.RunSpec{Campaign: "nov"})
			var le *journal.LockedError
			if !errors.As(err, &le) {
				t.Fatalf("second run = %v, want *LockedError", err)
			}
		})
		return
	}

	t.Run("RunsShareTheQueue", func(t *testing.T) {
		loc := e.New(t)
		s := Open(t, loc, nil)
		a := Begin(t, s, "nov")
		Load(t, a, "h", Items("a", 0, 300))
		runs := []journal.Run{a, Begin(t, Open(t, loc, nil), "nov"), Begin(t, Open(t, loc, nil), "nov")}
		if n, err := a.Live(ctx); n != 3 || err != nil {
			t.Fatalf("Live = %d, %v", n, err)
		}
		var mu sync.Mutex
		seen := map[string]int64{}
		var wg sync.WaitGroup
		for _, r := range runs {
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						items, err := r.Claim(ctx, 7)
						if err != nil {
							t.Error(err)
							return
						}
						if len(items) == 0 {
							return
						}
						for _, it := range items {
							if err := r.Handoff(ctx, it.Key)(); err != nil {
								t.Error(err)
								return
							}
							r.Record(journal.Outcome{Key: it.Key, State: journal.Sent})
							mu.Lock()
							if prev, dup := seen[it.Key]; dup {
								t.Errorf("%s claimed by run %d and run %d", it.Key, prev, r.ID())
							}
							seen[it.Key] = r.ID()
							mu.Unlock()
						}
					}
				}()
			}
		}
		wg.Wait()
		for _, r := range runs {
			flush(t, r)
		}
		wantCounts(t, s, "nov", map[journal.State]int{journal.Sent: 300})
		per := map[int64]int{}
		for _, id := range seen {
			per[id]++
		}
		if len(per) != 3 {
			t.Errorf("work per run = %v, want all three to take part", per)
		}
	})

	t.Run("JoinWithOtherTemplatesRefused", func(t *testing.T) {
		loc := e.New(t)
		s := Open(t, loc, nil)
		a := Begin(t, s, "nov")
		Load(t, a, "h1", Items("a", 0, 2))
		b := Begin(t, Open(t, loc, nil), "nov")
		_, err := b.Load(ctx, &journal.ListInfo{TemplateHash: "h2"}, func(func(journal.Item) error) error { return nil })
		var me *journal.MismatchError
		if !errors.As(err, &me) {
			t.Fatalf("join with other templates = %v, want *MismatchError", err)
		}
		if n := Load(t, b, "h1", Items("a", 0, 3)); n == 0 {
			t.Fatal("a run with the same templates could not join")
		}
	})

	t.Run("JoiningRunDoesNotStarveClaims", func(t *testing.T) {
		// A run that joins with the same list while another claims: its load must not
		// hold the rows the other would claim (that one would find nothing and end).
		loc := e.New(t)
		a := Begin(t, Open(t, loc, nil), "nov")
		items := Items("a", 0, 2000)
		Load(t, a, "h", items)
		b := Begin(t, Open(t, loc, nil), "nov")
		claimed := make(chan int, 1)
		_, err := b.Load(ctx, &journal.ListInfo{Columns: []string{"email", "name"}, TemplateHash: "h", Total: len(items)},
			func(add func(journal.Item) error) error {
				for _, it := range items { // two whole chunks: written before the feed ends
					if err := add(it); err != nil {
						return err
					}
				}
				got, err := a.Claim(ctx, 5)
				claimed <- len(got)
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
		if n := <-claimed; n != 5 {
			t.Fatalf("a claim during another run's load of the same list took %d recipients, want 5", n)
		}
	})

	t.Run("DeadRunSettledByALiveOne", func(t *testing.T) {
		loc := e.New(t)
		s := Open(t, loc, nil)
		a := Begin(t, s, "nov")
		Load(t, a, "h", Items("a", 0, 10))
		b, err := Open(t, loc, nil).BeginRun(ctx, journal.RunSpec{Campaign: "nov", Host: "b"})
		if err != nil {
			t.Fatal(err)
		}
		got := claim(t, b, 3)
		handoff(t, b, got[0].Key)
		flush(t, b)
		journal.Abandon(b)
		// The server notices the closed connection a moment later.
		var live []journal.RunInfo
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if live, _ = s.LiveRuns(ctx, "nov"); len(live) == 1 {
				break
			}
		}
		if len(live) != 1 || live[0].ID != a.ID() {
			t.Fatalf("live runs after a death: %+v", live)
		}
		st, err := s.Settle(ctx, "nov")
		if err != nil || st != (journal.Settled{Runs: 1, Released: 2, Unknown: 1}) {
			t.Fatalf("Settle = %+v, %v", st, err)
		}
		if st, _ := s.Settle(ctx, "nov"); st.Runs != 0 {
			t.Fatalf("a dead run was settled twice: %+v", st)
		}
		items := claim(t, a, 20)
		ks := keys(items)
		sort.Strings(ks)
		if len(items) != 9 {
			t.Fatalf("the live run claimed %v, want the 9 not in flight", ks)
		}
	})
}
