package campaign

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers"
)

// throttled is a provider's throttling answer (HTTP 429, SMTP 421 4.7.0 "too many").
func throttled(retryAfter time.Duration) error {
	return &providers.Error{Provider: "fake", Kind: providers.Temporary, Code: 429,
		Message: "too many requests", SlowDown: true, RetryAfter: retryAfter}
}

// warnings collects a pipeline's warnings.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) warnf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, fmt.Sprintf(format, args...))
}

func (w *warnings) count(substr string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.list {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

// The pacer alone: throttling answers within an episode cut once; successes inside the
// episode do not raise the rate; after it, +5% per success climbs back to the ceiling.
func TestPacerCutsOncePerEpisodeAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPacer(10)
		for i := 0; i < 8; i++ {
			cut, _ := p.Throttled(0)
			if cut != (i == 0) {
				t.Fatalf("throttle %d: cut %v", i, cut)
			}
		}
		if r := p.Rate(); r != 5 {
			t.Fatalf("rate %v after one episode, want 5", r)
		}
		p.Succeeded()
		if r := p.Rate(); r != 5 {
			t.Fatalf("a success inside the episode raised the rate to %v", r)
		}
		time.Sleep(minEpisode)
		n := 0
		for !p.Succeeded() {
			n++
			if n > 100 {
				t.Fatalf("rate %v after 100 successes, ceiling 10", p.Rate())
			}
		}
		if r := p.Rate(); r != 10 || n > 15 {
			t.Fatalf("rate %v after %d successes, want 10 within 15", r, n)
		}
		// A new episode cuts again; a retry-after lengthens it and holds every send.
		if cut, r := p.Throttled(3 * time.Second); !cut || r != 5 {
			t.Fatalf("new episode: cut %v rate %v", cut, r)
		}
		start := time.Now()
		if err := p.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if w := time.Since(start); w < 3*time.Second {
			t.Fatalf("Wait returned after %s, the retry-after is 3s", w)
		}
		time.Sleep(time.Second)
		p.Succeeded()
		if r := p.Rate(); r <= 5 {
			t.Fatalf("rate %v after the retry-after's episode and a success", r)
		}
		// The floor: one message a minute.
		for i := 0; i < 20; i++ {
			time.Sleep(minEpisode)
			p.Throttled(0)
		}
		if r := p.Rate(); r != slowest {
			t.Fatalf("rate %v after 20 episodes, want the floor %v", r, slowest)
		}
	})
}

// Issue 9: with 8 workers and a provider that answers 429 to the first message of each
// worker, the rate dips once and is back at its ceiling within seconds (it used to be
// halved once per throttled worker and never raised: 10/s became 0.039/s). At 40/s the
// eight first messages go out within the second-long episode the first answer starts.
func TestPacingRecoversAfterEachWorkerIsThrottledOnce(t *testing.T) {
	pf := newPipelineFixture(t, 200, "")
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		var mu sync.Mutex
		var firstThrottle, recovered time.Time
		prov := &fakeProvider{answer: func(*providers.Message) error {
			if calls.Add(1) <= 8 {
				mu.Lock()
				if firstThrottle.IsZero() {
					firstThrottle = time.Now()
				}
				mu.Unlock()
				return throttled(0)
			}
			return nil
		}}
		rec := newMemRecorder(-1)
		p := pf.pipeline(prov, rec, 8)
		p.Pacer = NewPacer(40)
		var w warnings
		p.Warnf = func(format string, args ...any) {
			w.warnf(format, args...)
			if strings.Contains(format, "back at") {
				mu.Lock()
				recovered = time.Now()
				mu.Unlock()
			}
		}
		if err := p.Run(t.Context(), -1, pf.feed); err != nil {
			t.Fatal(err)
		}
		if got := rec.count(journal.Sent); got != 200 {
			t.Fatalf("%d sent, want 200", got)
		}
		if n := w.count("rate lowered"); n != 1 {
			t.Fatalf("the rate was lowered %d times, want once: %q", n, w.list)
		}
		if r := p.Pacer.Rate(); r != 40 {
			t.Fatalf("rate %v at the end, want the ceiling 40", r)
		}
		if recovered.IsZero() || recovered.Sub(firstThrottle) > 5*time.Second {
			t.Fatalf("back at the ceiling %s after the first 429 (warnings %q)", recovered.Sub(firstThrottle), w.list)
		}
	})
}

