package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/logging"
	"github.com/heraldmail/herald/campaign/metrics"
	"github.com/heraldmail/herald/campaign/serve"
	"github.com/heraldmail/herald/providers"
)

// observeFlags are --log-format, --log-level and --metrics-addr.
type observeFlags struct {
	logFormat   string
	logLevel    string
	metricsAddr string
}

// addObserveFlags adds --log-format and --log-level to every command and --metrics-addr
// to the commands that run for a while (send, schedule, serve).
func (a *app) addObserveFlags(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.StringVar(&a.obs.logFormat, "log-format", "", "write what is meant for a human on stderr as log records: text or json (default: plain lines, a progress bar on a terminal)")
	pf.StringVar(&a.obs.logLevel, "log-level", "info", "with --log-format: debug, info, warn or error; at debug level recipient addresses are logged in full, else hashed")
	_ = root.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions(logging.Formats, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	for _, c := range root.Commands() {
		switch c.Name() {
		case "send", "schedule", "serve":
			c.Flags().StringVar(&a.obs.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics while running (e.g. 127.0.0.1:9464)")
		}
	}
}

// startObserving sets up the logger and the metrics server the flags ask for, before
// the command runs. A bad value or an address that cannot be listened on is a usage
// error: nothing has been sent.
func (a *app) startObserving(cmd *cobra.Command) error {
	if a.obs.logFormat != "" {
		level, err := logging.ParseLevel(a.obs.logLevel)
		if err != nil {
			return &usageError{err: fmt.Errorf("--log-level: %w", err)}
		}
		log, err := logging.New(a.io.Stderr, logging.Options{Format: a.obs.logFormat, Level: level})
		if err != nil {
			return &usageError{err: fmt.Errorf("--log-format: %w", err)}
		}
		a.log = log
		a.registry = logFailures(a.registry, log)
	}
	if a.obs.metricsAddr != "" {
		m := metrics.New(readBuildInfo().Version, cmd.Name())
		srv, err := m.Serve(a.obs.metricsAddr)
		if err != nil {
			return &usageError{err: fmt.Errorf("--metrics-addr: %w", err)}
		}
		a.metrics, a.metricsSrv = m, srv
		a.registry = m.Instrument(a.registry)
		if a.log != nil {
			a.log.Info("serving metrics", "url", "http://"+srv.Addr+"/metrics")
		} else {
			a.infof("herald: metrics at http://%s/metrics", srv.Addr)
		}
	}
	return nil
}

// stopObserving closes the metrics server.
func (a *app) stopObserving() {
	if a.metricsSrv != nil {
		_ = a.metricsSrv.Close()
	}
}

// startRun makes a run visible to the metrics and the log; the returned func ends it.
func (a *app) startRun(p campaign.Plan, c *campaign.Counters) func() {
	end := func() {}
	if a.metrics != nil {
		info := metrics.RunInfo{Campaign: p.Campaign, Provider: p.Provider, Rate: p.Rate, ToSend: p.ToSend}
		if p.Health != nil {
			info.Health = func(ctx context.Context) (metrics.Health, error) {
				oc, err := p.Health(ctx)
				return metrics.Health{Outcomes: oc.Outcomes, Bounces: oc.Bounces, Complaints: oc.Complaints}, err
			}
		}
		end = a.metrics.StartRun(info,
			func() metrics.Counts {
				return metrics.Counts{c.Sent.Load(), c.Failed.Load(), c.Deferred.Load(), c.Unknown.Load(), c.AlreadyDone.Load()}
			})
	}
	if a.log != nil {
		a.log.Info("run started", "campaign", p.Campaign, "to_send", p.ToSend, "provider", p.Provider,
			"rate_per_s", p.Rate, "workers", p.Workers)
	}
	return end
}

// observeCommit is the hook that times journal hand-offs for the metrics (nil when off).
func (a *app) observeCommit() func(time.Duration) {
	if a.metrics == nil {
		return nil
	}
	return a.metrics.JournalCommit
}

// logProgress writes the periodic progress record of a run.
func (a *app) logProgress(p campaign.Plan, c *campaign.Counters, elapsed time.Duration) {
	n := c.Done()
	r := float64(n) / elapsed.Seconds()
	attrs := []any{"campaign", p.Campaign, "done", n, "to_send", p.ToSend,
		"sent", c.Sent.Load(), "failed", c.Failed.Load(), "deferred", c.Deferred.Load(), "unknown", c.Unknown.Load(),
		"rate_per_s", r}
	if r > 0 {
		attrs = append(attrs, "eta_s", int64(float64(int64(p.ToSend)-n)/r))
	}
	a.log.Info("progress", attrs...)
}

// logSummary writes the record of a finished run: the counts of the JSON summary.
func (a *app) logSummary(s *campaign.Summary) {
	level := slog.LevelInfo
	if s.Failed+s.Deferred+s.Unknown > 0 || s.Stopped != "" {
		level = slog.LevelWarn
	}
	attrs := []any{"campaign", s.Campaign, "total", s.Total, "sent", s.Sent, "failed", s.Failed,
		"deferred", s.Deferred, "unknown", s.Unknown, "pending", s.Pending,
		slog.Group("skipped", "invalid", s.Skipped.Invalid, "duplicate", s.Skipped.Duplicate,
			"suppressed", s.Skipped.Suppressed, "already_done", s.Skipped.AlreadyDone),
		"dry_run", s.DryRun, "duration_ms", s.DurationMS, "rate_per_s", s.RatePerS}
	if s.Stopped != "" {
		attrs = append(attrs, "stopped", string(s.Stopped))
	}
	a.log.Log(context.Background(), level, "run finished", attrs...)
}

// logFailures returns reg with providers whose failed sends are logged, one record per
// attempt, the address hashed unless the logger is at debug level.
func logFailures(reg providers.Registry, log *slog.Logger) providers.Registry {
	out := make(providers.Registry, len(reg))
	for kind, r := range reg {
		open := r.Open
		r.Open = func(ctx context.Context, s providers.Spec) (providers.Provider, error) {
			p, err := open(ctx, s)
			if err != nil || p == nil {
				return p, err
			}
			lp := &loggedProvider{Provider: p, log: log}
			if q, ok := p.(interface{ Quota() (float64, bool) }); ok {
				return &loggedQuota{loggedProvider: lp, quota: q.Quota}, nil
			}
			return lp, nil
		}
		out[kind] = r
	}
	return out
}

// loggedProvider logs each failed send.
type loggedProvider struct {
	providers.Provider
	log *slog.Logger
}

func (p *loggedProvider) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	rc, err := p.Provider.Send(ctx, msg)
	if err != nil && ctx.Err() == nil {
		kind := providers.KindOf(err)
		level := slog.LevelWarn
		if kind == providers.Temporary {
			level = slog.LevelInfo
		}
		attrs := []any{"campaign", msg.Campaign, "to", logging.Address(msg.To), "kind", kind.String(),
			"error", logging.TextWithAddress{Text: err.Error(), Address: msg.To}}
		if pe := providers.AsError(err); pe != nil && pe.Code != 0 {
			attrs = append(attrs, "code", pe.Code)
		}
		p.log.Log(ctx, level, "send failed", attrs...)
	}
	return rc, err
}

type loggedQuota struct {
	*loggedProvider
	quota func() (float64, bool)
}

func (p *loggedQuota) Quota() (float64, bool) { return p.quota() }

// countSuppressions returns st, counting for the metrics (when on) what herald serve
// adds to the suppression list: unsubscribes, and webhook events by provider and reason.
func (a *app) countSuppressions(st serve.Suppressor) serve.Suppressor {
	if a.metrics == nil {
		return st
	}
	return &countingSuppressor{Suppressor: st, m: a.metrics}
}

type countingSuppressor struct {
	serve.Suppressor
	m *metrics.Metrics
}

func (c *countingSuppressor) Suppress(ctx context.Context, list []journal.Suppression) (int, error) {
	n, err := c.Suppressor.Suppress(ctx, list)
	if err != nil {
		return n, err
	}
	for _, s := range list {
		switch {
		case strings.HasPrefix(s.Source, "unsubscribe:"):
			c.m.Unsubscribed()
		case strings.HasPrefix(s.Source, "webhook:"):
			c.m.WebhookEvent(strings.TrimPrefix(s.Source, "webhook:"), s.Reason)
		}
	}
	return n, nil
}
