package campaign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	Campaign   string  `json:"campaign"`
	Total      int     `json:"total"`
	Sent       int     `json:"sent"`
	Failed     int     `json:"failed"`
	Deferred   int     `json:"deferred"`
	Unknown    int     `json:"unknown"`
	Pending    int     `json:"pending"`
	Skipped    Skipped `json:"skipped"`
	DryRun     bool    `json:"dry_run"`
	DurationMS int64   `json:"duration_ms"`
	RatePerS   float64 `json:"rate_per_s"`
	// Stopped says why the run ended early: "interrupted", "fatal" or "unreachable".
	Stopped string `json:"stopped,omitempty"`
	// Error is the message of the error that stopped the run.
	Error string `json:"error,omitempty"`
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
	// Confirm is asked once with the plan before anything is sent (nil: no question).
	Confirm func(Plan) bool
	// Progress starts reporting the run's counters; the returned func stops it.
	Progress func(p Plan, c *Counters) (stop func())
	// Warn receives list rows that are skipped as invalid or duplicate.
	Warn func(Warning)
	// Grace bounds how long in-flight sends may go on after a stop (0: 30s).
	Grace time.Duration
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
func Secret(ctx context.Context, store *journal.Store, getenv func(string) string) ([]byte, error) {
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
	}
}

// CheckProvider validates the provider block without connecting; with secrets it also
// checks that the secret variables are set.
func CheckProvider(c *Campaign, env Env, secrets bool) error {
	reg, err := env.Registry.Lookup(c.ProviderKind)
	if err != nil {
		return configErr("%s: provider: %v", c.Path, err)
	}
	if err := reg.Check(ProviderSpec(c, env), secrets); err != nil {
		return &ConfigError{Err: err}
	}
	return nil
}

// NewLimiter returns the shared limiter for a ceiling of perSecond messages over any
// one-second window: small bursts are allowed at high rates, and the refill rate is
// lowered by the burst so that the two together stay within the ceiling.
func NewLimiter(perSecond float64) *rate.Limiter {
	burst := int(perSecond / 100)
	if burst < 1 {
		return rate.NewLimiter(rate.Limit(perSecond), 1)
	}
	return rate.NewLimiter(rate.Limit(perSecond-float64(burst)), burst)
}

