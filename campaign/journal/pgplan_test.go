package journal_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/journal/journaltest"
	"github.com/heraldmail/herald/campaign/journal/pgtest"
)

// TestPostgresGroupCommitPlans: a run's hand-offs and outcomes find their row by primary
// key, with custom and generic plans alike, when the statistics were taken before the
// rows were claimed (the planner then believes 'claimed' rare). Reading the run's
// in-flight rows, or the queue index's claimed ones, instead made each write read every
// row the run had in flight.
func TestPostgresGroupCommitPlans(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	s := journaltest.Open(t, url, nil)
	r := journaltest.Begin(t, s, "nov")
	journaltest.Load(t, r, "h", journaltest.Items("a", 0, 3000))
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ANALYZE herald_recipients`); err != nil {
		t.Fatal(err)
	}
	items, err := r.Claim(ctx, 2000)
	if err != nil || len(items) != 2000 {
		t.Fatalf("claimed %d: %v", len(items), err)
	}
	key := items[0].Key
	for _, tc := range []struct {
		name, sql string
		args      []any
	}{
		{"handoff", journal.PGHandoffSQL, []any{int64(1), "nov", key, r.ID()}},
		{"sent", journal.PGSentSQL, []any{"<id>", 250, "2.0.0", "ok", nil, int64(1), "nov", key, r.ID(), "smtp"}},
	} {
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			if _, err := conn.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
				t.Fatal(err)
			}
			rows, err := conn.Query(ctx, "EXPLAIN "+tc.sql, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			plan := strings.Join(lines, "\n")
			if !strings.Contains(plan, "herald_recipients_pkey") {
				t.Errorf("%s, %s: the plan does not find the row by primary key:\n%s", tc.name, mode, plan)
			}
		}
	}
}
