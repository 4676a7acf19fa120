package campaign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/time/rate"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers"
)

// Summary is the outcome of a run, printed by `send --json` (PRODUCT.md). The counts add
// up to Total.
type Summary struct {
	Campaign string `json:"campaign"`
	Total    int    `json:"total"`
	Sent     int    `json:"sent"`
	Failed   int    `json:"failed"`
	Deferred int    `json:"deferred"`
	Unknown  int    `json:"unknown"`
	// Expired counts recipients not sent before not_after (never sent).
	Expired int `json:"expired"`
	Pending int `json:"pending"`
	// Waiting counts deferred recipients, not deferred by this run, whose retry time
	// has not come: a run now would not send them. FirstDue is when the first of the
	// waiting ones (or of this run's deferred ones) is due, RFC 3339 ("" when none).
	Waiting  int     `json:"waiting"`
	FirstDue string  `json:"first_due,omitempty"`
	Skipped  Skipped `json:"skipped"`
	// FallbackSent counts the sent recipients that went through the fallback provider
	// (`fallback:`); the others of Sent went through the primary.
	FallbackSent int     `json:"fallback_sent,omitempty"`
	DryRun       bool    `json:"dry_run"`
	DurationMS   int64   `json:"duration_ms"`
	RatePerS     float64 `json:"rate_per_s"`
	// Stopped says why the run ended early: "interrupted", "fatal", "unreachable",
	// "store" or "failing".
	Stopped StopReason `json:"stopped,omitempty"`
	// Error is the message of the error that stopped the run, or that says which
	// recipients could not be rendered (they stay pending).
	Error string `json:"error,omitempty"`
	// Policy says why the sending policy held the rest back (a closed window, the
	// warm-up cap, not_after), NextAt when the run can go on (RFC 3339), Pause the
	// figures of a pause_if stop.
	Policy string        `json:"policy,omitempty"`
	NextAt string        `json:"next_at,omitempty"`
	Pause  *PauseFigures `json:"pause,omitempty"`
}

// JSON renders the summary as one line of JSON.
func (s *Summary) JSON() []byte {
	b, _ := json.Marshal(s)
	return b
}

// Env is what a run needs from the world around it.
type Env struct {
	Registry providers.Registry
	Getenv   func(string) string
	Now      func() time.Time
	// Warnf reports warnings for the human watching.
	Warnf func(format string, args ...any)
}

func (e Env) getenv(k string) string {
	if e.Getenv != nil {
		return e.Getenv(k)
	}
	return os.Getenv(k)
}

func (e Env) warnf(format string, args ...any) {
	if e.Warnf != nil {
		e.Warnf(format, args...)
	}
}

// Plan is what a run is about to do, for the confirmation prompt and the progress bar.
type Plan struct {
	Campaign string
	Total    int
	ToSend   int
	Skipped  Skipped
	Provider string
	Rate     float64
	Workers  int
	// ETA is the expected duration at the rate.
	ETA time.Duration
	// Health reads the campaign's outcomes, bounces and complaints from the store, over
	// every run of it on any host: since the last `--resume-paused`, or since its
	// start. The same figures pause_if compares with its thresholds.
	Health func(ctx context.Context) (journal.OutcomeCounts, error)
}

// SendOptions are the flags of `herald send`.
type SendOptions struct {
	DryRun bool
	// Limit is the most recipients started in this run (< 0: no limit).
	Limit int
	// Rate and Workers override the campaign file when set.
	Rate    *Rate
	Workers int
	// Store is the journal file.
	Store         string
	ResendUnknown bool
	// ResumePaused lifts a pause_if pause and restarts its count.
	ResumePaused bool
	// Confirm is asked once with the plan before anything is sent (nil: no question).
	Confirm func(Plan) bool
	// Progress starts reporting the run's counters; the returned func stops it.
	Progress func(p Plan, c *Counters) (stop func())
	// Warn receives list rows that are skipped as invalid or duplicate.
	Warn func(Warning)
	// Grace bounds how long in-flight sends may go on after a stop (0: 30s).
	Grace time.Duration
	// ObserveCommit receives how long each recipient's hand-off waited to be durable in
	// the journal (nil: not measured).
	ObserveCommit func(time.Duration)
}

