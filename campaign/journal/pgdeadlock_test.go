package journal_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/journal/journaltest"
	"github.com/heraldmail/herald/campaign/journal/pgtest"
)

// TestPostgresLoadBesideSettlement: a run that loads the list while another process
// settles a dead run of the same campaign must not deadlock with it. Settlement turns
// the dead run's claims back to pending, then its hand-offs to unknown, in one
// transaction; the load must not hold (nor wait for while holding) rows a settlement
// takes. The interleaving is forced: the settlement's first statement is made, the
// load is started and waits for it, then the settlement's second statement runs.
func TestPostgresLoadBesideSettlement(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	s := journaltest.Open(t, url, nil)
	items := journaltest.Items("a", 0, 3)
	dead := journaltest.Begin(t, s, "nov")
	journaltest.Load(t, dead, "h", items)
	if got, err := dead.Claim(ctx, 3); err != nil || len(got) != 3 {
		t.Fatalf("claim = %d, %v", len(got), err)
	}
	// The first row in list order is handed off; the second stays claimed.
	if err := dead.Handoff(ctx, items[0].Key)(); err != nil {
		t.Fatal(err)
	}

	settler, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer settler.Close(ctx)
	watcher, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close(ctx)
	var settlerPID int32
	if err := settler.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&settlerPID); err != nil {
		t.Fatal(err)
	}
	tx, err := settler.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// Settlement, first statement: the claims go back (the second row).
	if _, err := tx.Exec(ctx, `UPDATE herald_recipients SET state = 'pending', run_id = NULL
		WHERE campaign = 'nov' AND key = $1 AND state = 'claimed'`, items[1].Key); err != nil {
		t.Fatal(err)
	}

	r := journaltest.Begin(t, s, "nov")
	loaded := make(chan error, 1)
	go func() {
		_, err := r.Load(ctx, &journal.ListInfo{Columns: []string{"email", "name"}, TemplateHash: "h", Total: len(items)},
			func(add func(journal.Item) error) error {
				for _, it := range items {
					if err := add(it); err != nil {
						return err
					}
				}
				return nil
			})
		loaded <- err
	}()
	// Wait until the load either finished or waits for the settlement.
	var loadErr error
	done := false
	deadline := time.Now().Add(60 * time.Second)
	for !done {
		select {
		case loadErr = <-loaded:
			done = true
			continue
		default:
		}
		var waits bool
		if err := watcher.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity a
			WHERE $1 = ANY (pg_blocking_pids(a.pid)))`, settlerPID).Scan(&waits); err != nil {
			t.Fatal(err)
		}
		if waits {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the load neither finished nor waited for the settlement")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Settlement, second statement: the hand-offs become unknown (the first row).
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	_, serr := tx.Exec(sctx, `UPDATE herald_recipients SET state = 'unknown'
		WHERE campaign = 'nov' AND key = $1 AND state = 'sending'`, items[0].Key)
	if serr == nil {
		serr = tx.Commit(sctx)
	}
	if !done {
		loadErr = <-loaded
	}
	if serr != nil || loadErr != nil {
		t.Fatalf("settlement beside a load: settlement %v; load %v", serr, loadErr)
	}
	got := journaltest.Counts(t, s, "nov")
	if got[journal.Unknown] != 1 || got[journal.Pending] != 1 || got[journal.Claimed] != 1 {
		t.Fatalf("counts = %v, want one unknown, one pending, one claimed", got)
	}
}
