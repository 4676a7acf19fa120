package campaign

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// DomainLimit is the pacing of one recipient domain or group (`domains:` in the
// campaign file), beneath the campaign's rate.
type DomainLimit struct {
	// Key is the domain as written: "gmail.com", or a pattern "yahoo.*".
	Key string
	// Rate is the domain's ceiling over any one-second window.
	Rate Rate
	// Connections is how many of the domain's recipients may be sending (or waiting
	// for the domain's pace) at once (0: half the workers).
	Connections int
}

// domainGroups are the domains one mailbox provider answers for: a limit written for
// any of them covers them all, with one pace.
var domainGroups = [][]string{
	{"gmail.com", "googlemail.com"},
	{"outlook.com", "hotmail.com", "live.com", "msn.com"},
}

// domainSpec is a `domains:` entry as written.
type domainSpec struct {
	Rate        string `yaml:"rate"`
	Connections int    `yaml:"connections"`
}

// parseDomains checks the `domains:` block.
func parseDomains(in map[string]domainSpec) ([]DomainLimit, error) {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []DomainLimit
	seen := map[string]string{}
	for _, k := range keys {
		spec := in[k]
		key := strings.ToLower(strings.TrimSpace(k))
		if !validDomainKey(key) {
			return nil, fmt.Errorf("%q is not a domain (e.g. gmail.com) or a pattern (e.g. yahoo.*)", k)
		}
		for _, member := range groupOf(key) {
			if other, dup := seen[member]; dup {
				return nil, fmt.Errorf("%q and %q are the same mailbox provider: write one of them", other, k)
			}
			seen[member] = k
		}
		if spec.Rate == "" {
			return nil, fmt.Errorf("%s: rate: required (e.g. \"20/s\")", k)
		}
		r, err := ParseRate(spec.Rate)
		if err != nil {
			return nil, fmt.Errorf("%s: rate: %v", k, err)
		}
		if spec.Connections < 0 || spec.Connections > 256 {
			return nil, fmt.Errorf("%s: connections: %d: use 1 to 256", k, spec.Connections)
		}
		out = append(out, DomainLimit{Key: key, Rate: r, Connections: spec.Connections})
	}
	return out, nil
}

