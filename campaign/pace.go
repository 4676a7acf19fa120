package campaign

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldmail/herald/providers"
)

// slowest is the lowest rate a pacer falls to: one message a minute.
const slowest = 1.0 / 60

// recoverStep is how much a success raises a lowered rate (5%), up to the ceiling.
const recoverStep = 1.05

// minEpisode is the shortest throttling episode: throttling answers within it (from
// other workers' sends in flight when the first came) cut the rate once.
const minEpisode = time.Second

// episode is how long a throttling episode that cut the rate to perSecond lasts: the
// longest of a second, the provider's retry-after, and one round of the workers at the
// new rate (each worker's next message is still the same episode's: the answers of
// the workers' first messages cut the rate once, not once per worker).
func episode(perSecond float64, workers int, retryAfter time.Duration) time.Duration {
	d := max(minEpisode, retryAfter)
	if perSecond > 0 && workers > 1 {
		d = max(d, time.Duration(float64(workers)/perSecond*float64(time.Second)))
	}
	return d
}

// Pacer is the rate at which a run sends: a ceiling over any one-second window (the
// limiter of NewLimiter), lowered when the provider throttles and raised again when its
// answers are good. It cuts the rate in half at most once per throttling episode (the
// longest of a second, the provider's retry-after and one round of the workers at the
// lowered rate), holds every send until a retry-after has passed, and after the
// episode raises the rate by 5% per success up to the ceiling (rclone's pacer: attack
// and decay). It is safe for concurrent use.
type Pacer struct {
	limiter *rate.Limiter
	// window is the exact ceiling between 1/s and windowMax/s; the limiter spaces
	// the messages out beneath it.
	window  window
	now     func() time.Time
	workers int

	mu         sync.Mutex
	ceiling    float64
	cur        float64
	episodeEnd time.Time
	holdUntil  time.Time
}

// NewPacer returns a pacer at its ceiling of perSecond messages (≤ 0 or +Inf: no limit).
func NewPacer(perSecond float64) *Pacer {
	p := &Pacer{now: time.Now, ceiling: perSecond, cur: perSecond}
	p.limiter = rate.NewLimiter(rate.Inf, 1)
	p.apply()
	return p
}

// apply sets the limiter for the current rate; p.mu is held (or p not yet shared).
// Between 1/s and windowMax/s a sliding window of the last second's messages is the
// ceiling, exactly, and the limiter beneath it spaces the messages out at 10% above the
// window's size with a burst of 2%: after a stall (every worker waiting on the journal or
// the network) the run catches up on the turns it missed instead of losing them, and
// the window keeps the catching up beneath the ceiling. Otherwise the limiter alone is
// the ceiling (NewLimiter).
func (p *Pacer) apply() {
	if p.cur <= 0 || p.cur > float64(rate.Inf) {
		p.window.setMax(0)
		p.limiter.SetLimit(rate.Inf)
		return
	}
	if n := windowSize(p.cur); n > 0 {
		p.window.setMax(n)
		p.limiter.SetBurst(max(n/50, 1))
		p.limiter.SetLimit(rate.Limit(float64(n) * 1.1))
		return
	}
	p.window.setMax(0)
	l := NewLimiter(p.cur)
	p.limiter.SetBurst(l.Burst())
	p.limiter.SetLimit(l.Limit())
}

// windowMax is the highest rate a sliding window holds to (its memory grows with the
// rate); above it the limiter's arithmetic keeps the ceiling.
const windowMax = 50000

// windowSize is how many messages the sliding window lets through per second at
// perSecond (0: no window): the rate, less 0.5% above 200/s for the jitter between a
// message's turn and the provider's call.
func windowSize(perSecond float64) int {
	switch {
	case perSecond < 1 || perSecond > windowMax:
		return 0
	case perSecond >= 200:
		return int(perSecond * 0.995)
	}
	return int(perSecond)
}

// window holds the times of the last max turns given: a turn is given only when the
// oldest of them is more than a second old, so no closed one-second window ever holds
// more than max. It is safe for concurrent use.
type window struct {
	mu    sync.Mutex
	max   int         // 0: no window
	times []time.Time // a ring of up to max times, oldest at head
	head  int
}

// setMax changes the size, keeping the latest turns.
func (w *window) setMax(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n == w.max {
		return
	}
	ordered := make([]time.Time, 0, min(n, len(w.times)))
	for i := range len(w.times) {
		ordered = append(ordered, w.times[(w.head+i)%len(w.times)])
	}
	if len(ordered) > n {
		ordered = ordered[len(ordered)-n:]
	}
	w.times, w.head, w.max = ordered, 0, n
}

