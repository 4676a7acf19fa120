package campaign

import (
	"context"
	"errors"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
)

// errSeenAll ends a walk over the deferred rows once all of them were seen.
var errSeenAll = errors.New("enough")

// waitingRows counts a campaign's deferred recipients whose next attempt is after now,
// and returns the first such attempt. A deferred recipient without a next attempt is
// due. limit > 0 ends the walk after that many deferred rows.
func waitingRows(ctx context.Context, store journal.Store, campaign string, now time.Time, limit int) (n int, first time.Time, err error) {
	if store == nil {
		return 0, time.Time{}, nil
	}
	seen := 0
	err = store.EachRow(ctx, campaign, []journal.State{journal.Deferred}, func(r journal.Row) error {
		seen++
		if r.NextAttempt.After(now) {
			n++
			if first.IsZero() || r.NextAttempt.Before(first) {
				first = r.NextAttempt
			}
		}
		if limit > 0 && seen >= limit {
			return errSeenAll
		}
		return nil
	})
	if errors.Is(err, errSeenAll) {
		err = nil
	}
	return n, first, err
}

// formatDue is t as the summary shows it: RFC 3339 in the campaign's time zone ("" for
// the zero time).
func formatDue(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	if loc != nil {
		t = t.In(loc)
	}
	return t.Format(time.RFC3339)
}