// ErrDeclined is returned when the user answers no to the confirmation.
var ErrDeclined = errors.New("not confirmed: nothing was sent")

// StorePath picks the journal: flag, then HERALD_STORE, then the file's store:, then
// herald.db beside the campaign file.
func StorePath(c *Campaign, flag string, getenv func(string) string) string {
	switch {
	case flag != "":
		return flag
	case getenv("HERALD_STORE") != "":
		return getenv("HERALD_STORE")
	case c.StoreFile != "":
		return c.StoreFile
	}
	return filepath.Join(c.Dir, "herald.db")
}

// Secret returns the unsubscribe signing secret: HERALD_SECRET, else the store's.
func Secret(ctx context.Context, store journal.Store, getenv func(string) string) ([]byte, error) {
	if s := getenv("HERALD_SECRET"); s != "" {
		if len(s) < 16 {
			return nil, errors.New("HERALD_SECRET must be at least 16 characters")
		}
		return []byte(s), nil
	}
	if store == nil {
		// Nothing is journalled (preview, dry run without a store): links are examples.
		return []byte("herald-preview-secret-not-for-sending"), nil
	}
	return store.Secret(ctx)
}

// ProviderSpec builds the provider spec of a campaign.
func ProviderSpec(c *Campaign, env Env) providers.Spec {
	return providers.Spec{
		Kind:     c.ProviderKind,
		Decode:   c.DecodeProvider,
		BaseDir:  c.Dir,
		Getenv:   env.getenv,
		Warnf:    env.warnf,
		Campaign: c.Name,
		Headers:  c.Headers,
	}
}

// CheckProvider validates the provider block without connecting; with secrets it also
// checks that the secret variables are set.
func CheckProvider(c *Campaign, env Env, secrets bool) error {
	if _, err := checkProvider(c, env, secrets); err != nil {
		return err
	}
	_, err := checkFallback(c, env, secrets)
	return err
}

func checkProvider(c *Campaign, env Env, secrets bool) (providers.Registration, error) {
	reg, err := env.Registry.Lookup(c.ProviderKind)
	if err != nil {
		return reg, configErr("%s: provider: %v", c.Path, err)
	}
	if err := reg.Check(ProviderSpec(c, env), secrets); err != nil {
		return reg, &ConfigError{Err: err}
	}
	return reg, nil
}

// NewLimiter returns the shared limiter for a ceiling of perSecond messages over any
// one-second window. A token bucket full at the start of a closed one-second window lets
// through its burst plus the whole refills in that second, burst + floor(refill), so the
// refill is the ceiling less the burst, plus the one message floor leaves out, less a
// margin of 0.5% for the scheduling jitter between a token and the provider's call. At
// high rates small bursts (1% of the rate) are allowed. A Pacer uses it alone below
// 1/s and above windowMax; in between, a sliding window is the ceiling (Pacer.apply).
func NewLimiter(perSecond float64) *rate.Limiter {
	burst := max(int(perSecond/100), 1)
	refill := perSecond - float64(burst) + 1 - perSecond/200
	return rate.NewLimiter(rate.Limit(refill), burst)
}

