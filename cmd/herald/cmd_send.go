package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/logging"
)

type sendOptions struct {
	path          string
	dryRun        bool
	limit         int
	rate          string
	workers       int
	yes           bool
	json          bool
	store         string
	resendUnknown bool
	resumePaused  bool
	test          string // --test ADDR[,ADDR…]
	row           int
	noPrefix      bool
}

func (a *app) sendCmd() *cobra.Command {
	var o sendOptions
	c := &cobra.Command{
		Use:   "send CAMPAIGN.yaml",
		Short: "Send a campaign (resumable: a re-run sends only what is not done yet)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			o.path = argv[0]
			if !cmd.Flags().Changed("limit") {
				o.limit = -1
			} else if o.limit < 0 {
				return &usageError{err: fmt.Errorf("--limit %d: must be 0 or more", o.limit)}
			}
			if o.test != "" {
				for _, f := range []string{"dry-run", "limit", "json", "resend-unknown", "rate", "workers"} {
					if cmd.Flags().Changed(f) {
						return &usageError{err: fmt.Errorf("--%s does not go with --test", f)}
					}
				}
				return a.runTestSend(cmd.Context(), o)
			}
			if cmd.Flags().Changed("row") || o.noPrefix {
				return &usageError{err: fmt.Errorf("--row and --no-prefix go with --test")}
			}
			return a.runSend(cmd.Context(), o)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.dryRun, "dry-run", false, "render and count everything; send and journal nothing")
	f.IntVar(&o.limit, "limit", 0, "send at most N new messages in this run")
	f.StringVar(&o.rate, "rate", "", "override the campaign's rate (10/s, 600/m, 20000/h)")
	f.IntVar(&o.workers, "workers", 0, "override the campaign's number of workers")
	f.BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
	f.BoolVar(&o.json, "json", false, "print the summary as one JSON object on stdout")
	f.StringVar(&o.store, "store", "", "store: a file or a postgres:// URL (default: HERALD_STORE, the file's store:, herald.db beside it)")
	f.BoolVar(&o.resendUnknown, "resend-unknown", false, "send again to recipients whose earlier outcome is unknown")
	f.BoolVar(&o.resumePaused, "resume-paused", false, "resume a campaign that pause_if paused (and restart its bounce and complaint count)")
	f.StringVar(&o.test, "test", "", "send row --row rendered to these addresses (comma-separated) through the campaign's provider; the journal is not touched")
	f.IntVar(&o.row, "row", 1, "with --test: the data row to render (1 = the first after the header)")
	f.BoolVar(&o.noPrefix, "no-prefix", false, "with --test: no \"[TEST] \" before the subject")
	return c
}

// runTestSend sends test messages: row o.row rendered for each --test address.
func (a *app) runTestSend(ctx context.Context, o sendOptions) error {
	to, err := campaign.ParseTestAddresses(o.test)
	if err != nil {
		return &usageError{err: err}
	}
	if o.row < 1 {
		return &usageError{err: fmt.Errorf("--row %d: rows start at 1", o.row)}
	}
	c, err := a.load(o.path)
	if err != nil {
		return err
	}
	results, err := campaign.TestSend(ctx, c, campaign.TestSendOptions{
		To: to, Row: o.row, NoPrefix: o.noPrefix, Store: campaign.StorePath(c, o.store, a.io.Getenv),
	}, a.env())
	for _, r := range results {
		switch {
		case r.Err != nil:
			a.warnf("test message to %s not accepted: %v", r.To, r.Err)
		case r.MessageID != "":
			a.infof("test message (row %d) sent to %s (%s)", o.row, r.To, r.MessageID)
		case r.To != "":
			a.infof("test message (row %d) sent to %s", o.row, r.To)
		}
	}
	if err == nil {
		a.infof("%d test message(s) sent; the journal of %s is unchanged", len(results), c.Name)
	}
	return err
}