// wait blocks until a turn keeps the window at most max, and takes it.
func (w *window) wait(ctx context.Context) error {
	for {
		w.mu.Lock()
		if w.max <= 0 {
			w.mu.Unlock()
			return nil
		}
		now := time.Now()
		if len(w.times) < w.max {
			w.times = append(w.times, now)
			w.mu.Unlock()
			return nil
		}
		oldest := w.times[w.head]
		if now.Sub(oldest) > time.Second {
			w.times[w.head] = now
			w.head = (w.head + 1) % len(w.times)
			w.mu.Unlock()
			return nil
		}
		d := oldest.Add(time.Second + time.Microsecond).Sub(now)
		w.mu.Unlock()
		if !sleep(ctx, d) {
			return context.Cause(ctx)
		}
	}
}

// SetWorkers says how many workers send at this pace (1 when never set).
func (p *Pacer) SetWorkers(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.workers = n
}

// Rate is the current rate in messages per second.
func (p *Pacer) Rate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// Ceiling is the rate the pacer climbs back to.
func (p *Pacer) Ceiling() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ceiling
}

// SetCeiling changes the ceiling (a run's share of the campaign's rate); a current rate
// above it comes down to it, one below it climbs towards it as usual.
func (p *Pacer) SetCeiling(perSecond float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if perSecond == p.ceiling {
		return
	}
	if p.cur >= p.ceiling || p.cur > perSecond {
		p.cur = perSecond
	}
	p.ceiling = perSecond
	p.apply()
}

// Wait blocks until a retry-after hold has passed and the rate allows one more message,
// or ctx ends.
func (p *Pacer) Wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		hold := p.holdUntil.Sub(p.now())
		p.mu.Unlock()
		if hold <= 0 {
			break
		}
		if !sleep(ctx, hold) {
			return context.Cause(ctx)
		}
	}
	if err := p.limiter.Wait(ctx); err != nil {
		return err
	}
	return p.window.wait(ctx)
}

// Throttled notes a throttling answer. The first of an episode halves the rate (not
// below one message a minute) and starts an episode (see episode); a retryAfter also
// holds every send until it has passed. It reports whether the rate was cut, and the
// rate.
func (p *Pacer) Throttled(retryAfter time.Duration) (cut bool, now float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.now()
	if retryAfter > 0 {
		if until := t.Add(retryAfter); until.After(p.holdUntil) {
			p.holdUntil = until
		}
	}
	if t.Before(p.episodeEnd) {
		if until := t.Add(retryAfter); until.After(p.episodeEnd) {
			p.episodeEnd = until // the provider asked for longer
		}
		return false, p.cur
	}
	if p.cur <= 0 || p.cur > float64(rate.Inf) {
		p.episodeEnd = t.Add(max(minEpisode, retryAfter))
		return false, p.cur // no ceiling: nothing to lower
	}
	next := max(p.cur/2, slowest)
	p.episodeEnd = t.Add(episode(next, p.workers, retryAfter))
	if next >= p.cur {
		return false, p.cur
	}
	p.cur = next
	p.apply()
	return true, p.cur
}

// Succeeded notes a good answer: after a throttling episode the rate climbs by 5%, up to
// the ceiling. It reports whether the rate has just reached the ceiling again.
func (p *Pacer) Succeeded() (recovered bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur >= p.ceiling || p.now().Before(p.episodeEnd) {
		return false
	}
	p.cur = min(p.cur*recoverStep, p.ceiling)
	p.apply()
	return p.cur >= p.ceiling
}

// pacedProvider is a provider whose answers steer a pacer: throttling answers slow it,
// successes let it recover. It does not wait itself: a recipient waits for the pacer
// before it is claimed (a stop then leaves it pending, untouched).
type pacedProvider struct {
	providers.Provider
	pacer *Pacer
	// warnf reports a cut and a recovery (nil: silent).
	warnf func(format string, args ...any)
}

func (p *pacedProvider) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	r, err := p.Provider.Send(ctx, msg)
	switch pe := providers.AsError(err); {
	case err == nil:
		if p.pacer.Succeeded() && p.warnf != nil {
			p.warnf("%s: rate back at %.4g/s", p.Name(), p.pacer.Ceiling())
		}
	case pe != nil && pe.SlowDown:
		if cut, now := p.pacer.Throttled(pe.RetryAfter); cut && p.warnf != nil {
			p.warnf("%s is throttling: rate lowered to %.4g/s until its answers are good again", p.Name(), now)
		}
	}
	return r, err
}
