package campaign

import (
	"regexp"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/unsubscribe"
	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// TestRateIsACeilingForAllWorkers: with 8 workers and rate 20/s, no one-second window
// of the provider's calls holds more than 20 messages (PRODUCT.md: "a ceiling over any
// one-second window, for all workers together"). The pipeline runs in a synctest bubble
// with the limiter a send builds (NewLimiter), so the clock is exact and a busy machine
// cannot bunch or spread the calls; TestNewLimiterCeiling checks the arithmetic alone.
func TestRateIsACeilingForAllWorkers(t *testing.T) {
	pf := newPipelineFixture(t, 45, "")
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var calls []time.Time
		prov := &fakeProvider{answer: func(*providers.Message) error {
			mu.Lock()
			calls = append(calls, time.Now())
			mu.Unlock()
			return nil
		}}
		rec := newMemRecorder(-1)
		p := pf.pipeline(prov, rec, 8)
		p.Pacer = NewPacer(20)
		if err := p.Run(t.Context(), -1, pf.feed); err != nil {
			t.Fatal(err)
		}
		if got := rec.count(journal.Sent); got != 45 {
			t.Fatalf("%d sent, want 45", got)
		}
		sort.Slice(calls, func(i, j int) bool { return calls[i].Before(calls[j]) })
		for i := range calls {
			n := 0
			for j := i; j < len(calls) && calls[j].Sub(calls[i]) <= time.Second; j++ {
				n++
			}
			if n > 20 {
				t.Fatalf("%d messages within one closed second from message %d; the ceiling is 20/s", n, i)
			}
		}
		// 45 messages at 20/s cannot take less than two seconds.
		if span := calls[len(calls)-1].Sub(calls[0]); span < 2*time.Second {
			t.Fatalf("45 messages at 20/s went out over %s", span)
		}
	})
}

// TestRateAccuracy: at rate 2000/s for 20 s with 8 workers, the provider sees within 2%
// of the ceiling, and no closed one-second window holds more than 2000 messages. In a
// synctest bubble, so the figures are the pacer's own, exact; .ci/bench-rate.sh measures
// the same over the wire.
func TestRateAccuracy(t *testing.T) {
	checkRateAt2000(t, 0)
}

// TestRateCatchesUpAfterStalls: every 5,000th message every worker is held up for 100 ms
// (a slow commit, a network hiccup); the run still achieves 98% of the ceiling over
// 20 s, catching up on the missed turns, and no closed one-second window exceeds it. A
// limiter alone (a token bucket kept beneath the ceiling by its small burst) loses every
// stall's turns: 1,914/s here.
func TestRateCatchesUpAfterStalls(t *testing.T) {
	checkRateAt2000(t, 5000)
}

// checkRateAt2000 sends 40,000 messages at rate 2000/s with 8 workers through a fake
// provider that, when stallEvery > 0, holds every call for 100 ms after each
// stallEvery-th; it fails t when a closed one-second window holds more than 2000 calls or
// the achieved rate is under 98% of the ceiling.
func checkRateAt2000(t *testing.T, stallEvery int) {
	if testing.Short() {
		t.Skip("40,000 messages")
	}
	const perSecond, seconds = 2000, 20
	pf := newPipelineFixture(t, perSecond*seconds, "")
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var stallUntil time.Time
		calls := make([]time.Time, 0, perSecond*seconds)
		prov := &fakeProvider{answer: func(*providers.Message) error {
			mu.Lock()
			now := time.Now()
			calls = append(calls, now)
			if stallEvery > 0 && len(calls)%stallEvery == 0 {
				stallUntil = now.Add(100 * time.Millisecond)
			}
			wait := stallUntil.Sub(now)
			mu.Unlock()
			time.Sleep(wait)
			return nil
		}}
		p := pf.pipeline(prov, newMemRecorder(-1), 8)
		p.Pacer = NewPacer(perSecond)
		if err := p.Run(t.Context(), -1, pf.feed); err != nil {
			t.Fatal(err)
		}
		if len(calls) != perSecond*seconds {
			t.Fatalf("%d calls, want %d", len(calls), perSecond*seconds)
		}
		sort.Slice(calls, func(i, j int) bool { return calls[i].Before(calls[j]) })
		achieved, worst := rateFigures(calls)
		t.Logf("achieved %.1f/s (%.2f%% of %d/s), a 100 ms stall every %d messages (0: none); worst one-second window %d",
			achieved, achieved/perSecond*100, perSecond, stallEvery, worst)
		if worst > perSecond {
			t.Errorf("a closed one-second window holds %d messages; the ceiling is %d", worst, perSecond)
		}
		if achieved < perSecond*0.98 {
			t.Errorf("achieved %.1f/s, below 98%% of the %d/s ceiling", achieved, perSecond)
		}
	})
}