// A provider that keeps throttling keeps the rate down: one cut per second-long
// episode, not one per answer.
func TestPacingSustainedThrottlingHoldsTheRateDown(t *testing.T) {
	pf := newPipelineFixture(t, 60, "")
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		prov := &fakeProvider{answer: func(*providers.Message) error {
			if time.Since(start) < 5*time.Second {
				return throttled(0)
			}
			return nil
		}}
		rec := newMemRecorder(-1)
		p := pf.pipeline(prov, rec, 8)
		p.Pacer = NewPacer(10)
		p.Retry.Attempts = 100
		var w warnings
		p.Warnf = w.warnf
		var at4s float64
		go func() {
			time.Sleep(4500 * time.Millisecond)
			at4s = p.Pacer.Rate()
		}()
		if err := p.Run(t.Context(), -1, pf.feed); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if at4s > 10.0/8 {
			t.Fatalf("rate %v after 4.5 s of throttling, want at most 10/8", at4s)
		}
		if n := w.count("rate lowered"); n < 4 || n > 6 {
			t.Fatalf("%d cuts in 5 s of throttling, want one per second: %q", n, w.list)
		}
		if got := rec.count(journal.Sent); got != 60 {
			t.Fatalf("%d sent, want 60", got)
		}
	})
}

// A retry-after holds every send, not only the throttled recipient's retry.
func TestPacingHonoursRetryAfter(t *testing.T) {
	pf := newPipelineFixture(t, 10, "")
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var calls []time.Time
		prov := &fakeProvider{answer: func(*providers.Message) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, time.Now())
			if len(calls) == 1 {
				return throttled(3 * time.Second)
			}
			return nil
		}}
		rec := newMemRecorder(-1)
		p := pf.pipeline(prov, rec, 1)
		p.Pacer = NewPacer(100)
		if err := p.Run(t.Context(), -1, pf.feed); err != nil {
			t.Fatal(err)
		}
		if len(calls) != 11 || rec.count(journal.Sent) != 10 {
			t.Fatalf("%d calls, %d sent; want 11 and 10", len(calls), rec.count(journal.Sent))
		}
		if gap := calls[1].Sub(calls[0]); gap < 3*time.Second {
			t.Fatalf("next send %s after a retry-after of 3s", gap)
		}
	})
}

// A temporary failure does not hold its worker: while two recipients wait 10 s for
// their retry, the two workers send everybody else.
func TestRetriesWaitOutsideTheWorkers(t *testing.T) {
	pf := newPipelineFixture(t, 40, "")
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		tries := map[string]int{}
		var lastOthers time.Time
		prov := &fakeProvider{answer: func(m *providers.Message) error {
			mu.Lock()
			defer mu.Unlock()
			tries[m.To]++
			first := m.To == pf.recipients[0].Email || m.To == pf.recipients[1].Email
			if first && tries[m.To] == 1 {
				return &providers.Error{Provider: "fake", Kind: providers.Temporary, Code: 451, Message: "try later"}
			}
			if !first {
				lastOthers = time.Now()
			}
			return nil
		}}
		rec := newMemRecorder(-1)
		p := pf.pipeline(prov, rec, 2)
		p.Retry = Retry{Attempts: 3, Backoff: 20 * time.Second, MaxBackoff: 20 * time.Second, GiveUpAfter: time.Hour}
		if err := p.Run(t.Context(), -1, pf.feed); err != nil {
			t.Fatal(err)
		}
		if got := rec.count(journal.Sent); got != 40 {
			t.Fatalf("%d sent, want 40", got)
		}
		if d := lastOthers.Sub(start); d >= 10*time.Second {
			t.Fatalf("the other 38 took %s: the workers slept through the retries' wait", d)
		}
	})
}
