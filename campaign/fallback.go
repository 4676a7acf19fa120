package campaign

import (
	"context"
	"sync"

	"github.com/heraldmail/herald/providers"
)

// FallbackSpec builds the spec of the campaign's fallback provider (`fallback:`).
func FallbackSpec(c *Campaign, env Env) providers.Spec {
	s := ProviderSpec(c, env)
	s.Kind, s.Decode = c.FallbackKind, c.DecodeFallback
	return s
}

// checkFallback validates the fallback block like the provider's (its secrets too: a
// fallback that cannot be used would fail the run when it is needed).
func checkFallback(c *Campaign, env Env, secrets bool) (providers.Registration, error) {
	if c.FallbackKind == "" {
		return providers.Registration{}, nil
	}
	reg, err := env.Registry.Lookup(c.FallbackKind)
	if err != nil {
		return reg, configErr("%s: fallback: %v", c.Path, err)
	}
	if err := reg.Check(FallbackSpec(c, env), secrets); err != nil {
		return reg, &ConfigError{Err: err}
	}
	return reg, nil
}

// switchover is the provider a run sends through: the primary, until it gives a fatal
// error or is found unreachable; then, once and for the rest of the run, the fallback.
// The switch happens under a lock, and each attempt is judged by the provider that
// actually made it: a late answer from the primary does not count against the
// fallback.
type switchover struct {
	mu       sync.Mutex
	active   providers.Provider
	onFall   bool
	open     func(ctx context.Context) (providers.Provider, error) // nil: no fallback
	opened   providers.Provider
	warnf    func(format string, args ...any)
	onSwitch func(providers.Provider)
}

// current is the provider to send through, and whether it is the fallback.
func (s *switchover) current() (providers.Provider, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active, s.onFall
}

// fallOver switches to the fallback after err from the primary (fromFallback: the
// attempt went through the fallback, which has nothing behind it). It reports whether
// the attempt may be made again through the fallback: true also when another worker
// switched already.
func (s *switchover) fallOver(ctx context.Context, fromFallback bool, err error) bool {
	if fromFallback {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onFall {
		return true
	}
	if s.open == nil {
		return false
	}
	from := s.active.Name()
	fb, oerr := s.open(ctx)
	s.open = nil // tried once
	if oerr != nil {
		if s.warnf != nil {
			s.warnf("%s failed (%v) and the fallback cannot be opened: %v", from, err, oerr)
		}
		return false
	}
	s.active, s.onFall, s.opened = fb, true, fb
	if s.warnf != nil {
		s.warnf("%s failed (%v): the run goes on through the fallback, %s", from, err, fb.Name())
	}
	if s.onSwitch != nil {
		s.onSwitch(fb)
	}
	return true
}

// close closes the fallback if it was opened.
func (s *switchover) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened != nil {
		return s.opened.Close()
	}
	return nil
}
