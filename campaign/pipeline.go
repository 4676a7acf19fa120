package campaign

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers"
)

// Recorder is the part of the journal the workers use: a durable claim before a message
// is handed over, an outcome after.
type Recorder interface {
	// Handoff queues the recipient's change from claimed to `sending`; the returned
	// func waits until it is durable (a refusal: the recipient is not this run's).
	Handoff(ctx context.Context, key string) (wait func() error)
	// RecordThen queues an outcome; done is called once, without blocking, with nil
	// when the outcome is durable or with the error that kept it from the store.
	RecordThen(o journal.Outcome, done func(error))
	Err() error
}

// Counters are the live counts of a run, read by progress reporters. An outcome is
// counted once the store has recorded it; one the store could not record counts as
// Unknown (the message may have gone, and the store does not say so).
type Counters struct {
	Sent, Failed, Deferred, Unknown atomic.Int64
	// ViaFallback counts the Sent that went through the fallback provider.
	ViaFallback atomic.Int64
	// DeferredLater counts the Deferred whose next attempt is not at once.
	DeferredLater atomic.Int64
	// AlreadyDone counts recipients another outcome got to first (a claim refused).
	AlreadyDone atomic.Int64
}

// Done is the number of recipients that reached an outcome in this run.
func (c *Counters) Done() int64 {
	return c.Sent.Load() + c.Failed.Load() + c.Deferred.Load() + c.Unknown.Load() + c.AlreadyDone.Load()
}

// StopReason says why a run stopped early; it is the `stopped` of the JSON summary.
type StopReason string

// The reasons a run stops before the end of the list.
const (
	// StopInterrupted: Ctrl-C or SIGTERM.
	StopInterrupted StopReason = "interrupted"
	// StopFatal: the provider said the run cannot go on (credentials, account, quota).
	StopFatal StopReason = "fatal"
	// StopUnreachable: connection failures in a row; the provider is down.
	StopUnreachable StopReason = "unreachable"
	// StopStore: the store could not be opened, read or written.
	StopStore StopReason = "store"
	// StopFailing: the same permanent answer to many recipients in a row, which is the
	// campaign's or the account's fault rather than theirs.
	StopFailing StopReason = "failing"
)

// StopError says why a run stopped before the end of the list.
type StopError struct {
	Reason StopReason
	Err    error
	// DryRun marks a stop of a run that sends nothing (validate, send --dry-run).
	DryRun bool
}

func (e *StopError) Error() string {
	switch e.Reason {
	case StopInterrupted:
		if e.DryRun {
			return "interrupted: nothing was sent"
		}
		return "interrupted: in-flight sends were recorded; run the same command again to resume"
	case StopUnreachable:
		return fmt.Sprintf("stopped: the provider is unreachable (%v); the rest stays pending, run again later to resume", e.Err)
	case StopStore:
		return fmt.Sprintf("stopped: the store cannot be used (%v); a send it did not record counts as unknown, the rest stays pending", e.Err)
	case StopFailing:
		return fmt.Sprintf("stopped: %d recipients in a row got the same permanent answer (%v): a fault of the campaign, the sender or the account, not of the recipients; they and the rest stay pending, fix it and run again", failingAfter, e.Err)
	}
	return fmt.Sprintf("stopped: %v; recipients not yet attempted stay pending", e.Err)
}

func (e *StopError) Unwrap() error { return e.Err }

// RenderErrors is the error of a run in which some recipients could not be rendered:
// a template error is not a delivery outcome, so they stay pending and a later run
// (once the template or the row is fixed) sends them.
type RenderErrors struct {
	// N is the number of recipients that could not be rendered.
	N int
	// First holds the first errors, each naming its list line.
	First []error
}

// maxRenderErrors is how many render errors a RenderErrors keeps.
const maxRenderErrors = 10

