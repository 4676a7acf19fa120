package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 11, 3, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openTest(t testing.TB, c *clock) *Store {
	t.Helper()
	var o Options
	if c != nil {
		o.Now = c.Now
	}
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "herald.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustClaim(t *testing.T, w *Writer, key string, line int) {
	t.Helper()
	if err := w.Claim(context.Background(), Claim{Key: key, Email: key, Line: line}); err != nil {
		t.Fatalf("claim %s: %v", key, err)
	}
}

func rows(t *testing.T, s *Store, campaign string, states ...State) []Row {
	t.Helper()
	var out []Row
	if err := s.EachRow(context.Background(), campaign, states, func(r Row) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestClaimThenRecordRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := openTest(t, c)
	w := s.NewWriter("nov")
	if err := w.Claim(ctx, Claim{Key: "ann@example.com", Email: "Ann@Example.com", Line: 2}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Lookup(ctx, "nov", []string{"ann@example.com", "bob@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("Lookup returned %d entries, want 1: %v", len(got), got)
	}
	e := got["ann@example.com"]
	if e.State != Sending || e.Attempts != 1 || !e.FirstAttempt.Equal(c.Now()) || !e.NextAttempt.IsZero() {
		t.Fatalf("after claim: %+v", e)
	}
	c.Advance(time.Second)
	w.Record(Outcome{Key: "ann@example.com", State: Sent, ProviderID: "<id-1@x>", Code: 250, Enhanced: "2.0.0", Reason: "ok queued"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	rs := rows(t, s, "nov")
	if len(rs) != 1 {
		t.Fatalf("%d rows, want 1", len(rs))
	}
	r := rs[0]
	want := Row{Email: "Ann@Example.com", Line: 2, State: Sent, Attempts: 1, Code: 250, Enhanced: "2.0.0",
		Reason: "ok queued", ProviderID: "<id-1@x>", FirstAttempt: c.Now().Add(-time.Second),
		LastAttempt: c.Now().Add(-time.Second), UpdatedAt: c.Now()}
	if !rowEqual(r, want) {
		t.Fatalf("row\n got %+v\nwant %+v", r, want)
	}
	counts, err := s.Counts(ctx, "nov")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range States {
		want := 0
		if st == Sent {
			want = 1
		}
		if n, ok := counts[st]; !ok || n != want {
			t.Errorf("Counts[%s] = %d, %v; want %d", st, n, ok, want)
		}
	}
}

func rowEqual(a, b Row) bool {
	return a.Email == b.Email && a.Line == b.Line && a.State == b.State && a.Attempts == b.Attempts &&
		a.Code == b.Code && a.Enhanced == b.Enhanced && a.Reason == b.Reason && a.ProviderID == b.ProviderID &&
		a.FirstAttempt.Equal(b.FirstAttempt) && a.LastAttempt.Equal(b.LastAttempt) &&
		a.NextAttempt.Equal(b.NextAttempt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func TestClaimIsDurableBeforeReturn(t *testing.T) {
	s := openTest(t, nil)
	// A connection of its own, as another process would have.
	other, err := sql.Open("sqlite", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	w := s.NewWriter("nov")
	defer w.Close()
	for i := range 20 {
		key := fmt.Sprintf("r%d@example.com", i)
		mustClaim(t, w, key, i+2)
		var state string
		if err := other.QueryRow(`SELECT state FROM recipients WHERE campaign = 'nov' AND key = ?`, key).Scan(&state); err != nil {
			t.Fatalf("claim of %s not visible to another connection after Claim returned: %v", key, err)
		}
		if state != "sending" {
			t.Fatalf("state of %s = %q, want sending", key, state)
		}
	}
}

func TestClaimRefusedStates(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		state  State
		refuse bool
	}{
		{Sent, true}, {Failed, true}, {Unknown, true}, {Sending, true},
		{Deferred, false}, {Pending, false},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			s := openTest(t, nil)
			w := s.NewWriter("nov")
			mustClaim(t, w, "a@x.org", 2)
			if tc.state != Sending {
				w.Record(Outcome{Key: "a@x.org", State: tc.state, Reason: "r"})
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			w = s.NewWriter("nov")
			defer w.Close()
			err := w.Claim(ctx, Claim{Key: "a@x.org", Email: "a@x.org", Line: 2})
			if !tc.refuse {
				if err != nil {
					t.Fatalf("claim of a %s row: %v", tc.state, err)
				}
				e := lookup1(t, s, "nov", "a@x.org")
				wantAttempts := 2
				if tc.state == Pending { // the release gave the attempt back
					wantAttempts = 1
				}
				if e.State != Sending || e.Attempts != wantAttempts {
					t.Fatalf("after reclaim: %+v, want sending with %d attempts", e, wantAttempts)
				}
				return
			}
			if !errors.Is(err, ErrNotClaimable) {
				t.Fatalf("claim of a %s row: err = %v, want ErrNotClaimable", tc.state, err)
			}
			var se *StateError
			if !errors.As(err, &se) || se.State != tc.state || se.Key != "a@x.org" {
				t.Fatalf("err = %#v", err)
			}
			if !strings.Contains(err.Error(), string(tc.state)) {
				t.Errorf("error %q does not name the state", err)
			}
			if e := lookup1(t, s, "nov", "a@x.org"); e.State != tc.state || e.Attempts != 1 {
				t.Fatalf("refused claim changed the row: %+v", e)
			}
			if w.Err() != nil {
				t.Fatalf("a refused claim is not a write error: %v", w.Err())
			}
		})
	}
}

func lookup1(t *testing.T, s *Store, campaign, key string) Entry {
	t.Helper()
	m, err := s.Lookup(context.Background(), campaign, []string{key})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m[key]
	if !ok {
		t.Fatalf("%s not in the journal", key)
	}
	return e
}

func TestBeginRunRecoversSending(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	for i, k := range []string{"a@x", "b@x", "c@x"} {
		mustClaim(t, w, k, i+2)
	}
	w.Record(Outcome{Key: "b@x", State: Sent})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Another campaign's claims are not touched.
	w2 := s.NewWriter("other")
	mustClaim(t, w2, "a@x", 2)
	w2.Close()

	id, recovered, err := s.BeginRun(ctx, "nov", false)
	if err != nil {
		t.Fatal(err)
	}
	if recovered != 2 || id <= 0 {
		t.Fatalf("BeginRun = %d, %d; want id > 0, 2 recovered", id, recovered)
	}
	counts, _ := s.Counts(ctx, "nov")
	if counts[Unknown] != 2 || counts[Sent] != 1 || counts[Sending] != 0 {
		t.Fatalf("counts after BeginRun: %v", counts)
	}
	if oc, _ := s.Counts(ctx, "other"); oc[Sending] != 1 {
		t.Fatalf("other campaign touched: %v", oc)
	}
	id2, recovered, err := s.BeginRun(ctx, "nov", false)
	if err != nil || recovered != 0 || id2 <= id {
		t.Fatalf("second BeginRun = %d, %d, %v", id2, recovered, err)
	}
	if ri, ok, err := s.LastRun(ctx, "nov"); err != nil || !ok || ri.ID != id2 || ri.PID != os.Getpid() {
		t.Fatalf("LastRun = %+v, %v, %v", ri, ok, err)
	}

	// resendUnknown: unknown rows become pending and can be claimed again.
	_, recovered, err = s.BeginRun(ctx, "nov", true)
	if err != nil || recovered != 0 {
		t.Fatalf("BeginRun(resend) = %d, %v", recovered, err)
	}
	counts, _ = s.Counts(ctx, "nov")
	if counts[Pending] != 2 || counts[Unknown] != 0 || counts[Sent] != 1 {
		t.Fatalf("counts after resendUnknown: %v", counts)
	}
	w = s.NewWriter("nov")
	mustClaim(t, w, "a@x", 2)
	if err := w.Claim(ctx, Claim{Key: "b@x", Email: "b@x"}); !errors.Is(err, ErrNotClaimable) {
		t.Fatalf("sent row claimable after resendUnknown: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBeginRunResendUnknownRecoversSendingToo(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	mustClaim(t, w, "a@x", 2)
	w.Close()
	_, recovered, err := s.BeginRun(ctx, "nov", true)
	if err != nil || recovered != 1 {
		t.Fatalf("BeginRun = %d, %v", recovered, err)
	}
	if e := lookup1(t, s, "nov", "a@x"); e.State != Pending {
		t.Fatalf("state = %s, want pending", e.State)
	}
}

func TestDeferredNextAttempt(t *testing.T) {
	c := newClock()
	s := openTest(t, c)
	first := c.Now()
	w := s.NewWriter("nov")
	mustClaim(t, w, "a@x", 2)
	next := first.Add(30 * time.Minute)
	w.Record(Outcome{Key: "a@x", State: Deferred, Code: 451, Enhanced: "4.3.0", Reason: "try later", NextAttempt: next})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	e := lookup1(t, s, "nov", "a@x")
	if e.State != Deferred || !e.NextAttempt.Equal(next) || !e.FirstAttempt.Equal(first) || e.Attempts != 1 {
		t.Fatalf("deferred entry: %+v", e)
	}
	c.Advance(time.Hour)
	w = s.NewWriter("nov")
	mustClaim(t, w, "a@x", 2)
	w.Record(Outcome{Key: "a@x", State: Sent, ProviderID: "id"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := rows(t, s, "nov")[0]
	if r.State != Sent || r.Attempts != 2 || !r.FirstAttempt.Equal(first) || !r.LastAttempt.Equal(c.Now()) || !r.NextAttempt.IsZero() {
		t.Fatalf("after retry: %+v", r)
	}
}

func TestRecordPendingReleasesClaim(t *testing.T) {
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	mustClaim(t, w, "a@x", 2)
	w.Record(Outcome{Key: "a@x", State: Pending})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	e := lookup1(t, s, "nov", "a@x")
	if e.State != Pending || e.Attempts != 0 || !e.FirstAttempt.IsZero() {
		t.Fatalf("released entry: %+v", e)
	}
}

func TestRecordSuppressSameCommit(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	mustClaim(t, w, "bad@x.org", 2)
	before := w.commits.Load()
	w.Record(Outcome{Key: "bad@x.org", Email: "Bad@X.org", State: Failed, Code: 550, Enhanced: "5.1.1",
		Reason: "no such user", Suppress: true})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := w.commits.Load() - before; n != 1 {
		t.Fatalf("outcome and suppression took %d commits, want 1", n)
	}
	got, err := s.Suppressed(ctx, []string{"BAD@x.org"})
	if err != nil {
		t.Fatal(err)
	}
	sp, ok := got["bad@x.org"]
	if !ok || sp.Email != "Bad@X.org" || sp.Reason != "no such user" || sp.Source != "bounce:nov" {
		t.Fatalf("suppression = %+v, %v", sp, ok)
	}
	if e := lookup1(t, s, "nov", "bad@x.org"); e.State != Failed {
		t.Fatalf("state = %s", e.State)
	}
}

func TestOutcomeWithoutClaimIsAnError(t *testing.T) {
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	w.Record(Outcome{Key: "ghost@x", State: Sent})
	err := w.Close()
	if err == nil || !strings.Contains(err.Error(), "ghost@x") {
		t.Fatalf("Close = %v, want an error naming ghost@x", err)
	}
	if w.Err() == nil {
		t.Fatal("Err() = nil after a failed outcome")
	}
	// A broken journal hands out no more recipients.
	if err := w.Claim(context.Background(), Claim{Key: "a@x"}); err == nil {
		t.Fatal("claim accepted after a write error")
	}
}

func TestRecordInvalidState(t *testing.T) {
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	mustClaim(t, w, "a@x", 1)
	w.Record(Outcome{Key: "a@x", State: "bogus"})
	if err := w.Close(); err == nil {
		t.Fatal("invalid outcome state accepted")
	}
	if e := lookup1(t, s, "nov", "a@x"); e.State != Sending {
		t.Fatalf("state = %s", e.State)
	}
}

func TestReasonTruncated(t *testing.T) {
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	mustClaim(t, w, "a@x", 1)
	w.Record(Outcome{Key: "a@x", State: Failed, Reason: strings.Repeat("é", 2000)})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := rows(t, s, "nov")[0].Reason
	if len(r) > maxReason+len("…") || !strings.HasPrefix(r, "éé") || !strings.HasSuffix(r, "é…") {
		t.Fatalf("reason of %d bytes: %q…", len(r), r[:20])
	}
}

func TestWriterKeepsOrderInOneBatch(t *testing.T) {
	s := openTest(t, nil)
	start := make(chan struct{})
	w := s.newWriter("nov", defaultMaxBatch, start)
	claimed := make(chan error, 1)
	go func() { claimed <- w.Claim(context.Background(), Claim{Key: "a@x", Email: "a@x", Line: 2}) }()
	for len(w.ops) == 0 {
		time.Sleep(time.Millisecond)
	}
	// The pipeline would never record before the claim returns; here the two are
	// queued back to back so that one transaction carries both.
	w.Record(Outcome{Key: "a@x", State: Sent, ProviderID: "id-1"})
	close(start)
	if err := <-claimed; err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := w.commits.Load(); n != 1 {
		t.Fatalf("%d commits, want 1 (claim and outcome in one batch)", n)
	}
	if e := lookup1(t, s, "nov", "a@x"); e.State != Sent {
		t.Fatalf("state = %s, want sent (outcome applied after its claim)", e.State)
	}
}

func TestGroupCommitBatches(t *testing.T) {
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	const workers, each = 8, 100
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				key := fmt.Sprintf("w%d-%d@x", g, i)
				if err := w.Claim(context.Background(), Claim{Key: key, Email: key, Line: g*each + i}); err != nil {
					t.Error(err)
					return
				}
				w.Record(Outcome{Key: key, State: Sent})
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	counts, _ := s.Counts(context.Background(), "nov")
	if counts[Sent] != workers*each {
		t.Fatalf("sent = %d, want %d", counts[Sent], workers*each)
	}
	if n := w.commits.Load(); n >= 2*workers*each {
		t.Fatalf("%d commits for %d operations: no grouping", n, 2*workers*each)
	}
	t.Logf("%d operations in %d commits", 2*workers*each, w.commits.Load())
}

func TestClaimAfterCloseFails(t *testing.T) {
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	w.Close()
	if err := w.Claim(context.Background(), Claim{Key: "a@x"}); err == nil {
		t.Fatal("claim after Close accepted")
	}
	w.Record(Outcome{Key: "a@x", State: Sent})
	if w.Err() == nil {
		t.Fatal("record after Close not reported")
	}
}

func TestClaimContextCancelledWhileQueueFull(t *testing.T) {
	s := openTest(t, nil)
	start := make(chan struct{})
	w := s.newWriter("nov", defaultMaxBatch, start)
	defer func() { close(start); w.Close() }()
	for i := range queueLen {
		w.ops <- op{outcome: Outcome{Key: fmt.Sprintf("k%d", i), State: Pending}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := w.Claim(ctx, Claim{Key: "a@x"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Claim = %v, want deadline exceeded", err)
	}
}

func TestSuppressionList(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := openTest(t, c)
	added, err := s.Suppress(ctx, []Suppression{
		{Email: " Zed@Example.com ", Reason: "unsubscribed", Source: "unsubscribe"},
		{Email: "amy@example.com", Reason: "complaint", Source: "webhook"},
		{Email: "ZED@example.COM", Reason: "second reason", Source: "import"},
		{Email: "   "},
	})
	if err != nil || added != 2 {
		t.Fatalf("Suppress = %d, %v; want 2", added, err)
	}
	added, err = s.Suppress(ctx, []Suppression{{Email: "AMY@example.com", Reason: "later"}, {Email: "new@x.org"}})
	if err != nil || added != 1 {
		t.Fatalf("second Suppress = %d, %v; want 1", added, err)
	}
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"zed@example.com", true}, {"ZED@EXAMPLE.COM", true}, {" amy@example.com", true},
		{"bob@example.com", false}, {"", false},
	} {
		got, err := s.IsSuppressed(ctx, tc.key)
		if err != nil || got != tc.want {
			t.Errorf("IsSuppressed(%q) = %v, %v; want %v", tc.key, got, err, tc.want)
		}
	}
	m, err := s.Suppressed(ctx, []string{"Zed@example.com", "amy@example.com", "bob@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["zed@example.com"].Reason != "unsubscribed" || m["zed@example.com"].Email != "Zed@Example.com" ||
		!m["zed@example.com"].At.Equal(c.Now()) || m["amy@example.com"].Source != "webhook" {
		t.Fatalf("Suppressed = %+v", m)
	}
	var listed []string
	if err := s.EachSuppressed(ctx, func(sp Suppression) error { listed = append(listed, sp.Email); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(listed, ",") != "amy@example.com,new@x.org,Zed@Example.com" {
		t.Fatalf("EachSuppressed order: %v", listed)
	}
	stop := errors.New("stop")
	if err := s.EachSuppressed(ctx, func(Suppression) error { return stop }); err != stop {
		t.Fatalf("EachSuppressed did not return fn's error: %v", err)
	}
	removed, err := s.Unsuppress(ctx, []string{"ZED@example.com", "nobody@x"})
	if err != nil || removed != 1 {
		t.Fatalf("Unsuppress = %d, %v; want 1", removed, err)
	}
	if ok, _ := s.IsSuppressed(ctx, "zed@example.com"); ok {
		t.Fatal("still suppressed after Unsuppress")
	}
}

func TestSuppressWhileWriterRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := fmt.Sprintf("%d-%d@x", g, i)
				if err := w.Claim(ctx, Claim{Key: key}); err != nil {
					t.Error(err)
					return
				}
				w.Record(Outcome{Key: key, State: Sent})
			}
		}()
	}
	for i := range 50 {
		if _, err := s.Suppress(ctx, []Suppression{{Email: fmt.Sprintf("s%d@x", i)}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.BeginRun(ctx, "other", false); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if counts, _ := s.Counts(ctx, "nov"); counts[Sent] != 800 {
		t.Fatalf("sent = %d", counts[Sent])
	}
}

func TestLookupBatch(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	var keys []string
	for i := range 400 {
		key := fmt.Sprintf("u%03d@x", i)
		keys = append(keys, key)
		if i%2 == 0 {
			mustClaim(t, w, key, i)
		}
	}
	w.Close()
	m, err := s.Lookup(ctx, "nov", keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 200 {
		t.Fatalf("Lookup found %d, want 200", len(m))
	}
	if _, ok := m["u001@x"]; ok {
		t.Fatal("unclaimed key found")
	}
	if m, err := s.Lookup(ctx, "other", keys); err != nil || len(m) != 0 {
		t.Fatalf("other campaign: %v, %v", m, err)
	}
	if m, err := s.Lookup(ctx, "nov", nil); err != nil || len(m) != 0 {
		t.Fatalf("no keys: %v, %v", m, err)
	}
}

func TestEachRowFilterAndOrder(t *testing.T) {
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	for _, r := range []struct {
		key   string
		line  int
		state State
	}{{"c@x", 9, Failed}, {"a@x", 3, Sent}, {"b@x", 5, Failed}, {"d@x", 4, Deferred}} {
		mustClaim(t, w, r.key, r.line)
		w.Record(Outcome{Key: r.key, State: r.state, Reason: "because"})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows(t, s, "nov", Failed, Deferred) {
		got = append(got, fmt.Sprintf("%d:%s", r.Line, r.State))
	}
	if strings.Join(got, " ") != "4:deferred 5:failed 9:failed" {
		t.Fatalf("EachRow = %v", got)
	}
	if n := len(rows(t, s, "nov")); n != 4 {
		t.Fatalf("all states: %d rows", n)
	}
}

func TestRunsAndCampaigns(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	s := openTest(t, c)
	if _, ok, err := s.LastRun(ctx, "nov"); ok || err != nil {
		t.Fatalf("LastRun of a new store: %v, %v", ok, err)
	}
	id, _, err := s.BeginRun(ctx, "nov", false)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if err := s.EndRun(ctx, id, []byte(`{"sent":3}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.EndRun(ctx, id+100, nil); err == nil {
		t.Fatal("EndRun of a missing run accepted")
	}
	ri, ok, err := s.LastRun(ctx, "nov")
	if err != nil || !ok || ri.ID != id || string(ri.Summary) != `{"sent":3}` ||
		!ri.Started.Equal(c.Now().Add(-time.Minute)) || !ri.Ended.Equal(c.Now()) {
		t.Fatalf("LastRun = %+v, %v, %v", ri, ok, err)
	}
	w := s.NewWriter("alpha")
	mustClaim(t, w, "a@x", 1)
	w.Close()
	cs, err := s.Campaigns(ctx)
	if err != nil || strings.Join(cs, ",") != "alpha,nov" {
		t.Fatalf("Campaigns = %v, %v", cs, err)
	}
}

func TestSecretStableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "h.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Secret(ctx)
	if err != nil || len(a) != 32 {
		t.Fatalf("Secret = %x, %v", a, err)
	}
	b, _ := s.Secret(ctx)
	s.Close()
	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.Secret(ctx)
	if err != nil || string(a) != string(b) || string(a) != string(c) {
		t.Fatalf("secret changed: %x %x %x %v", a, b, c, err)
	}
	other := openTest(t, nil)
	d, _ := other.Secret(ctx)
	if string(d) == string(a) {
		t.Fatal("two stores share a secret")
	}
}

func TestSecretConcurrentFirstUse(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "h.db")
	var stores []*Store
	for range 4 {
		s, err := Open(ctx, path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	got := make([][]byte, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if got[i], err = s.Secret(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range got {
		if string(got[i]) != string(got[0]) {
			t.Fatalf("stores disagree on the secret: %x vs %x", got[i], got[0])
		}
	}
}

func TestOpenErrorsNamePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "h.db")
	_, err := Open(context.Background(), path, Options{})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open = %v, want an error naming %s", err, path)
	}
	if _, err := Open(context.Background(), "", Options{}); err == nil {
		t.Fatal("empty path accepted")
	}
}

func TestOpenPathWithSpecialCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "my store?#%.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("store not created at %q: %v", path, err)
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijk", 5, "abcde…"},
		{"ééé", 3, "é…"}, // never splits a UTF-8 sequence
		{"", 0, ""},
	} {
		if got := truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestRecordThenSaysWhenDurable(t *testing.T) {
	s := openTest(t, nil)
	w := s.NewWriter("nov")
	mustClaim(t, w, "a@x", 2)
	got := make(chan error, 1)
	w.RecordThen(Outcome{Key: "a@x", State: Sent, ProviderID: "id-1"}, func(err error) { got <- err })
	if err := <-got; err != nil {
		t.Fatalf("RecordThen: %v", err)
	}
	if e := lookup1(t, s, "nov", "a@x"); e.State != Sent {
		t.Fatalf("state after the callback = %s, want sent", e.State)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.RecordThen(Outcome{Key: "a@x", State: Sent}, func(err error) { got <- err })
	if err := <-got; err == nil {
		t.Fatal("RecordThen after Close: callback got nil, want an error")
	}
}

func TestReopenReturnsFailedToPendingAndLiftsItsSuppression(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, nil)
	if _, err := s.Suppress(ctx, []Suppression{{Email: "other@x", Source: "unsubscribe"}}); err != nil {
		t.Fatal(err)
	}
	w := s.NewWriter("nov")
	for _, k := range []string{"a@x", "b@x", "other@x"} {
		mustClaim(t, w, k, 2)
	}
	w.Record(Outcome{Key: "a@x", State: Failed, Code: 550, Reason: "sender rejected", Suppress: true})
	w.Record(Outcome{Key: "b@x", State: Sent})
	w.Record(Outcome{Key: "other@x", State: Failed, Code: 550, Reason: "sender rejected", Suppress: true})
	for _, k := range []string{"a@x", "b@x", "other@x"} {
		w.Record(Outcome{Key: k, State: Pending, Reopen: true})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if e := lookup1(t, s, "nov", "a@x"); e.State != Pending {
		t.Errorf("reopened a@x: %+v, want pending", e)
	}
	if e := lookup1(t, s, "nov", "b@x"); e.State != Sent {
		t.Errorf("b@x (sent) became %s: reopen must touch only failed rows", e.State)
	}
	got, err := s.Suppressed(ctx, []string{"a@x", "other@x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["a@x"]; ok {
		t.Error("a@x is still suppressed by the failure that was reopened")
	}
	if sp, ok := got["other@x"]; !ok || sp.Source != "unsubscribe" {
		t.Errorf("other@x: %+v %v: an earlier suppression of another source must stay", sp, ok)
	}
}
