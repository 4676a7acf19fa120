package main

import (
	"context"
	"fmt"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/preflight"
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
