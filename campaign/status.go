package campaign

import (
	"context"
	"errors"

	"github.com/heraldmail/herald/campaign/journal"
)

// Status is the state of a campaign's journal, for `herald status`.
type Status struct {
	Campaign string `json:"campaign"`
	// Total is the number of data rows in the list (-1 when the list cannot be read).
	Total   int `json:"total"`
	Pending int `json:"pending"`
	// Claimed counts recipients taken by a live run, not yet handed over.
	Claimed  int `json:"claimed"`
	Sending  int `json:"sending"`
	Sent     int `json:"sent"`
	Deferred int `json:"deferred"`
	Failed   int `json:"failed"`
	Unknown  int `json:"unknown"`
	// Expired counts recipients not sent before not_after.
	Expired int `json:"expired"`
	// Paused says why pause_if paused the campaign (empty: it is not paused).
	Paused string `json:"paused,omitempty"`
	// Skipped counts the list rows that will not be sent.
	Skipped *Skipped `json:"skipped,omitempty"`
	// LastRun is the summary of the latest run, when there was one.
	LastRun *RunSummary `json:"last_run,omitempty"`
	// LiveRuns are the runs sending the campaign now (on any host).
	LiveRuns []LiveRun `json:"live_runs,omitempty"`
	// ListError says why the list could not be read (then Total is -1 and Pending
	// counts only recipients released back to pending).
	ListError string `json:"list_error,omitempty"`
	// Rows lists failed, deferred and unknown recipients when asked for.
	Rows []StatusRow `json:"recipients,omitempty"`
}

// RunSummary is a finished run as `status` reports it.
type RunSummary struct {
	Started string `json:"started"`
	Ended   string `json:"ended,omitempty"`
	PID     int    `json:"pid"`
}

// LiveRun is a run that is sending the campaign now.
type LiveRun struct {
	Host    string `json:"host"`
	PID     int    `json:"pid"`
	Started string `json:"started"`
	// Sent counts what the run sent so far.
	Sent int `json:"sent"`
}

// StatusRow is one recipient that needs a look.
type StatusRow struct {
	Email    string `json:"email"`
	Line     int    `json:"line"`
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	// Provider is the provider that took the last attempt (empty before it was recorded).
	Provider string `json:"provider"`
	Code     int    `json:"code,omitempty"`
	Enhanced string `json:"enhanced,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Updated  string `json:"updated,omitempty"`
}

// ReadStatus counts the journal's states for c; pending counts the list rows still to
// send (not yet attempted, or released). With rows it also lists the failed, deferred and
// unknown recipients.
func ReadStatus(ctx context.Context, c *Campaign, storePath string, rows bool, env Env) (*Status, error) {
	st := &Status{Campaign: c.Name, Total: -1}
	if !storeExists(storePath) {
		return st, configErr("store %s: no journal yet (nothing has been sent with it)", storePath)
	}
	store, err := OpenStore(ctx, storePath, journal.Options{Now: env.Now})
	if err != nil {
		return st, err
	}
	defer store.Close()
	// Dead runs are settled as any herald process that meets them does.
	if _, err := store.Settle(ctx, c.Name); err != nil {
		return st, err
	}
	counts, err := store.Counts(ctx, c.Name)
	if err != nil {
		return st, err
	}
	st.Claimed = counts[journal.Claimed]
	st.Sending = counts[journal.Sending]
	st.Sent = counts[journal.Sent]
	st.Deferred = counts[journal.Deferred]
	st.Failed = counts[journal.Failed]
	st.Unknown = counts[journal.Unknown]
	st.Expired = counts[journal.Expired]
	if ps, err := store.PauseState(ctx, c.Name); err != nil {
		return st, err
	} else if ps.Paused {
		st.Paused = ps.Reason
	}
	st.Pending = counts[journal.Pending]
	src := &Source{Campaign: c, Journal: store, Now: env.Now}
	res, err := src.Scan(ctx, func(*Recipient) error { return nil })
	var ste *StoreError
	switch {
	case errors.As(err, &ste):
		// The store, not the list, failed: that is the answer.
		return st, ste.Err
	case err == nil:
		st.Total = res.Total
		st.Pending = res.ToSend - res.Retries
		sk := res.Skipped
		st.Skipped = &sk
	default:
		if info, ok, ierr := store.Campaign(ctx, c.Name); ierr == nil && ok {
			// No list here (another host loaded it): the store's record of it.
			supp, serr := store.PendingSuppressed(ctx, c.Name)
			if serr != nil {
				return st, serr
			}
			st.Total = info.Total
			st.Pending = counts[journal.Pending] - supp
			done := st.Total - info.Invalid - info.Duplicate - info.Suppressed - supp - st.Pending - st.Claimed - st.Sending - st.Deferred
			st.Skipped = &Skipped{Invalid: info.Invalid, Duplicate: info.Duplicate, Suppressed: info.Suppressed + supp,
				AlreadyDone: max(done-st.Sent-st.Failed-st.Unknown, 0)}
		} else {
			st.ListError = err.Error()
		}
	}
	live, err := store.LiveRuns(ctx, c.Name)
	if err != nil {
		return st, err
	}
	for _, lr := range live {
		st.LiveRuns = append(st.LiveRuns, LiveRun{Host: lr.Host, PID: lr.PID, Sent: lr.Sent,
			Started: lr.Started.Format("2006-01-02 15:04:05")})
	}
	run, ok, err := store.LastRun(ctx, c.Name)
	if err != nil {
		return st, err
	}
	if ok {
		st.LastRun = &RunSummary{Started: run.Started.Format("2006-01-02 15:04:05"), PID: run.PID}
		if !run.Ended.IsZero() {
			st.LastRun.Ended = run.Ended.Format("2006-01-02 15:04:05")
		}
	}
	if rows {
		err := store.EachRow(ctx, c.Name, []journal.State{journal.Failed, journal.Deferred, journal.Unknown, journal.Sending}, func(r journal.Row) error {
			sr := StatusRow{Email: r.Email, Line: r.Line, State: string(r.State), Attempts: r.Attempts,
				Provider: r.Provider, Code: r.Code, Enhanced: r.Enhanced, Reason: r.Reason}
			if !r.UpdatedAt.IsZero() {
				sr.Updated = r.UpdatedAt.Format("2006-01-02 15:04:05")
			}
			st.Rows = append(st.Rows, sr)
			return nil
		})
		if err != nil {
			return st, err
		}
	}
	return st, nil
}