func (a *app) runSend(ctx context.Context, o sendOptions) error {
	c, err := a.load(o.path)
	if err != nil {
		return err
	}
	opts := campaign.SendOptions{
		DryRun: o.dryRun, Limit: o.limit, Workers: o.workers,
		Store:         campaign.StorePath(c, o.store, a.io.Getenv),
		ResendUnknown: o.resendUnknown,
		ResumePaused:  o.resumePaused,
		Warn:          a.rowWarnings(),
		ObserveCommit: a.observeCommit(),
	}
	if o.workers < 0 || o.workers > 256 {
		return &usageError{err: fmt.Errorf("--workers %d: use 1 to 256", o.workers)}
	}
	if o.rate != "" {
		r, err := campaign.ParseRate(o.rate)
		if err != nil {
			return &usageError{err: fmt.Errorf("--rate: %w", err)}
		}
		opts.Rate = &r
	}
	if !o.dryRun {
		a.sending.Store(true)
		opts.Warn = nil // the dry run and validate list row problems; a send counts them
		if !o.yes && a.io.StdinTTY {
			opts.Confirm = a.confirm
		}
		opts.Progress = a.progress
	}
	sum, err := campaign.Send(ctx, c, opts, a.env())
	if !isConfig(err) && !isLocked(err) {
		a.printSummary(sum, o.json)
	}
	if err != nil {
		return err
	}
	// failed, deferred and unknown recipients all need a person's look: exit 1.
	if sum.Failed > 0 || sum.Deferred > 0 || sum.Unknown > 0 {
		return &exitError{code: exitFailed}
	}
	return nil
}

func isLocked(err error) bool {
	var le *journal.LockedError
	return errors.As(err, &le)
}

func isConfig(err error) bool {
	var ce *campaign.ConfigError
	return errors.As(err, &ce)
}

// rowWarnings prints skipped rows (invalid, duplicate) to stderr, the first 20 in full.
func (a *app) rowWarnings() func(campaign.Warning) {
	n := 0
	return func(w campaign.Warning) {
		n++
		if a.log != nil {
			if w.Line == 0 {
				a.log.Warn("content", "reason", logging.TextWithAddresses(w.Reason))
			} else {
				a.log.Warn("skipped row", "line", w.Line, "reason", logging.TextWithAddresses(w.Reason))
			}
			return
		}
		if w.Line == 0 { // about the campaign's content, not a row
			a.infof("  %s", w.Reason)
			return
		}
		if n <= 20 {
			a.infof("  line %d: %s", w.Line, w.Reason)
		} else if n == 21 {
			a.infof("  … more skipped rows are counted in the summary")
		}
	}
}

func (a *app) confirm(p campaign.Plan) bool {
	fmt.Fprintf(a.io.Stderr, "Send %q to %d recipient(s) via %s at %.4g/s with %d worker(s) (about %s)? [y/N] ",
		p.Campaign, p.ToSend, p.Provider, p.Rate, p.Workers, roundETA(p.ETA))
	line, _ := bufio.NewReader(a.io.Stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

func roundETA(d time.Duration) time.Duration {
	switch {
	case d > time.Hour:
		return d.Round(time.Minute)
	case d > time.Minute:
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

func (a *app) printSummary(s *campaign.Summary, asJSON bool) {
	if asJSON {
		fmt.Fprintf(a.io.Stdout, "%s\n", s.JSON())
	}
	if a.log != nil {
		a.logSummary(s)
		return
	}
	line := fmt.Sprintf("%s: %d row(s): %d sent, %d failed, %d deferred, %d unknown, %d pending; skipped: %d invalid, %d duplicate, %d suppressed, %d already done",
		s.Campaign, s.Total, s.Sent, s.Failed, s.Deferred, s.Unknown, s.Pending,
		s.Skipped.Invalid, s.Skipped.Duplicate, s.Skipped.Suppressed, s.Skipped.AlreadyDone)
	if s.Expired > 0 {
		line = strings.Replace(line, " pending;", fmt.Sprintf(" pending, %d expired;", s.Expired), 1)
	}
	if s.Waiting > 0 {
		line += fmt.Sprintf("; %d waiting", s.Waiting)
	}
	if s.FirstDue != "" {
		line += fmt.Sprintf("; next retry due at %s", s.FirstDue)
	}
	if s.DryRun {
		line = fmt.Sprintf("%s (dry run): %d row(s): %d would be sent; skipped: %d invalid, %d duplicate, %d suppressed, %d already done",
			s.Campaign, s.Total, s.Pending, s.Skipped.Invalid, s.Skipped.Duplicate, s.Skipped.Suppressed, s.Skipped.AlreadyDone)
	} else if s.Sent > 0 {
		line += fmt.Sprintf(" (%.1f msg/s over %s)", s.RatePerS, (time.Duration(s.DurationMS) * time.Millisecond).Round(time.Millisecond))
	}
	a.infof("%s", line)
	if s.Policy != "" {
		a.infof("%s: %s", s.Campaign, s.Policy)
	}
}
