package journal_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/journal/journaltest"
	"github.com/heraldmail/herald/campaign/journal/pgtest"
)

// sendAll records a run of campaign that sent to every address (provider id "<addr>").
func sendAll(t *testing.T, s journal.Store, campaign string, addrs ...string) {
	t.Helper()
	ctx := context.Background()
	r, err := s.BeginRun(ctx, journal.RunSpec{Campaign: campaign, Host: "test-host", PID: 1})
	if err != nil {
		t.Fatal(err)
	}
	var items []journal.Item
	for i, a := range addrs {
		items = append(items, journal.Item{Key: a, Email: a, Line: i + 2, Fields: []string{a, "x"}})
	}
	journaltest.Load(t, r, "h", items)
	claimed, err := r.Claim(ctx, len(items))
	if err != nil || len(claimed) != len(items) {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	for _, it := range claimed {
		if err := r.Handoff(ctx, it.Key)(); err != nil {
			t.Fatal(err)
		}
		r.Record(journal.Outcome{Key: it.Key, State: journal.Sent, ProviderID: "<" + it.Key + ">", Code: 250})
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.End(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

func TestRecordBounceSQLite(t *testing.T) {
	testRecordBounce(t, filepath.Join(t.TempDir(), "herald.db"))
}

func TestRecordBouncePostgres(t *testing.T) {
	testRecordBounce(t, pgtest.URL(t))
}

// testRecordBounce: a hard bounce turns a sent recipient failed with the DSN's codes
// and suppresses the address; the same bounce again changes nothing; a complaint
// suppresses once; lookups by address and by Message-ID find the recipient.
func testRecordBounce(t *testing.T, location string) {
	ctx := context.Background()
	s := journaltest.Open(t, location, nil)
	sendAll(t, s, "nov", "ann@example.com", "bea@example.com")
	b, ok := s.(journal.Bouncer)
	if !ok {
		t.Fatalf("the %s store is not a journal.Bouncer", s.Kind())
	}
	if ok, err := b.Mailed(ctx, "nov", "Ann@Example.com"); err != nil || !ok {
		t.Fatalf("Mailed = %v, %v", ok, err)
	}
	if ok, _ := b.Mailed(ctx, "nov", "bob@example.com"); ok {
		t.Fatal("Mailed reports a recipient never mailed")
	}
	c, e, ok, err := b.ByProviderID(ctx, "ann@example.com")
	if err != nil || !ok || c != "nov" || e != "ann@example.com" {
		t.Fatalf("ByProviderID = %q %q %v %v", c, e, ok, err)
	}
	bounce := journal.Bounce{Code: 550, Enhanced: "5.1.1", Reason: "550 5.1.1 <ann@example.com>: user unknown"}
	changed, err := b.RecordBounce(ctx, "nov", "Ann@Example.com", bounce)
	if err != nil || !changed {
		t.Fatalf("first RecordBounce = %v, %v; want a change", changed, err)
	}
	var got journal.Row
	if err := s.EachRow(ctx, "nov", []journal.State{journal.Failed}, func(r journal.Row) error { got = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if got.Email != "ann@example.com" || got.Code != 550 || got.Enhanced != "5.1.1" || got.Reason != bounce.Reason {
		t.Fatalf("failed row after the bounce: %+v", got)
	}
	if sup, _ := s.IsSuppressed(ctx, "ann@example.com"); !sup {
		t.Fatal("the bounced address is not suppressed")
	}
	if changed, err := b.RecordBounce(ctx, "nov", "ann@example.com", bounce); err != nil || changed {
		t.Fatalf("second RecordBounce = %v, %v; want no change", changed, err)
	}
	if n := journaltest.Counts(t, s, "nov"); n[journal.Failed] != 1 || n[journal.Sent] != 1 {
		t.Fatalf("counts %v", n)
	}
	if changed, err := b.RecordComplaint(ctx, "nov", "bea@example.com", "abuse report"); err != nil || !changed {
		t.Fatalf("RecordComplaint = %v, %v", changed, err)
	}
	if changed, _ := b.RecordComplaint(ctx, "nov", "bea@example.com", "abuse report"); changed {
		t.Fatal("a second complaint changed something")
	}
	if n := journaltest.Counts(t, s, "nov"); n[journal.Sent] != 1 {
		t.Fatalf("a complaint changed the recipient's state: %v", n)
	}
}