func (e *RenderErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d recipient(s) could not be rendered and stay pending (fix the template or the list, then run again)", e.N)
	for _, err := range e.First {
		b.WriteString("; ")
		b.WriteString(err.Error())
	}
	if e.N > len(e.First) {
		b.WriteString("; …")
	}
	return b.String()
}

func (e *RenderErrors) add(err error) {
	e.N++
	if len(e.First) < maxRenderErrors {
		e.First = append(e.First, err)
	}
}

// unreachableAfter is how many connection failures in a row, with no success between
// them, mean that the provider is down rather than one message unlucky.
const unreachableAfter = 5

// Pipeline sends recipients through a provider with a worker pool, a pacer shared by
// all workers, retries with backoff and jitter, and a journal record of every outcome.
// Each piece is small: the Renderer renders, the Pacer paces (and the provider's
// answers steer it), Retry says when to try again, the Recorder records; the Pipeline
// only wires them.
//
// A recipient waits for the pacer before it is claimed, so that a stop leaves it
// pending. A temporary failure does not hold its worker: the recipient waits in the
// pipeline's delayed-retry queue while the workers go on with others, and comes back
// to a worker when its wait is over.
type Pipeline struct {
	Provider providers.Provider
	Renderer *Renderer
	Journal  Recorder
	// Pacer is the campaign's rate (nil: no limit).
	Pacer *Pacer
	// Domains are per-domain paces beneath the campaign's rate (none: one pace).
	Domains []DomainLimit
	Workers int
	Retry   Retry
	Now     func() time.Time
	// Grace bounds how long in-flight sends may go on after a stop (0: 30s).
	Grace time.Duration
	// Warnf reports things a human should know (nil: ignored).
	Warnf    func(format string, args ...any)
	Counters *Counters
	// ObserveCommit receives how long each recipient's hand-off waited to be durable in
	// the journal, successful or not (nil: not measured).
	ObserveCommit func(time.Duration)

	down outage
	// stopped is the running Run's stop context (see Stopped).
	stopped atomic.Pointer[context.Context]
	failing streak
	stop    context.CancelCauseFunc // stops the current Run
	// Fallback opens the provider that takes over when Provider gives a fatal error or
	// is unreachable (nil: none). The Pipeline closes what it opened.
	Fallback func(ctx context.Context) (providers.Provider, error)
	sw       switchover
	// domains routes recipients of limited domains to their gates.
	domains *domainPaces

	// The current Run's queue: work feeds the workers (new recipients and retries
	// that are due); slots bounds the recipients between claim and outcome; inflight
	// counts them.
	work     chan *task
	slots    chan struct{}
	inflight sync.WaitGroup

	renderMu   sync.Mutex
	renderErrs RenderErrors
}

// task is one recipient on its way through the pipeline.
type task struct {
	rc *Recipient
	// msg is the rendered message (nil until claimed and rendered).
	msg *providers.Message
	// first is the recipient's first attempt; attempt counts this run's attempts.
	first   time.Time
	attempt int
	// gate is the recipient's domain gate (nil: not limited); it holds one of the
	// gate's connection slots from hand-over to outcome.
	gate *domainGate
	// last is the outcome of the last temporary failure, recorded when retries end.
	last journal.Outcome
	// conn marks the last failure as one of the connection, not of the recipient.
	conn bool
}

// inFlightPerWorker bounds the recipients a run holds between claim and outcome
// (sending, or waiting to be retried): this many per worker.
const inFlightPerWorker = 4

// errLimit ends a feed that reached --limit.
var errLimit = errors.New("limit reached")

