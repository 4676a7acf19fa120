package metrics

import (
	"context"
	"strings"
	"sync"

	"github.com/heraldmail/herald/providers"
)

// Instrument returns a copy of reg whose providers are measured: each Send's latency and
// result, retries, throttling answers and bounces. The providers behave exactly as
// before; optional abilities (Quota) are passed through.
func (m *Metrics) Instrument(reg providers.Registry) providers.Registry {
	out := make(providers.Registry, len(reg))
	for kind, r := range reg {
		open := r.Open
		r.Open = func(ctx context.Context, s providers.Spec) (providers.Provider, error) {
			p, err := open(ctx, s)
			if err != nil || p == nil {
				return p, err
			}
			ip := &instrumented{Provider: p, m: m, failed: map[string]struct{}{}}
			if q, ok := p.(quota); ok {
				return &instrumentedQuota{instrumented: ip, q: q}, nil
			}
			return ip, nil
		}
		out[kind] = r
	}
	return out
}

// quota is the optional ability of providers that know their account's sending rate.
type quota interface{ Quota() (float64, bool) }

// instrumented measures a provider.
type instrumented struct {
	providers.Provider
	m *Metrics

	mu     sync.Mutex
	failed map[string]struct{} // recipients whose last attempt failed temporarily
}

// Send sends through the provider and records what happened.
func (p *instrumented) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	name := p.Name()
	key := msg.Campaign + "\x00" + strings.ToLower(msg.To)
	p.mu.Lock()
	_, retry := p.failed[key]
	delete(p.failed, key)
	p.mu.Unlock()
	if retry {
		p.m.retries.WithLabelValues(name).Inc()
	}
	start := p.m.now()
	rc, err := p.Provider.Send(ctx, msg)
	took := p.m.now().Sub(start).Seconds()
	result := "ok"
	if err != nil {
		result = providers.KindOf(err).String()
		if pe := providers.AsError(err); pe != nil {
			if pe.SlowDown || pe.Code == 429 {
				p.m.throttled.WithLabelValues(name).Inc()
			}
			if pe.Kind == providers.Permanent && pe.Bounce {
				p.m.bounces.WithLabelValues(msg.Campaign, name).Inc()
			}
		}
		if providers.KindOf(err) == providers.Temporary && ctx.Err() == nil {
			p.mu.Lock()
			p.failed[key] = struct{}{}
			p.mu.Unlock()
		}
	}
	p.m.sendDuration.WithLabelValues(name, result).Observe(took)
	p.m.attempts.WithLabelValues(name, result).Inc()
	return rc, err
}

// instrumentedQuota is an instrumented provider that also reports its quota.
type instrumentedQuota struct {
	*instrumented
	q quota
}

func (p *instrumentedQuota) Quota() (float64, bool) { return p.q.Quota() }
