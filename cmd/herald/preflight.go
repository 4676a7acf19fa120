package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/preflight"
	"github.com/heraldmail/herald/campaign/spam"
)

// preflight prints the deliverability warnings of `herald validate`; with strict they
// are a configuration error (exit 2).
func (a *app) preflight(ctx context.Context, c *campaign.Campaign, o preflight.Options, strict bool) error {
	findings, err := preflight.Run(ctx, c, o, a.env())
	if err != nil {
		return err
	}
	for _, f := range findings {
		a.warnf("%s", f)
	}
	if strict && len(findings) > 0 {
		return &campaign.ConfigError{Err: fmt.Errorf("%s: %d deliverability warning(s) under --strict", c.Path, len(findings))}
	}
	return nil
}

// spamCheck scores the sample message with SpamAssassin (HERALD_SPAMASSASSIN names
// another command line, such as "spamc -R"), prints the score, the threshold and each
// rule that hit, and exits 1 at or above the threshold. A missing SpamAssassin is
// reported with how to install it and does not fail validate.
func (a *app) spamCheck(ctx context.Context, c *campaign.Campaign, o preflight.Options) error {
	m, err := preflight.Sample(ctx, c, o, a.env())
	if err != nil {
		return err
	}
	if m == nil {
		a.warnf("--spam: no recipient left to send to: no sample message to score (use --row N)")
		return nil
	}
	r, err := spam.Check(ctx, m.Raw, strings.Fields(a.io.Getenv("HERALD_SPAMASSASSIN")))
	if errors.Is(err, spam.ErrNotInstalled) {
		a.warnf("--spam: %v; the spam check was skipped", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("--spam: %w", err)
	}
	verdict := "below the threshold"
	if r.Spam() {
		verdict = "SPAM: at or above the threshold"
	}
	fmt.Fprintf(a.io.Stdout, "SpamAssassin score %.1f, threshold %.1f (%s) for the message to %s\n", r.Score, r.Threshold, verdict, m.To)
	for _, rule := range r.Rules {
		fmt.Fprintf(a.io.Stdout, "%6.1f  %-26s %s\n", rule.Points, rule.Name, rule.Description)
	}
	if r.Spam() {
		return &exitError{code: exitFailed}
	}
	return nil
}