// rateFigures returns the mean rate of sorted calls (the first to the last) and the most
// calls in any closed one-second window.
func rateFigures(calls []time.Time) (achieved float64, worst int) {
	if len(calls) < 2 {
		return 0, len(calls)
	}
	j := 0
	for i := range calls {
		for j < len(calls) && calls[j].Sub(calls[i]) <= time.Second {
			j++
		}
		worst = max(worst, j-i)
	}
	return float64(len(calls)-1) / calls[len(calls)-1].Sub(calls[0]).Seconds(), worst
}

// TestRateFlagOverridesTheFile: --rate (SendOptions.Rate) replaces the file's rate for a
// real send to an SMTP relay: 30 messages at 20/s take at least a second even with 8
// workers (the file says 10000/s). Only a lower bound is checked: wall-clock windows on a
// busy machine are for TestRateIsACeilingForAllWorkers to check in a bubble.
func TestRateFlagOverridesTheFile(t *testing.T) {
	if testing.Short() {
		t.Skip("sends for more than a second")
	}
	var mu sync.Mutex
	var arrivals []time.Time
	srv := smtptest.Start(t, smtptest.Options{Data: func(smtptest.Message) *gosmtp.SMTPError {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		return nil
	}})
	f := newFixture(t, 30, smtpBlock(srv), "")
	r, _ := ParseRate("20/s")
	sum, err := f.send(-1, SendOptions{Workers: 8, Rate: &r})
	if err != nil || sum.Sent != 30 {
		t.Fatalf("send: %s %v", sum.JSON(), err)
	}
	sort.Slice(arrivals, func(i, j int) bool { return arrivals[i].Before(arrivals[j]) })
	if span := arrivals[len(arrivals)-1].Sub(arrivals[0]); span < time.Second-50*time.Millisecond {
		t.Fatalf("30 messages at --rate 20/s arrived over %s", span)
	}
}

// TestHeraldSecretSignsTheLinks: with HERALD_SECRET set, the unsubscribe token in every
// message verifies with that secret (so `herald serve` elsewhere can check it).
func TestHeraldSecretSignsTheLinks(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, 3, smtpBlock(srv), "")
	const secret = "a-shared-secret-of-some-length"
	if _, err := Send(t.Context(), f.load(), SendOptions{Store: f.store(), Limit: -1}, testEnv(map[string]string{"HERALD_SECRET": secret})); err != nil {
		t.Fatal(err)
	}
	signer, _ := unsubscribe.NewSigner([]byte(secret))
	other, _ := unsubscribe.NewSigner([]byte("herald-preview-secret-not-for-sending"))
	re := regexp.MustCompile(`List-Unsubscribe: <https://example\.com/u/(u[12]\.[^>]+)>`)
	for _, m := range srv.Messages() {
		tok := re.FindSubmatch(m.Raw)
		if tok == nil {
			t.Fatalf("no token in %s", m.Raw)
		}
		campaign, addr, err := signer.Verify(string(tok[1]))
		if err != nil || campaign != "test-campaign" || addr != m.To[0] {
			t.Fatalf("token %s: %q %q %v", tok[1], campaign, addr, err)
		}
		if _, _, err := other.Verify(string(tok[1])); err == nil {
			t.Fatalf("the token verifies with another secret too")
		}
	}
	if len(srv.Messages()) != 3 {
		t.Fatalf("%d messages", len(srv.Messages()))
	}
}