// Run feeds recipients from feed to the workers until the feed ends, limit recipients
// were started (limit < 0: no limit), ctx is cancelled (interrupted) or a fatal error
// stops the run. It returns a *StopError when the run stopped early, else a
// *RenderErrors when recipients could not be rendered (they stay pending).
//
// The Counters are final once the Recorder has answered every outcome (for a
// journal.Writer: once it is closed).
func (p *Pipeline) Run(ctx context.Context, limit int, feed func(fn func(*Recipient) error) error) error {
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Counters == nil {
		p.Counters = &Counters{}
	}
	if p.Pacer == nil {
		p.Pacer = NewPacer(0)
	}
	p.Pacer.SetWorkers(p.Workers)
	p.sw = switchover{active: p.Provider, open: p.Fallback, warnf: p.Warnf, onSwitch: func(fb providers.Provider) {
		p.down.success()
		if caps := fb.Capabilities(); caps.MaxRate > 0 && caps.MaxRate < p.Pacer.Ceiling() {
			p.Pacer.SetCeiling(caps.MaxRate)
		}
	}}
	defer p.sw.close()
	grace := p.Grace
	if grace == 0 {
		grace = 30 * time.Second
	}
	stopCtx, stop := context.WithCancelCause(ctx)
	p.stopped.Store(&stopCtx)
	defer stop(nil)
	p.stop = stop
	// Sends in flight outlive a stop by up to grace, so that their outcome is known.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	unhook := context.AfterFunc(stopCtx, func() {
		t := time.AfterFunc(grace, cancelSends)
		context.AfterFunc(sendCtx, func() { t.Stop() })
	})
	defer unhook()

	p.work = make(chan *task)
	p.slots = make(chan struct{}, max(p.Workers, 1)*inFlightPerWorker)
	if p.domains == nil {
		p.domains = newDomainPaces(p.Domains, p.Workers, p.Warnf)
	}
	drainDomains := p.domains.start(stopCtx, p)
	defer func() { p.domains = nil }() // its queues are closed: a next Run builds its own
	var wg sync.WaitGroup
	for i := 0; i < p.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range p.work {
				p.handle(stopCtx, sendCtx, stop, t)
			}
		}()
	}
	started := 0
	feedErr := feed(func(rc *Recipient) error {
		if rc.GiveUp {
			p.giveUp(sendCtx, stop, rc)
			return nil
		}
		if limit >= 0 && started >= limit {
			return errLimit
		}
		if err := p.Journal.Err(); err != nil {
			stop(&StopError{Reason: StopStore, Err: err})
		}
		// A recipient of a limited domain waits in its domain's queue, so that the
		// others go on while the domain is at its ceiling.
		if g := p.domains.gate(rc.Email); g != nil {
			if err := g.enqueue(stopCtx, &task{rc: rc, gate: g}); err != nil {
				return err
			}
			started++
			return nil
		}
		if !p.submit(stopCtx, &task{rc: rc}) {
			return context.Cause(stopCtx)
		}
		started++
		return nil
	})
	drainDomains()
	// Retries still waiting come back to the workers until each has its outcome.
	p.inflight.Wait()
	close(p.work)
	wg.Wait()

	if cause := context.Cause(stopCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		var se *StopError
		if errors.As(cause, &se) {
			return se
		}
	}
	if ctx.Err() != nil {
		return &StopError{Reason: StopInterrupted, Err: ctx.Err()}
	}
	if feedErr != nil && !errors.Is(feedErr, errLimit) {
		var ste *StoreError
		if errors.As(feedErr, &ste) {
			return &StopError{Reason: StopStore, Err: ste.Err}
		}
		return feedErr
	}
	if err := p.Journal.Err(); err != nil {
		return &StopError{Reason: StopStore, Err: err}
	}
	p.renderMu.Lock()
	defer p.renderMu.Unlock()
	if p.renderErrs.N > 0 {
		re := p.renderErrs
		return &re
	}
	return nil
}

// submit hands a new task to the workers once the run holds fewer than its bound of
// recipients; false when the run stopped first.
func (p *Pipeline) submit(stopCtx context.Context, t *task) bool {
	select {
	case p.slots <- struct{}{}:
	case <-stopCtx.Done():
		return false
	}
	p.inflight.Add(1)
	select {
	case p.work <- t:
		return true
	case <-stopCtx.Done():
		<-p.slots
		p.inflight.Done()
		return false
	}
}

