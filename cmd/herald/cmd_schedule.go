package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign"
)

func (a *app) scheduleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schedule CAMPAIGN.yaml…",
		Short: "Stay in the foreground and send each campaign at its schedule: (cron expression)",
		Long: `Runs each campaign at its schedule: (five-field cron, @hourly, @daily, @weekly or
@every DURATION) in its timezone:. Firings of one campaign never overlap (a firing that
comes while the last run is still going is skipped). The campaign file is read again
at every firing, so a name with {{ .Date }} or {{ .Week }} starts a new journal each
date or week. SIGTERM/SIGINT stop it cleanly: in-flight sends are recorded, exit 0.`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.runSchedule(cmd.Context(), argv)
		},
	}
}

// ParseSchedule parses a campaign's schedule: in its location.
func parseSchedule(c *campaign.Campaign) (cron.Schedule, error) {
	if c.Schedule == "" {
		return nil, fmt.Errorf("%s: schedule: required by `herald schedule` (e.g. \"0 9 * * MON\" or \"@daily\")", c.Path)
	}
	s, err := cron.ParseStandard("CRON_TZ=" + c.Location.String() + " " + c.Schedule)
	if err != nil {
		return nil, fmt.Errorf("%s: schedule: %q: %v", c.Path, c.Schedule, err)
	}
	return s, nil
}

func (a *app) runSchedule(ctx context.Context, paths []string) error {
	a.sending.Store(true)
	type entry struct {
		path  string
		sched cron.Schedule
	}
	var entries []entry
	for _, p := range paths {
		c, err := a.load(p)
		if err != nil {
			return err
		}
		s, err := parseSchedule(c)
		if err != nil {
			return &campaign.ConfigError{Err: err}
		}
		if err := campaign.CheckProvider(c, a.env(), true); err != nil {
			return err
		}
		entries = append(entries, entry{p, s})
	}
	runner := cron.New(cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger)))
	var mu sync.Mutex // one run writes to the terminal at a time
	for _, e := range entries {
		e := e
		runner.Schedule(e.sched, cron.FuncJob(func() {
			if ctx.Err() != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			a.fire(ctx, e.path)
		}))
		a.infof("herald schedule: %s next at %s", e.path, e.sched.Next(a.io.Now()).Format(time.RFC3339))
	}
	runner.Start()
	<-ctx.Done()
	a.infof("herald schedule: stopping; waiting for runs in progress to record their sends")
	<-runner.Stop().Done()
	return nil
}

// fire runs one scheduled send of the campaign at path; failures are reported, not fatal.
func (a *app) fire(ctx context.Context, path string) {
	c, err := a.load(path)
	if err != nil {
		a.infof("herald schedule: %s: %v", path, err)
		return
	}
	a.infof("herald schedule: %s: starting %q", path, c.Name)
	sum, err := campaign.Send(ctx, c, campaign.SendOptions{
		Limit:         -1,
		Store:         campaign.StorePath(c, "", a.io.Getenv),
		Progress:      a.progress,
		ObserveCommit: a.observeCommit(),
	}, a.env())
	if sum != nil && !isConfig(err) && !isLocked(err) {
		a.printSummary(sum, false)
	}
	var se *campaign.StopError
	switch {
	case err == nil:
	case errors.As(err, &se) && se.Reason == campaign.StopInterrupted:
		a.infof("herald schedule: %s: interrupted; the next firing resumes", path)
	default:
		a.infof("herald schedule: %s: %v", path, err)
	}
}