// validDomainKey accepts a domain name, or one whose last label is "*".
func validDomainKey(k string) bool {
	labels := strings.Split(k, ".")
	if len(labels) < 2 {
		return false
	}
	for i, l := range labels {
		if l == "*" && i == len(labels)-1 {
			continue
		}
		if l == "" || len(l) > 63 || strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	return true
}

// groupOf is the domains a limit written as key covers (a pattern stands for itself).
func groupOf(key string) []string {
	for _, g := range domainGroups {
		for _, d := range g {
			if d == key {
				return g
			}
		}
	}
	return []string{key}
}

// domainGate paces one domain or group: its own pacer (a ceiling over any one-second
// window, lowered when that domain's servers throttle) and its connection slots. A
// recipient of the domain takes a slot before a worker takes it, so that the workers
// waiting for the domain's pace are never more than its connections and the others go
// on with other domains.
type domainGate struct {
	limit DomainLimit
	pacer *Pacer
	// conns holds a token for each of the domain's recipients in the workers.
	conns chan struct{}
	// warnf reports the domain's pacing, named.
	warnf func(format string, args ...any)
	// queue holds the domain's recipients read from the store, waiting for a slot.
	queue chan *task
}

// domainQueue is how many recipients of a domain wait for it in memory; when it is
// full the reading of the store waits too.
const domainQueue = 4096

// domainPaces routes recipients to their domain's gate.
type domainPaces struct {
	exact    map[string]*domainGate
	patterns []*domainGate // keys "name.*"
	all      []*domainGate
}

// newDomainPaces builds the gates for limits, with workers workers in the run. A
// domain's connections are at most workers-1 (one worker stays for the others) and
// default to half the workers.
func newDomainPaces(limits []DomainLimit, workers int, warnf func(string, ...any)) *domainPaces {
	if len(limits) == 0 {
		return nil
	}
	d := &domainPaces{exact: map[string]*domainGate{}}
	for _, l := range limits {
		conns := l.Connections
		if conns == 0 {
			conns = max(workers/2, 1)
		}
		conns = min(conns, max(workers-1, 1))
		g := &domainGate{limit: l, pacer: NewPacer(l.Rate.PerSecond), conns: make(chan struct{}, conns),
			queue: make(chan *task, domainQueue)}
		g.pacer.SetWorkers(conns)
		name := l.Key
		if strings.HasSuffix(name, ".*") {
			d.patterns = append(d.patterns, g)
		} else {
			for _, member := range groupOf(name) {
				d.exact[member] = g
			}
			if ms := groupOf(name); len(ms) > 1 {
				name = strings.Join(ms, "+")
			}
		}
		g.warnf = domainWarnf(warnf, name)
		d.all = append(d.all, g)
	}
	return d
}

// share sets each domain's ceiling to its rate divided among n live runs of the
// campaign, as the campaign's rate is.
func (d *domainPaces) share(n int) {
	if d == nil {
		return
	}
	for _, g := range d.all {
		g.pacer.SetCeiling(g.limit.Rate.PerSecond / float64(max(n, 1)))
	}
}

// domainWarnf prefixes a domain's pacing warnings with its name.
func domainWarnf(warnf func(string, ...any), name string) func(string, ...any) {
	if warnf == nil {
		return nil
	}
	return func(format string, args ...any) { warnf(name+": "+format, args...) }
}

// gate is the gate of email's domain (nil: not limited).
func (d *domainPaces) gate(email string) *domainGate {
	if d == nil {
		return nil
	}
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return nil
	}
	dom := strings.ToLower(strings.TrimSuffix(email[at+1:], "."))
	if g, ok := d.exact[dom]; ok {
		return g
	}
	for _, g := range d.patterns {
		prefix := strings.TrimSuffix(g.limit.Key, "*") // "yahoo."
		if strings.HasPrefix(dom, prefix) || strings.Contains(dom, "."+prefix) {
			return g
		}
	}
	return nil
}

// start runs a feeder per gate: it takes the gate's recipients in order as its
// connection slots free up and hands them to the workers through p. The returned func
// closes the queues and waits for the feeders to hand over (or, after a stop, drop)
// what they hold.
func (d *domainPaces) start(stopCtx context.Context, p *Pipeline) (drain func()) {
	if d == nil {
		return func() {}
	}
	var wg sync.WaitGroup
	for _, g := range d.all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range g.queue {
				if stopCtx.Err() != nil {
					continue // claimed, never handed over: the run's end releases it
				}
				select {
				case g.conns <- struct{}{}:
				case <-stopCtx.Done():
					continue
				}
				if !p.submit(stopCtx, t) {
					<-g.conns
				}
			}
		}()
	}
	return func() {
		for _, g := range d.all {
			close(g.queue)
		}
		wg.Wait()
	}
}

// enqueue puts t in its gate's queue, waiting while the queue is full.
func (g *domainGate) enqueue(ctx context.Context, t *task) error {
	select {
	case g.queue <- t:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// ExplainSending says, one line each, how the campaign paces its domains and which
// provider takes over when the first fails (none: no lines), for `validate`.
func (c *Campaign) ExplainSending() []string {
	var lines []string
	for _, d := range c.Domains {
		who := d.Key
		if g := groupOf(d.Key); len(g) > 1 {
			who = strings.Join(g, ", ")
		}
		conns := "half the workers"
		if d.Connections > 0 {
			conns = fmt.Sprintf("%d at once", d.Connections)
		}
		lines = append(lines, fmt.Sprintf("domains: %s at up to %s (%s), beneath the campaign's %s", who, d.Rate.Text, conns, c.Rate.Text))
	}
	if c.FallbackKind != "" {
		lines = append(lines, fmt.Sprintf("fallback: %s takes over when %s fails for the whole run (fatal error or unreachable); a recipient is still sent once", c.FallbackKind, c.ProviderKind))
	}
	return lines
}