// done ends a task: its recipient has an outcome (or was never claimed).
func (p *Pipeline) done(t *task) {
	if t.gate != nil {
		<-t.gate.conns
	}
	<-p.slots
	p.inflight.Done()
}

// wait waits for the campaign's pace, then for the task's domain's: the domain's is
// the last wait before the message goes, so that its ceiling holds over any second.
func (p *Pipeline) wait(ctx context.Context, t *task) error {
	if err := p.Pacer.Wait(ctx); err != nil {
		return err
	}
	if t.gate != nil {
		return t.gate.pacer.Wait(ctx)
	}
	return nil
}

// Stopped returns a context that ends when the running Run stops (interrupted, or a
// fatal error): a feed that waits for work ends its wait then.
func (p *Pipeline) Stopped() context.Context {
	if c := p.stopped.Load(); c != nil {
		return *c
	}
	return context.Background()
}

func (p *Pipeline) warnf(format string, args ...any) {
	if p.Warnf != nil {
		p.Warnf(format, args...)
	}
}

// giveUp marks a deferred recipient past give_up_after as failed.
func (p *Pipeline) giveUp(ctx context.Context, stop context.CancelCauseFunc, rc *Recipient) {
	// The recipient is claimed by this run; it goes from claimed to failed.
	p.record(rc, journal.Outcome{State: journal.Failed,
		Reason: fmt.Sprintf("gave up: still failing temporarily %s after the first attempt", p.Retry.GiveUpAfter)})
}

// handle takes a task one attempt further: a new recipient is paced, claimed and
// rendered first; a retry is paced again. Every path ends the task (done) or hands it
// to the delayed-retry queue (later).
func (p *Pipeline) handle(stopCtx, sendCtx context.Context, stop context.CancelCauseFunc, t *task) {
	if t.msg == nil {
		if !p.start(stopCtx, sendCtx, stop, t) {
			p.done(t)
			return
		}
	} else if err := p.wait(stopCtx, t); err != nil {
		p.defer_(t, false, 0) // stopped while it waited: due again at once
		p.done(t)
		return
	}
	for {
		retry, again := p.attempt(stopCtx, sendCtx, stop, t)
		if !again {
			return
		}
		// Sent again at once through the fallback, under the same claim.
		if retry && p.wait(stopCtx, t) != nil {
			p.defer_(t, false, 0)
			p.done(t)
			return
		}
	}
}

// attempt sends the task once through the current provider and records its outcome,
// or hands it to the delayed-retry queue. again says the attempt is to be made again
// at once through the fallback (the primary failed for good or is down); it does not
// count as an attempt. Outcomes that are the recipient's (sent, permanent, unknown) are
// recorded before any switch is considered, so that none of them falls back.
func (p *Pipeline) attempt(stopCtx, sendCtx context.Context, stop context.CancelCauseFunc, t *task) (retry, again bool) {
	prov, onFallback := p.sw.current()
	pacer := p.Pacer
	if t.gate != nil {
		pacer = t.gate.pacer
	}
	send := &pacedProvider{Provider: prov, pacer: pacer, warnf: p.Warnf}
	if t.gate != nil {
		send.warnf = t.gate.warnf
	}
	t.attempt++
	receipt, err := send.Send(sendCtx, t.msg)
	if err == nil {
		p.down.success()
		p.failing.success()
		if onFallback {
			p.Counters.ViaFallback.Add(1)
		}
		p.record(t.rc, journal.Outcome{State: journal.Sent, ProviderID: receipt.MessageID, Provider: prov.Name()})
		p.done(t)
		return false, false
	}
	pe := providers.AsError(err)
	o := journal.Outcome{Reason: err.Error(), Provider: prov.Name()}
	if pe != nil {
		o.Code, o.Enhanced = pe.Code, pe.Enhanced
	}
	switch providers.KindOf(err) {
	case providers.Permanent:
		p.permanent(stop, t.rc, o, err)
		p.done(t)
		return false, false
	case providers.Unknown:
		o.State = journal.Unknown
		p.record(t.rc, o)
		p.done(t)
		return false, false
	case providers.Fatal:
		if stopCtx.Err() == nil && p.sw.fallOver(sendCtx, onFallback, err) {
			t.attempt--
			return true, true
		}
		o.State = journal.Pending // never handed over: release the claim
		p.record(t.rc, o)
		stop(&StopError{Reason: StopFatal, Err: err})
		p.done(t)
		return false, false
	}
	// Temporary.
	t.last, t.conn = o, pe != nil && pe.Connection
	if t.conn && !onFallback && stopCtx.Err() == nil {
		if _, switched := p.sw.current(); switched {
			t.attempt-- // a late answer of the primary: the fallback is in use now
			return true, true
		}
	}
	if p.down.failure(t.conn) {
		if !onFallback && stopCtx.Err() == nil && p.sw.fallOver(sendCtx, false, err) {
			t.attempt--
			return true, true
		}
		stop(&StopError{Reason: StopUnreachable, Err: err})
	}
	wait := p.Retry.wait(t.attempt, err)
	if t.attempt >= p.Retry.Attempts || stopCtx.Err() != nil || sendCtx.Err() != nil {
		p.defer_(t, t.attempt >= p.Retry.Attempts, wait)
		p.done(t)
		return false, false
	}
	p.later(stopCtx, t, wait)
	return false, false
}

