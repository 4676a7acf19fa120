package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/lists"
)

type storeFlags struct{ store, campaign string }

func (f *storeFlags) bind(c *cobra.Command) {
	c.PersistentFlags().StringVar(&f.store, "store", "", "store file or postgres:// URL (default: HERALD_STORE, the campaign's store with --campaign, or herald.db here)")
	c.PersistentFlags().StringVar(&f.campaign, "campaign", "", "use the store of this campaign file")
}

// storePath picks the store: --store, HERALD_STORE, --campaign's store, ./herald.db.
func (a *app) storePath(f storeFlags) (string, error) {
	if f.store != "" {
		return f.store, nil
	}
	if v := a.io.Getenv("HERALD_STORE"); v != "" {
		return v, nil
	}
	if f.campaign != "" {
		c, err := a.load(f.campaign)
		if err != nil {
			return "", err
		}
		return campaign.StorePath(c, "", a.io.Getenv), nil
	}
	return filepath.Join(".", "herald.db"), nil
}

func (a *app) openStore(ctx context.Context, f storeFlags) (journal.Store, error) {
	p, err := a.storePath(f)
	if err != nil {
		return nil, err
	}
	return campaign.OpenStore(ctx, p, journal.Options{Now: a.io.Now})
}

// suppress adds list to the store's suppression list and returns how many were new.
func (a *app) suppress(ctx context.Context, sf storeFlags, list []journal.Suppression) (int, error) {
	st, err := a.openStore(ctx, sf)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return st.Suppress(ctx, list)
}

func (a *app) suppressCmd() *cobra.Command {
	var sf storeFlags
	c := &cobra.Command{
		Use:   "suppress",
		Short: "Manage the suppression list shared by all campaigns in a store",
	}
	sf.bind(c)
	var reason, importReason string
	add := &cobra.Command{
		Use:   "add EMAIL…",
		Short: "Suppress addresses",
		Args:  args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var list []journal.Suppression
			for _, e := range argv {
				key := strings.ToLower(strings.TrimSpace(e))
				if why := lists.ValidateAddress(key); why != "" {
					return &usageError{err: fmt.Errorf("suppress add: %q: %s", e, why)}
				}
				list = append(list, journal.Suppression{Email: key, Reason: reason, Source: "manual", At: a.io.Now()})
			}
			n, err := a.suppress(cmd.Context(), sf, list)
			if err != nil {
				return err
			}
			a.infof("suppressed %d new address(es) (%d already were)", n, len(list)-n)
			return nil
		},
	}
	add.Flags().StringVar(&reason, "reason", "added by hand", "why the addresses are suppressed")
	remove := &cobra.Command{
		Use:   "remove EMAIL…",
		Short: "Remove addresses from the suppression list",
		Args:  args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			st, err := a.openStore(cmd.Context(), sf)
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := st.Unsuppress(cmd.Context(), argv)
			if err != nil {
				return err
			}
			a.infof("removed %d address(es)", n)
			return nil
		},
	}
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Suppress every address of a file (a CSV with an email column, or one address a line)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			f, err := os.Open(argv[0])
			if err != nil {
				return &usageError{err: err}
			}
			defer f.Close()
			var list []journal.Suppression
			src := "import:" + filepath.Base(argv[0])
			if err := lists.ReadAddresses(f, argv[0], func(key string, line int) error {
				list = append(list, journal.Suppression{Email: key, Reason: importReason, Source: src, At: a.io.Now()})
				return nil
			}); err != nil {
				return &usageError{err: err}
			}
			n, err := a.suppress(cmd.Context(), sf, list)
			if err != nil {
				return err
			}
			a.infof("imported %d address(es) from %s: %d new", len(list), argv[0], n)
			return nil
		},
	}
	imp.Flags().StringVar(&importReason, "reason", "imported", "why the addresses are suppressed")
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "Print the suppression list (address, time, source, reason)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.openStore(cmd.Context(), sf)
			if err != nil {
				return err
			}
			defer st.Close()
			enc := json.NewEncoder(a.io.Stdout)
			var all []journal.Suppression
			err = st.EachSuppressed(cmd.Context(), func(s journal.Suppression) error {
				if asJSON {
					all = append(all, s)
					return nil
				}
				fmt.Fprintf(a.io.Stdout, "%s\t%s\t%s\t%s\n", s.Email, s.At.Format(time.RFC3339), s.Source, s.Reason)
				return nil
			})
			if err != nil {
				return err
			}
			if asJSON {
				type item struct {
					Email  string `json:"email"`
					Reason string `json:"reason"`
					Source string `json:"source"`
					At     string `json:"at"`
				}
				out := make([]item, 0, len(all))
				for _, s := range all {
					out = append(out, item{s.Email, s.Reason, s.Source, s.At.Format(time.RFC3339)})
				}
				return enc.Encode(out)
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	c.AddCommand(add, remove, imp, list)
	return c
}
