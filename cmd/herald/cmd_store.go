package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/journal"
)

func (a *app) storeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "store",
		Short: "Work on stores: copy one into another (an SQLite file into PostgreSQL)",
	}
	c.AddCommand(&cobra.Command{
		Use:   "copy FROM TO",
		Short: "Copy campaigns, outcomes, suppressions and the unsubscribe secret from one store to another",
		Long: `Copy everything a store holds into another, in one transaction: every campaign's
recipients with their states and outcomes, the suppression list and the unsubscribe
secret (so that links already sent keep working). FROM and TO are file paths or
postgres:// URLs. What TO already holds is kept: a recipient, suppression or secret
it has is not overwritten. Recipients that were claimed or being sent by a run in FROM
arrive pending or unknown. Stop the sends on FROM first.`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ctx := cmd.Context()
			if !journal.IsURL(argv[0]) {
				if _, err := statFile(argv[0]); err != nil {
					return &usageError{err: fmt.Errorf("store copy: %s: %w", argv[0], err)}
				}
			}
			from, err := campaign.OpenStore(ctx, argv[0], journal.Options{Now: a.io.Now})
			if err != nil {
				return err
			}
			defer from.Close()
			to, err := campaign.OpenStore(ctx, argv[1], journal.Options{Now: a.io.Now})
			if err != nil {
				return err
			}
			defer to.Close()
			var recipients, suppressions, campaigns int
			n, err := to.Import(ctx, func(add func(journal.Record) error) error {
				return from.Export(ctx, func(r journal.Record) error {
					switch {
					case r.Recipient != nil:
						recipients++
					case r.Suppression != nil:
						suppressions++
					case r.Campaign != nil:
						campaigns++
					}
					return add(r)
				})
			})
			if err != nil {
				return err
			}
			a.infof("copied %s to %s: %d record(s): %d recipient(s), %d suppression(s), %d loaded list(s)",
				from.Name(), to.Name(), n, recipients, suppressions, campaigns)
			return nil
		},
	})
	return c
}

// statFile checks that path is an existing file (a copy must not create an empty store
// from a mistyped source path).
func statFile(path string) (os.FileInfo, error) { return os.Stat(path) }