// start paces, claims and renders a new recipient; false when the task ended here.
func (p *Pipeline) start(stopCtx, sendCtx context.Context, stop context.CancelCauseFunc, t *task) bool {
	rc := t.rc
	if err := p.wait(stopCtx, t); err != nil {
		return false // stopped before it was claimed: it stays pending
	}
	// The message is rendered while the claim commits; it goes nowhere before the claim
	// is durable.
	handoff := time.Now()
	claimed := p.Journal.Handoff(sendCtx, rc.Key)
	// Rendered here without a goroutine of its own: the first pass of the run rendered
	// these rows already, so no render loops without end; a long one still stops at the
	// output bound, and at its next write once the run stops.
	msg, renderErr := p.Renderer.message(stopCtx, rc)
	err := claimed()
	if p.ObserveCommit != nil {
		p.ObserveCommit(time.Since(handoff))
	}
	if err != nil {
		if errors.Is(err, journal.ErrNotClaimable) {
			p.Counters.AlreadyDone.Add(1)
			return false
		}
		stop(&StopError{Reason: StopStore, Err: err})
		return false
	}
	if renderErr != nil && stopCtx.Err() != nil {
		p.record(rc, journal.Outcome{State: journal.Pending}) // stopped while rendering
		return false
	}
	if renderErr != nil {
		// Not a delivery outcome: hold the claim for the rest of the run (claimed
		// again it would fail again), so that it is pending for a later run.
		p.record(rc, journal.Outcome{State: journal.Claimed})
		p.warnf("%v: left pending", renderErr)
		p.renderMu.Lock()
		p.renderErrs.add(renderErr)
		p.renderMu.Unlock()
		return false
	}
	t.msg = msg
	t.first = p.Now()
	if rc.Entry != nil && !rc.Entry.FirstAttempt.IsZero() {
		t.first = rc.Entry.FirstAttempt
	}
	return true
}

// later is the delayed-retry queue: the task comes back to a worker after wait, while
// the workers go on with other recipients. A stop meanwhile defers it, due at once.
func (p *Pipeline) later(stopCtx context.Context, t *task, wait time.Duration) {
	go func() {
		if !sleep(stopCtx, wait) {
			p.defer_(t, false, 0)
			p.done(t)
			return
		}
		select {
		case p.work <- t:
		case <-stopCtx.Done():
			p.defer_(t, false, 0)
			p.done(t)
		}
	}()
}

// outage counts connection failures in a row, with no success between them: at
// unreachableAfter the provider is down rather than one message unlucky.
type outage struct{ fails atomic.Int64 }

func (o *outage) success() { o.fails.Store(0) }