// Send runs (or, with DryRun, rehearses) a campaign. The returned summary is complete
// also when the run stopped early; the error then says why (*StopError, *ConfigError,
// ErrDeclined, a lock error).
func Send(ctx context.Context, c *Campaign, o SendOptions, env Env) (sum *Summary, err error) {
	sum = &Summary{Campaign: c.Name, DryRun: o.DryRun}
	start := time.Now()
	defer func() {
		err = interrupted(ctx, sum, err)
		sum.DurationMS = time.Since(start).Milliseconds()
		var se *StopError
		var re *RenderErrors
		switch {
		case errors.As(err, &se):
			sum.Stopped, sum.Error = se.Reason, se.Error()
		case errors.As(err, &re):
			sum.Error = re.Error()
		}
	}()
	if o.Limit < -1 {
		return sum, configErr("--limit must be 0 or more")
	}
	reg, err := checkProvider(c, env, !o.DryRun)
	if err != nil {
		return sum, err
	}
	if _, err := checkFallback(c, env, !o.DryRun); err != nil {
		return sum, err
	}
	var store journal.Store
	workers := c.Workers
	if o.Workers > 0 {
		workers = o.Workers
	}
	// A dry run reads an existing store (to count what is already done) and writes
	// nothing.
	if !o.DryRun || storeExists(o.Store) {
		if store, err = OpenStore(ctx, o.Store, journal.Options{Now: env.Now, Conns: workers + 4}); err != nil {
			if isConfigErr(err) {
				return sum, err
			}
			return sum, storeErr(ctx, err)
		}
		defer store.Close()
	}
	secret, err := Secret(ctx, store, env.getenv)
	if err != nil {
		if store != nil && env.getenv("HERALD_SECRET") == "" {
			err = storeErr(ctx, err)
		}
		return sum, err
	}
	src := &Source{Campaign: c, Now: env.Now, Warn: o.Warn, ResendUnknown: o.ResendUnknown}
	if store != nil {
		src.Journal = store
	}
	cols, err := src.Columns()
	var noList *journal.ListInfo
	if err != nil {
		if noList = joinWithoutList(ctx, c, store, o.DryRun); noList == nil {
			return sum, err
		}
		env.warnf("the list %s is not on this host: joining %q as loaded in the store", c.ListFile, c.Name)
		cols = noList.Columns
	}
	renderer, err := NewRenderer(ctx, c, cols, secret, env.Now)
	if err != nil {
		return sum, err
	}
	if o.DryRun {
		return sum, dryRun(ctx, src, renderer, sum)
	}
	r := &run{c: c, o: o, env: env, reg: reg, store: store, src: src, renderer: renderer, sum: sum, start: start, noList: noList}
	return sum, r.send(ctx)
}

// run is one real send of a campaign, from the counting pass to the summary.
type run struct {
	c        *Campaign
	o        SendOptions
	env      Env
	reg      providers.Registration
	store    journal.Store
	src      *Source
	renderer *Renderer
	sum      *Summary
	start    time.Time
	// From the store's counts (count): due to send, unknown, waiting, suppressed, expired.
	due, unknown, waiting, suppressed, expired int
	// noList is the store's record of the campaign's list when this host has no list
	// file and joins the campaign as another host loaded it (nil: the list is here).
	noList *journal.ListInfo
	// notDue counts the deferred recipients not yet due (count), firstDue the first
	// of them; deferredLater is how many of them this run deferred.
	notDue, deferredLater int
	firstDue              time.Time
	// fromStart: the primary could not be opened, the fallback sends everything.
	fromStart bool
	// gate is the sending policy's say on what may go now.
	gate *gate
}

func (r *run) now() time.Time {
	if r.env.Now != nil {
		return r.env.Now()
	}
	return time.Now()
}

