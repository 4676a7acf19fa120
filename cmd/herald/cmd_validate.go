package main

import (
	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/preflight"
)

func (a *app) validateCmd() *cobra.Command {
	var store string
	var strict, spamCheck bool
	var row int
	c := &cobra.Command{
		Use:   "validate CAMPAIGN.yaml",
		Short: "Check the campaign file, provider settings, every list row and template; send nothing",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.load(argv[0])
			if err != nil {
				return err
			}
			sum, err := campaign.Validate(cmd.Context(), c, campaign.StorePath(c, store, a.io.Getenv), a.rowWarnings(), a.env())
			if err != nil {
				return err
			}
			if _, err := campaign.CheckZones(cmd.Context(), c, a.rowWarnings()); err != nil {
				return err
			}
			a.infof("%s is valid: %d row(s): %d to send; skipped: %d invalid, %d duplicate, %d suppressed, %d already done",
				argv[0], sum.Total, sum.Pending, sum.Skipped.Invalid, sum.Skipped.Duplicate, sum.Skipped.Suppressed, sum.Skipped.AlreadyDone)
			for _, line := range append(c.Policy.Explain(), c.ExplainSending()...) {
				a.infof("policy: %s", line)
			}
			o := preflight.Options{Store: campaign.StorePath(c, store, a.io.Getenv), Row: row}
			if err := a.preflight(cmd.Context(), c, o, strict); err != nil {
				return err
			}
			if spamCheck {
				return a.spamCheck(cmd.Context(), c, o)
			}
			return nil
		},
	}
	c.Flags().StringVar(&store, "store", "", "journal file (read only if it exists)")
	c.Flags().BoolVar(&strict, "strict", false, "treat the deliverability warnings as errors (exit 2)")
	c.Flags().BoolVar(&spamCheck, "spam", false, "score a sample message with SpamAssassin (exit 1 above its threshold)")
	c.Flags().IntVar(&row, "row", 0, "data row of the sample message the checks render (default: the first to send)")
	return c
}