// Send runs (or, with DryRun, rehearses) a campaign. The returned summary is complete
// also when the run stopped early; the error then says why (*StopError, *ConfigError,
// ErrDeclined, a lock error).
func Send(ctx context.Context, c *Campaign, o SendOptions, env Env) (sum *Summary, err error) {
	start := time.Now()
	sum = &Summary{Campaign: c.Name, DryRun: o.DryRun}
	defer func() { err = interrupted(ctx, sum, err) }()
	if o.Limit < -1 {
		return sum, configErr("--limit must be 0 or more")
	}
	if err := CheckProvider(c, env, !o.DryRun); err != nil {
		return sum, err
	}
	storePath := o.Store
	var store *journal.Store
	if !o.DryRun {
		release, err := journal.Lock(storePath, c.Name)
		if err != nil {
			return sum, err
		}
		defer release()
		if store, err = journal.Open(ctx, storePath, journal.Options{Now: env.Now}); err != nil {
			return sum, err
		}
		defer store.Close()
	} else if _, err := os.Stat(storePath); err == nil {
		// A dry run reads an existing journal (to count what is already done) and
		// writes nothing.
		if store, err = journal.Open(ctx, storePath, journal.Options{Now: env.Now}); err != nil {
			return sum, err
		}
		defer store.Close()
	}
	secret, err := Secret(ctx, store, env.getenv)
	if err != nil {
		return sum, err
	}
	src := &Source{Campaign: c, Now: env.Now, Warn: o.Warn}
	if store != nil {
		src.Journal = store
	}
	cols, err := src.Columns()
	if err != nil {
		return sum, err
	}
	renderer, err := NewRenderer(c, cols, secret, env.Now)
	if err != nil {
		return sum, err
	}
	workers := c.Workers
	if o.Workers > 0 {
		workers = o.Workers
	}
	perSecond := c.Rate.PerSecond
	if o.Rate != nil {
		perSecond = o.Rate.PerSecond
	}

	if o.DryRun {
		// Render every recipient that would go, to find every problem now.
		var renderErr error
		res, err := src.Scan(ctx, func(rc *Recipient) error {
			if rc.GiveUp {
				return nil
			}
			if _, err := renderer.Message(rc); err != nil && renderErr == nil {
				renderErr = err
			}
			return nil
		})
		fill(sum, res)
		sum.Pending = res.ToSend + res.NotDue + res.GaveUp
		sum.DurationMS = time.Since(start).Milliseconds()
		if err != nil {
			return sum, err
		}
		if renderErr != nil {
			return sum, &ConfigError{Err: renderErr}
		}
		return sum, nil
	}

	// The run begins before the list is counted, so that the count sees the journal as
	// this run will send it: claims of a run that died are `unknown`, and with
	// --resend-unknown every `unknown` recipient is `pending` again.
	runID, recovered, err := store.BeginRun(ctx, c.Name, o.ResendUnknown)
	if err != nil {
		return sum, err
	}
	if recovered > 0 {
		env.warnf("%d recipient(s) were being sent when an earlier run died: now `unknown` (see `herald status --failed`; `send --resend-unknown` sends them again)", recovered)
	}
	defer func() {
		err = interrupted(ctx, sum, err)
		_ = store.EndRun(context.WithoutCancel(ctx), runID, sum.JSON())
	}()

	// The first pass counts (for the question, the progress bar and the summary); the
	// list is streamed twice rather than held in memory.
	src.Warn = nil
	plan, err := src.Scan(ctx, func(*Recipient) error { return nil })
	if err != nil {
		fill(sum, plan)
		return sum, err
	}
	fill(sum, plan)
	toSend := plan.ToSend
	if o.Limit >= 0 && o.Limit < toSend {
		toSend = o.Limit
	}

	reg, err := env.Registry.Lookup(c.ProviderKind)
	if err != nil {
		return sum, configErr("%s: provider: %v", c.Path, err)
	}
	if toSend == 0 && plan.GaveUp == 0 {
		sum.Pending = plan.ToSend + plan.NotDue
		sum.DurationMS = time.Since(start).Milliseconds()
		return sum, nil
	}
	// Asked before the provider is opened: a "no" connects to nothing.
	p := Plan{Campaign: c.Name, Total: plan.Total, ToSend: toSend, Skipped: plan.Skipped,
		Provider: c.ProviderKind, Rate: perSecond, Workers: workers}
	p.ETA = time.Duration(float64(toSend) / perSecond * float64(time.Second))
	if o.Confirm != nil && !o.Confirm(p) {
		sum.Pending = plan.ToSend + plan.NotDue + plan.GaveUp
		return sum, ErrDeclined
	}
	prov, err := reg.Open(ctx, ProviderSpec(c, env))
	if err != nil {
		var pe *providers.Error
		if errors.As(err, &pe) {
			return sum, &StopError{Reason: "fatal", Err: err}
		}
		return sum, &ConfigError{Err: err}
	}
	defer prov.Close()
	caps := prov.Capabilities()
	if caps.MaxConcurrency > 0 && caps.MaxConcurrency < workers {
		workers = caps.MaxConcurrency
	}
	if caps.MaxRate > 0 && caps.MaxRate < perSecond {
		env.warnf("%s allows %.4g messages/s: rate capped from %.4g/s", prov.Name(), caps.MaxRate, perSecond)
		perSecond = caps.MaxRate
	}
	if q, ok := prov.(interface{ Quota() (float64, bool) }); ok {
		if remaining, known := q.Quota(); known && float64(toSend) > remaining {
			env.warnf("%s: %d message(s) to send but only %.0f left in the 24-hour quota: the rest will fail as quota exhausted and stay pending", prov.Name(), toSend, remaining)
		}
	}
	p.Provider, p.Rate, p.Workers = prov.Name(), perSecond, workers
	p.ETA = time.Duration(float64(toSend) / perSecond * float64(time.Second))

	w := store.NewWriter(c.Name)
	pl := &Pipeline{
		Campaign: c, Provider: prov, Renderer: renderer, Journal: w,
		Limiter: NewLimiter(perSecond), Workers: workers, Retry: c.Retry,
		Now: env.Now, Grace: o.Grace, Warnf: env.Warnf, Counters: &Counters{},
	}
	if pl.Now == nil {
		pl.Now = time.Now
	}
	if o.Progress != nil {
		stopProgress := o.Progress(p, pl.Counters)
		defer stopProgress()
	}
	sendStart := time.Now()
	runErr := pl.Run(ctx, o.Limit, func(fn func(*Recipient) error) error {
		_, err := src.Scan(ctx, fn)
		return err
	})
	if err := w.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("journal: %w", err)
	}
	sum.Sent = int(pl.Counters.Sent.Load())
	sum.Failed = int(pl.Counters.Failed.Load())
	sum.Deferred = int(pl.Counters.Deferred.Load())
	sum.Unknown = int(pl.Counters.Unknown.Load())
	sum.Skipped.AlreadyDone += int(pl.Counters.AlreadyDone.Load())
	sum.Pending = sum.Total - sum.Sent - sum.Failed - sum.Deferred - sum.Unknown -
		sum.Skipped.Invalid - sum.Skipped.Duplicate - sum.Skipped.Suppressed - sum.Skipped.AlreadyDone
	sum.DurationMS = time.Since(start).Milliseconds()
	if el := time.Since(sendStart).Seconds(); el > 0 {
		sum.RatePerS = math.Round(float64(sum.Sent)/el*10) / 10
	}
	var se *StopError
	if errors.As(runErr, &se) {
		sum.Stopped = se.Reason
		sum.Error = se.Error()
	}
	return sum, runErr
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
	se = &StopError{Reason: "interrupted", Err: err}
	sum.Stopped, sum.Error = se.Reason, se.Error()
	sum.Pending = sum.Total - sum.Sent - sum.Failed - sum.Deferred - sum.Unknown -
		sum.Skipped.Invalid - sum.Skipped.Duplicate - sum.Skipped.Suppressed - sum.Skipped.AlreadyDone
	return se
}

func fill(sum *Summary, res ScanResult) {
	sum.Total = res.Total
	sum.Skipped = res.Skipped
}
