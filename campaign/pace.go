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

// Pacer is the rate at which a run sends: a ceiling over any one-second window (the
// limiter of NewLimiter), lowered when the provider throttles and raised again when its
// answers are good. It cuts the rate in half at most once per throttling episode (the
// longer of a second and the provider's retry-after), holds every send until a
// retry-after has passed, and after the episode raises the rate by 5% per success up
// to the ceiling (rclone's pacer: attack and decay). It is safe for concurrent use.
type Pacer struct {
	limiter *rate.Limiter
	now     func() time.Time

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
func (p *Pacer) apply() {
	if p.cur <= 0 || p.cur > float64(rate.Inf) {
		p.limiter.SetLimit(rate.Inf)
		return
	}
	l := NewLimiter(p.cur)
	p.limiter.SetBurst(l.Burst())
	p.limiter.SetLimit(l.Limit())
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
	return p.limiter.Wait(ctx)
}

// Throttled notes a throttling answer. The first of an episode halves the rate (not
// below one message a minute) and starts an episode of the longer of a second and
// retryAfter; a retryAfter also holds every send until it has passed. It reports
// whether the rate was cut, and the rate.
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
	p.episodeEnd = t.Add(max(minEpisode, retryAfter))
	if p.cur <= 0 || p.cur > float64(rate.Inf) {
		return false, p.cur // no ceiling: nothing to lower
	}
	next := max(p.cur/2, slowest)
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