// failure notes a temporary failure (conn: of the connection) and reports whether the
// provider is to be taken as down.
func (o *outage) failure(conn bool) bool {
	if !conn {
		o.fails.Store(0)
		return false
	}
	return o.fails.Add(1) >= unreachableAfter
}

// wait is how long to wait before attempt+1 after err: the backoff, or the provider's
// retry-after when it asked for longer.
func (r Retry) wait(attempt int, err error) time.Duration {
	d := r.backoff(attempt)
	if pe := providers.AsError(err); pe != nil && pe.RetryAfter > d {
		d = pe.RetryAfter
	}
	return d
}

// defer_ leaves a temporarily failed recipient for a later run, or fails it for good once
// it has been tried for longer than give_up_after. A recipient whose retries ran out
// waits the longer of max_backoff and wait before a later run tries it again, unless
// the last failure was the connection's: the provider was down, not the recipient's
// server, and the first run once it is back sends it.
func (p *Pipeline) defer_(t *task, exhausted bool, wait time.Duration) {
	o := t.last
	now := p.Now()
	if now.Sub(t.first) >= p.Retry.GiveUpAfter {
		o.State = journal.Failed
		o.Reason = fmt.Sprintf("gave up after %s: %s", p.Retry.GiveUpAfter, o.Reason)
		p.record(t.rc, o)
		return
	}
	o.State = journal.Deferred
	o.NextAttempt = now
	if exhausted && !t.conn {
		o.NextAttempt = now.Add(max(p.Retry.MaxBackoff, wait))
	}
	p.record(t.rc, o)
}

// permanent records a permanent answer, through the breaker for campaign-wide
// rejections.
func (p *Pipeline) permanent(stop context.CancelCauseFunc, rc *Recipient, o journal.Outcome, err error) {
	p.failing.permanent(rc, err, func(v verdict, reopen []*Recipient) {
		switch v {
		case recordFailed:
			o.State = journal.Failed
			pe := providers.AsError(err)
			o.Suppress = pe != nil && pe.Bounce
			p.record(rc, o)
		case releaseAndTrip:
			for _, back := range reopen {
				p.record(back, journal.Outcome{State: journal.Pending, Reopen: true})
			}
			p.record(rc, journal.Outcome{State: journal.Pending})
			stop(&StopError{Reason: StopFailing, Err: err})
		case release:
			p.record(rc, journal.Outcome{State: journal.Pending})
		}
	})
}

// record queues an outcome; the counters follow what the store recorded. An outcome
// the store could not record counts as unknown (the journal keeps the claim, which the
// next run turns `unknown`) and stops the run.
func (p *Pipeline) record(rc *Recipient, o journal.Outcome) {
	o.Key, o.Email = rc.Key, rc.Email
	p.Journal.RecordThen(o, func(err error) {
		if err != nil {
			if !o.Reopen {
				p.Counters.Unknown.Add(1)
			}
			if p.stop != nil {
				p.stop(&StopError{Reason: StopStore, Err: err})
			}
			return
		}
		switch {
		case o.Reopen:
			p.Counters.Failed.Add(-1)
		case o.State == journal.Sent:
			p.Counters.Sent.Add(1)
		case o.State == journal.Failed:
			p.Counters.Failed.Add(1)
		case o.State == journal.Deferred:
			p.Counters.Deferred.Add(1)
			if o.NextAttempt.After(p.Now()) {
				p.Counters.DeferredLater.Add(1)
			}
		case o.State == journal.Unknown:
			p.Counters.Unknown.Add(1)
		}
	})
}

// backoff is the wait before attempt+1: exponential from Backoff, capped at
// MaxBackoff, with full jitter in its upper half.
func (r Retry) backoff(attempt int) time.Duration {
	d := r.Backoff
	for i := 1; i < attempt && d < r.MaxBackoff; i++ {
		d *= 2
	}
	if d > r.MaxBackoff {
		d = r.MaxBackoff
	}
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