func (r *run) send(ctx context.Context) (err error) {
	c, o, env, sum := r.c, r.o, r.env, r.sum
	// Dead runs are settled first, so that the count sees the store as this run will
	// send it: their claims are `pending` again, their hand-offs `unknown` (counted as
	// to send with --resend-unknown, which turns them `pending` once the user said yes).
	settled, err := r.store.Settle(ctx, c.Name)
	if err != nil {
		return storeErr(ctx, err)
	}
	host, _ := os.Hostname()
	jr, err := r.store.BeginRun(ctx, journal.RunSpec{Campaign: c.Name, Host: host, PID: os.Getpid()})
	var le *journal.LockedError
	if errors.As(err, &le) {
		return err
	}
	if err != nil {
		return storeErr(ctx, err)
	}
	if settled.Unknown > 0 {
		env.warnf("%d recipient(s) were being sent when an earlier run died: now `unknown` (see `herald status --failed`; `send --resend-unknown` sends them again)", settled.Unknown)
	}
	defer func() {
		err = interrupted(ctx, sum, err)
		if err != nil {
			// A run stopped before its counts were taken (the store failed while the
			// list was loaded, say) still adds up: what nothing else counts is pending.
			sum.Pending = sum.rest()
		}
		sum.DurationMS = time.Since(r.start).Milliseconds()
		if eerr := jr.End(context.WithoutCancel(ctx), sum.JSON()); eerr != nil && err == nil {
			err = storeErr(ctx, eerr)
		}
	}()

	// The first pass counts (for the question, the progress bar and the summary) and
	// renders the recipients about to be sent, so that a template that fails for a row
	// stops the run before anything is sent. It writes nothing: a "no" leaves the store
	// as it was.
	r.src.Warn = nil
	var plan ScanResult
	if r.noList != nil {
		// No list on this host: the campaign as loaded in the store by another.
		if err := r.count(ctx); err != nil {
			return storeErr(ctx, err)
		}
		li := r.noList
		plan = ScanResult{Total: li.Total, ToSend: r.due, Skipped: Skipped{Invalid: li.Invalid, Duplicate: li.Duplicate,
			Suppressed: li.Suppressed + r.suppressed}}
		if o.ResendUnknown {
			plan.ToSend += r.unknown
		}
		plan.Skipped.AlreadyDone = max(li.Total-li.Invalid-li.Duplicate-plan.Skipped.Suppressed-plan.ToSend, 0)
	} else {
		plan, err = r.src.Scan(ctx, r.rehearse(ctx, o.Limit))
	}
	sum.Total, sum.Skipped = plan.Total, plan.Skipped
	if err != nil {
		var ste *StoreError
		if errors.As(err, &ste) {
			return storeErr(ctx, err)
		}
		return err
	}
	if held, err := r.policy(ctx, jr, plan.NotDue); held || err != nil {
		return err
	}
	toSend := plan.ToSend
	if o.Limit >= 0 && o.Limit < toSend {
		toSend = o.Limit
	}
	toSend = r.gate.fit(toSend)
	if toSend == 0 && plan.GaveUp == 0 {
		r.splitExpired(ctx)
		sum.Waiting = plan.NotDue
		if plan.NotDue > 0 {
			if _, first, err := waitingRows(ctx, r.store, c.Name, r.now(), 0); err == nil {
				sum.FirstDue = formatDue(first, c.Location)
			}
		}
		sum.Pending = sum.rest()
		return nil
	}
	p := Plan{Campaign: c.Name, Total: plan.Total, ToSend: toSend, Skipped: plan.Skipped,
		Provider: c.ProviderKind, Rate: c.Rate.PerSecond, Workers: c.Workers}
	since := r.gate.since
	p.Health = func(ctx context.Context) (journal.OutcomeCounts, error) {
		return r.store.Outcomes(ctx, c.Name, since)
	}
	if o.Workers > 0 {
		p.Workers = o.Workers
	}
	if o.Rate != nil {
		p.Rate = o.Rate.PerSecond
	}
	// Asked before the provider is opened: a "no" connects to nothing.
	if o.Confirm != nil && !o.Confirm(p.withETA()) {
		sum.Pending = sum.rest()
		return ErrDeclined
	}
	if o.ResendUnknown {
		if _, err := r.store.ResendUnknown(ctx, c.Name); err != nil {
			return storeErr(ctx, err)
		}
		r.src.ResendUnknown = false // they are pending now
	}
	// The list is loaded into the store: rows not yet there become `pending`; the
	// workers then claim from the store, as the runs on other hosts do.
	var info journal.ListInfo
	if r.noList != nil {
		info = *r.noList
	} else {
		info, err = r.src.Load(ctx, jr, TemplateHash(c))
	}
	if err != nil {
		var me *journal.MismatchError
		if errors.As(err, &me) {
			return &ConfigError{Err: err}
		}
		if isConfigErr(err) {
			return err
		}
		return storeErr(ctx, err)
	}
	prov, fallback, err := r.open(ctx, &p)
	if err != nil {
		return err
	}
	defer prov.Close()

	// The campaign's rate is a ceiling for all its live runs together: each takes an
	// equal share, rebalanced as runs join and end. A run that joins others waits two
	// rebalancing rounds first, so that their shares have shrunk before it sends.
	pacer := NewPacer(p.Rate)
	domains := newDomainPaces(c.Domains, p.Workers, env.Warnf)
	share := &rateShare{run: jr, rate: p.Rate, pacer: pacer, domains: domains}
	if n := share.update(ctx); n > 1 {
		if !sleep(ctx, 2*shareEvery) {
			return ctx.Err()
		}
	}
	stopShare := share.start(ctx)
	defer stopShare()

	pl := &Pipeline{
		Provider: prov, Renderer: r.renderer, Journal: jr,
		Pacer: pacer, Domains: c.Domains, Fallback: fallback, Workers: p.Workers, Retry: c.Retry,
		Now: env.Now, Grace: o.Grace, Warnf: env.Warnf, Counters: &Counters{},
		ObserveCommit: o.ObserveCommit, domains: domains,
	}
	r.gate.counters = pl.Counters
	if o.Progress != nil {
		stopProgress := o.Progress(p.withETA(), pl.Counters)
		defer stopProgress()
	}
	sendStart := time.Now()
	runErr := pl.Run(ctx, o.Limit, r.feed(ctx, jr, o.Limit, pl.Stopped))
	// Flushing commits what is queued; the counters are final after it.
	if err := jr.Flush(context.WithoutCancel(ctx)); err != nil {
		var se *StopError
		if !errors.As(runErr, &se) {
			runErr = storeErr(ctx, err)
		}
	}
	sum.Sent = int(pl.Counters.Sent.Load())
	sum.Failed = int(pl.Counters.Failed.Load())
	sum.Deferred = int(pl.Counters.Deferred.Load())
	sum.Unknown = int(pl.Counters.Unknown.Load())
	r.deferredLater = int(pl.Counters.DeferredLater.Load())
	sum.FallbackSent = int(pl.Counters.ViaFallback.Load())
	if r.fromStart {
		sum.FallbackSent = sum.Sent
	}
	runErr = r.afterPolicy(ctx, jr, runErr)
	if el := time.Since(sendStart).Seconds(); el > 0 {
		sum.RatePerS = math.Round(float64(sum.Sent)/el*10) / 10
	}
	if err := r.count(context.WithoutCancel(ctx)); err == nil {
		// This run's deferred rows are among the store's waiting ones; what the other
		// counts leave was done before this run, or by other runs.
		sum.Skipped.Suppressed = info.Suppressed + r.suppressed
		sum.Waiting = max(r.notDue-r.deferredLater, 0)
		sum.FirstDue = formatDue(r.firstDue, c.Location)
		sum.Pending = max(r.waiting-sum.Deferred-sum.Waiting, 0)
		sum.Expired = r.expired
		sum.Skipped.AlreadyDone = 0
		sum.Skipped.AlreadyDone = max(sum.rest()-sum.Pending, 0)
	} else {
		sum.Skipped.AlreadyDone += int(pl.Counters.AlreadyDone.Load())
		sum.Pending = sum.rest()
	}
	return runErr
}

