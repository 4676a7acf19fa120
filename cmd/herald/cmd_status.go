package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign"
)

func (a *app) statusCmd() *cobra.Command {
	var (
		asJSON, failed bool
		store          string
	)
	c := &cobra.Command{
		Use:   "status CAMPAIGN.yaml",
		Short: "Counts per state from the journal; --failed lists failed, deferred and unknown recipients",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.load(argv[0])
			if err != nil {
				return err
			}
			st, err := campaign.ReadStatus(cmd.Context(), c, campaign.StorePath(c, store, a.io.Getenv), failed, a.env())
			if err != nil {
				return err
			}
			if st.ListError != "" {
				a.warnf("the list could not be read (%s): rows not attempted yet are not counted", st.ListError)
			}
			if asJSON {
				b, _ := json.Marshal(st)
				fmt.Fprintf(a.io.Stdout, "%s\n", b)
				return nil
			}
			w := tabwriter.NewWriter(a.io.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "campaign\t%s\n", st.Campaign)
			if st.Total >= 0 {
				fmt.Fprintf(w, "list rows\t%d\n", st.Total)
			}
			for _, r := range []struct {
				name string
				n    int
			}{{"pending", st.Pending}, {"claimed", st.Claimed}, {"sending", st.Sending}, {"sent", st.Sent}, {"deferred", st.Deferred}, {"failed", st.Failed}, {"unknown", st.Unknown}, {"expired", st.Expired}} {
				fmt.Fprintf(w, "%s\t%d\n", r.name, r.n)
			}
			if st.Paused != "" {
				fmt.Fprintf(w, "paused\t%s (resume: herald send CAMPAIGN.yaml --resume-paused)\n", st.Paused)
			}
			if st.Skipped != nil {
				fmt.Fprintf(w, "skipped\t%d invalid, %d duplicate, %d suppressed\n", st.Skipped.Invalid, st.Skipped.Duplicate, st.Skipped.Suppressed)
			}
			if st.LastRun != nil {
				fmt.Fprintf(w, "last run\t%s – %s (pid %d)\n", st.LastRun.Started, orDash(st.LastRun.Ended), st.LastRun.PID)
			}
			for _, lr := range st.LiveRuns {
				fmt.Fprintf(w, "live run\t%s pid %d, since %s, %d sent\n", lr.Host, lr.PID, lr.Started, lr.Sent)
			}
			w.Flush()
			if failed {
				for _, r := range st.Rows {
					code := ""
					if r.Code != 0 {
						code = fmt.Sprint(r.Code)
					}
					if r.Enhanced != "" {
						code += " " + r.Enhanced
					}
					provider := r.Provider
					if provider == "" {
						provider = "-" // recorded before herald kept the provider
					}
					fmt.Fprintf(a.io.Stdout, "%s\t%s\t%s\t%s\t%s\n", r.Email, r.State, provider, code, r.Reason)
				}
			}
			if st.Unknown > 0 && !failed {
				a.infof("%d recipient(s) are unknown (the process stopped between hand-off and answer): see `herald status --failed`", st.Unknown)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	c.Flags().BoolVar(&failed, "failed", false, "list failed, deferred and unknown recipients with reasons")
	c.Flags().StringVar(&store, "store", "", "store: a file, or a postgres:// URL (default: the campaign's store)")
	return c
}

func orDash(s string) string {
	if s == "" {
		return "running or stopped"
	}
	return s
}
