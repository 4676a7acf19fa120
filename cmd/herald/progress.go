package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/heraldmail/herald/campaign"
)

// logEvery is how often a run without a terminal writes a progress line (cron mail
// stays readable).
const logEvery = 5 * time.Second

// progress reports a run on stderr: a bar with rate and ETA on a terminal, a plain line
// every few seconds otherwise.
func (a *app) progress(p campaign.Plan, c *campaign.Counters) func() {
	endRun := a.startRun(p, c)
	if a.log == nil {
		a.infof("sending %q: %d recipient(s) via %s at up to %.4g/s with %d worker(s)", p.Campaign, p.ToSend, p.Provider, p.Rate, p.Workers)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	if a.log != nil {
		// --log-format: a progress record every few seconds, on a terminal too.
		go func() {
			defer wg.Done()
			start := time.Now()
			t := time.NewTicker(logEvery)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					a.logProgress(p, c, time.Since(start))
				case <-done:
					return
				}
			}
		}()
	} else if a.io.StderrTTY {
		bar := progressbar.NewOptions64(int64(p.ToSend),
			progressbar.OptionSetWriter(a.io.Stderr),
			progressbar.OptionSetDescription(p.Campaign),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("msg"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
		)
		go func() {
			defer wg.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					_ = bar.Set64(c.Done())
				case <-done:
					_ = bar.Set64(c.Done())
					_ = bar.Exit()
					fmt.Fprintln(a.io.Stderr)
					return
				}
			}
		}()
	} else {
		go func() {
			defer wg.Done()
			start := time.Now()
			t := time.NewTicker(logEvery)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					n := c.Done()
					el := time.Since(start)
					r := float64(n) / el.Seconds()
					eta := "?"
					if r > 0 {
						eta = (time.Duration(float64(int64(p.ToSend)-n)/r) * time.Second).Round(time.Second).String()
					}
					a.infof("%s: %d/%d done (%d sent, %d failed, %d deferred) %.1f msg/s, ETA %s",
						p.Campaign, n, p.ToSend, c.Sent.Load(), c.Failed.Load(), c.Deferred.Load(), r, eta)
				case <-done:
					return
				}
			}
		}()
	}
	return func() { close(done); wg.Wait(); endRun() }
}