// joinWithoutList returns the store's record of campaign c's list when this host has no
// list file but a shared store holds the campaign, loaded with the same templates by
// another host; nil otherwise (the list's own error then stands).
func joinWithoutList(ctx context.Context, c *Campaign, store journal.Store, dryRun bool) *journal.ListInfo {
	if dryRun || store == nil || store.Kind() != "postgres" {
		return nil
	}
	if _, err := os.Stat(c.ListFile); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	info, ok, err := store.Campaign(ctx, c.Name)
	if err != nil || !ok || len(info.Columns) == 0 || info.TemplateHash != TemplateHash(c) {
		return nil
	}
	return &info
}

// claimBatch is how many recipients a run claims at a time: enough that the claim's
// round trip is paid once per many messages, few enough that a stop leaves little
// claimed (claims of a stopped run go back to pending at once, a dead run's within
// seconds).
const claimBatch = 64

// othersEvery is how often a run that ran out of work looks again while other runs
// hold claims.
const othersEvery = 300 * time.Millisecond

// feed claims batches of due recipients from the store and hands them to the pipeline,
// until none is left, the limit is reached or the run stops.
func (r *run) feed(ctx context.Context, jr journal.Run, limit int, stopped func() context.Context) func(fn func(*Recipient) error) error {
	return func(fn func(*Recipient) error) (err error) {
		claimed := 0
		for {
			n := claimBatch
			if limit >= 0 {
				n = min(n, limit-claimed)
				if n <= 0 {
					return nil
				}
			}
			if n, err = r.gate.claimable(ctx, n); n == 0 || err != nil {
				return err // the policy holds the rest back
			}
			items, err := jr.Claim(ctx, n)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return storeErr(ctx, err)
			}
			if len(items) == 0 {
				// Nothing to claim. Other runs' claims may still come back (a run
				// that dies leaves them): wait for them while any is out.
				others, err := jr.Others(ctx)
				if err != nil {
					return storeErr(ctx, err)
				}
				if others == 0 {
					return nil
				}
				if _, err := r.store.Settle(ctx, r.c.Name); err != nil {
					return storeErr(ctx, err)
				}
				if !sleep(stopped(), othersEvery) {
					return context.Cause(stopped())
				}
				continue
			}
			now := r.env.Now
			if now == nil {
				now = time.Now
			}
			t := now()
			items = r.gate.admitItems(ctx, n, items)
			for _, it := range items {
				if err := r.gate.check(ctx); err != nil {
					return err
				}
				rc := &Recipient{Line: it.Line, Email: it.Email, Key: it.Key, Fields: it.Fields}
				if it.Retry {
					rc.Entry = &journal.Entry{Key: it.Key, State: journal.Deferred, Attempts: it.Attempts, FirstAttempt: it.FirstAttempt}
					rc.GiveUp = !it.FirstAttempt.IsZero() && t.Sub(it.FirstAttempt) > r.c.Retry.GiveUpAfter
					if rc.GiveUp {
						r.gate.giveUps++
					}
				}
				if !rc.GiveUp {
					claimed++
				}
				if err := fn(rc); err != nil {
					return err
				}
			}
		}
	}
}

// count reads the store's counts for the plan and the summary: recipients due to send,
// `unknown`, waiting (pending or deferred, sendable later) and passed by as suppressed.
func (r *run) count(ctx context.Context) error {
	counts, err := r.store.Counts(ctx, r.c.Name)
	if err != nil {
		return err
	}
	supp, err := r.store.PendingSuppressed(ctx, r.c.Name)
	if err != nil {
		return err
	}
	r.suppressed = supp
	r.unknown = counts[journal.Unknown]
	r.expired = counts[journal.Expired]
	r.waiting = counts[journal.Pending] + counts[journal.Deferred] + counts[journal.Claimed] - supp
	r.due = max(counts[journal.Pending]+counts[journal.Deferred]-supp, 0)
	if counts[journal.Deferred] > 0 {
		if r.notDue, r.firstDue, err = waitingRows(ctx, r.store, r.c.Name, r.now(), counts[journal.Deferred]); err != nil {
			return err
		}
	}
	return nil
}

// shareEvery is how often a run recomputes its share of the campaign's rate.
const shareEvery = 200 * time.Millisecond

// rateShare keeps a run's pacer's ceiling at the campaign's rate divided by its live
// runs.
type rateShare struct {
	run   journal.Run
	rate  float64
	pacer *Pacer
	// domains get their share of their own rates too.
	domains *domainPaces
	live    int
}

// update sets the limiter for the current number of live runs and returns it. A count
// that fails keeps the share it had: taking the whole rate then would break the
// ceiling for as long as the store does not answer.
func (s *rateShare) update(ctx context.Context) int {
	n, err := s.run.Live(ctx)
	if err != nil && s.live > 0 {
		return s.live
	}
	if err != nil || n < 1 {
		n = 1
	}
	if n != s.live {
		s.live = n
		s.pacer.SetCeiling(s.rate / float64(n))
		s.domains.share(n)
	}
	return n
}

// start rebalances every shareEvery until the returned func is called.
func (s *rateShare) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(shareEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.update(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// rehearse is the first pass's callback: it renders the first limit recipients to send
// (limit < 0: all) and returns a *ConfigError for the first that cannot be rendered,
// which ends the pass; nothing has been sent then.
func (r *run) rehearse(ctx context.Context, limit int) func(*Recipient) error {
	n := 0
	return func(rc *Recipient) error {
		if rc.GiveUp || (limit >= 0 && n >= limit) {
			return nil
		}
		n++
		var ae *AttachmentError // that recipient stays pending, the others go
		if _, err := r.renderer.Message(ctx, rc); err != nil && !errors.As(err, &ae) {
			if ctx.Err() != nil {
				return err // interrupted
			}
			return &ConfigError{Err: fmt.Errorf("%w; nothing was sent", err)}
		}
		return nil
	}
}

// storeErr makes err, a failure of the store, the *StopError that stops a run; a
// failure because ctx was cancelled is left for interrupted to report.
func storeErr(ctx context.Context, err error) error {
	var se *StopError
	if errors.As(err, &se) || ctx.Err() != nil {
		return err
	}
	var ste *StoreError
	if errors.As(err, &ste) {
		err = ste.Err
	}
	return &StopError{Reason: StopStore, Err: err}
}

// open opens the provider and fits the plan to what it allows: the lower of the
// campaign's and the provider's workers and rate. With a `fallback:` it also returns
// the fallback's opener for the pipeline; a primary that cannot be opened (a provider
// error: refused, unreachable) gives way to the fallback from the start.
func (r *run) open(ctx context.Context, p *Plan) (prov providers.Provider, fallback func(context.Context) (providers.Provider, error), err error) {
	if r.c.FallbackKind != "" {
		freg, err := checkFallback(r.c, r.env, false)
		if err != nil {
			return nil, nil, err
		}
		fallback = func(ctx context.Context) (providers.Provider, error) {
			spec := FallbackSpec(r.c, r.env)
			spec.Workers = p.Workers
			return freg.Open(ctx, spec)
		}
	}
	spec := ProviderSpec(r.c, r.env)
	spec.Workers = p.Workers
	prov, err = r.reg.Open(ctx, spec)
	var pe *providers.Error
	if err != nil && errors.As(err, &pe) && fallback != nil {
		r.env.warnf("%s cannot be opened (%v): the run goes through the fallback", r.c.ProviderKind, err)
		prov, err = fallback(ctx)
		fallback = nil
		r.fromStart = true
	}
	if err != nil {
		if errors.As(err, &pe) {
			return nil, nil, &StopError{Reason: StopFatal, Err: err}
		}
		return nil, nil, &ConfigError{Err: err}
	}
	caps := prov.Capabilities()
	if caps.MaxConcurrency > 0 && caps.MaxConcurrency < p.Workers {
		p.Workers = caps.MaxConcurrency
	}
	if caps.MaxRate > 0 && caps.MaxRate < p.Rate {
		r.env.warnf("%s allows %.4g messages/s: rate capped from %.4g/s", prov.Name(), caps.MaxRate, p.Rate)
		p.Rate = caps.MaxRate
	}
	if q, ok := prov.(interface{ Quota() (float64, bool) }); ok {
		if remaining, known := q.Quota(); known && float64(p.ToSend) > remaining {
			r.env.warnf("%s: %d message(s) to send but only %.0f left in the 24-hour quota: the rest will fail as quota exhausted and stay pending", prov.Name(), p.ToSend, remaining)
		}
	}
	p.Provider = prov.Name()
	return prov, fallback, nil
}

// withETA returns p with its ETA at its rate.
func (p Plan) withETA() Plan {
	p.ETA = time.Duration(float64(p.ToSend) / p.Rate * float64(time.Second))
	return p
}

// rest is what the other counts leave of Total: the rows not attempted in this run.
func (s *Summary) rest() int {
	return s.Total - s.Sent - s.Failed - s.Deferred - s.Unknown - s.Expired - s.Waiting -
		s.Skipped.Invalid - s.Skipped.Duplicate - s.Skipped.Suppressed - s.Skipped.AlreadyDone
}

// interrupted turns an error of a run stopped by ctx before its pipeline started (Ctrl-C
// while the journal opens or the list is counted) into the *StopError a stop during the
// pipeline gives, and makes the summary say so, with every row not otherwise counted
// pending. When the count of the list itself was cut short, Total is the rows read.
func interrupted(ctx context.Context, sum *Summary, err error) error {
	var se *StopError
	if err == nil || ctx.Err() == nil || errors.As(err, &se) {
		return err
	}
	se = &StopError{Reason: StopInterrupted, Err: err, DryRun: sum.DryRun}
	sum.Stopped, sum.Error = se.Reason, se.Error()
	sum.Pending = sum.rest()
	return se
}
