package bounces

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/unsubscribe"
)

// sentStore returns a store where campaign sent to every address.
func sentStore(t *testing.T, campaign string, addrs ...string) journal.Store {
	t.Helper()
	st, err := journal.Open(context.Background(), filepath.Join(t.TempDir(), "herald.db"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	addSent(t, st, campaign, addrs...)
	return st
}

// addSent records a run of campaign that sent to every address.
func addSent(t *testing.T, st journal.Store, campaign string, addrs ...string) {
	t.Helper()
	ctx := context.Background()
	r, err := st.BeginRun(ctx, journal.RunSpec{Campaign: campaign, Host: "test", PID: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Load(ctx, &journal.ListInfo{Columns: []string{"email"}, Total: len(addrs)}, func(add func(journal.Item) error) error {
		for i, a := range addrs {
			if err := add(journal.Item{Key: strings.ToLower(a), Email: a, Line: i + 2, Fields: []string{a}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	items, err := r.Claim(ctx, len(addrs))
	if err != nil || len(items) != len(addrs) {
		t.Fatalf("claim: %d, %v", len(items), err)
	}
	for _, it := range items {
		if err := r.Handoff(ctx, it.Key)(); err != nil {
			t.Fatal(err)
		}
		r.Record(journal.Outcome{Key: it.Key, State: journal.Sent, ProviderID: "Q" + it.Key, Code: 250})
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.End(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// journalOf returns st as the journal Process needs.
func journalOf(t *testing.T, st journal.Store) Journal {
	t.Helper()
	j, ok := st.(Journal)
	if !ok {
		t.Fatalf("the %s store does not implement bounces.Journal", st.Kind())
	}
	return j
}

func states(t *testing.T, st journal.Store, campaign string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := st.EachRow(context.Background(), campaign, nil, func(r journal.Row) error {
		out[r.Email] = string(r.State)
		if r.State == journal.Failed {
			out[r.Email] += " " + r.Enhanced
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestProcessMaildir: over the fixture mailbox, hard bounces become failed with their
// status and suppressed, the complaint suppressed, soft bounces and the rest untouched;
// a second run changes nothing.
func TestProcessMaildir(t *testing.T) {
	ctx := context.Background()
	mailed := []string{"jane@bounce.test", "bob@exim.example", "carol@gmail-like.example", "dave@fbl.example",
		"erin@qmail.example", "frank@slow.example", "gina@old.example", "harry@strict.example", "kept@ok.example"}
	st := sentStore(t, "nov", mailed...)
	mb := Maildir{Dir: filepath.Join("testdata", "maildir")}
	res, err := Process(ctx, mb, journalOf(t, st), Options{Campaign: "nov"})
	if err != nil {
		t.Fatal(err)
	}
	wantFailed := []string{"bob@exim.example", "carol@gmail-like.example", "erin@qmail.example", "gina@old.example", "jane@bounce.test"}
	if !reflect.DeepEqual(res.Failed, wantFailed) {
		t.Errorf("failed %v, want %v", res.Failed, wantFailed)
	}
	if !reflect.DeepEqual(res.Suppressed, []string{"dave@fbl.example"}) {
		t.Errorf("suppressed %v", res.Suppressed)
	}
	if res.Messages != 10 || res.HardBounces != 6 || res.SoftBounces != 1 || res.Rejected != 1 || res.Complaints != 1 || res.Unmatched != 1 || res.Other != 1 || res.AlreadyRecorded != 0 {
		t.Errorf("counts %+v", res)
	}
	got := states(t, st, "nov")
	want := map[string]string{
		"jane@bounce.test": "failed 5.1.1", "bob@exim.example": "failed 5.1.1", "carol@gmail-like.example": "failed 5.1.1",
		"erin@qmail.example": "failed 5.1.1", "gina@old.example": "failed ", "dave@fbl.example": "sent",
		"frank@slow.example": "sent", "harry@strict.example": "sent", "kept@ok.example": "sent",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("states\n got %v\nwant %v", got, want)
	}
	for _, a := range append(wantFailed, "dave@fbl.example") {
		if ok, _ := st.IsSuppressed(ctx, a); !ok {
			t.Errorf("%s is not suppressed", a)
		}
	}
	for _, a := range []string{"frank@slow.example", "harry@strict.example", "kept@ok.example", "ghost@nowhere.example"} {
		if ok, _ := st.IsSuppressed(ctx, a); ok {
			t.Errorf("%s is suppressed", a)
		}
	}
	again, err := Process(ctx, mb, journalOf(t, st), Options{Campaign: "nov"})
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Failed) != 0 || len(again.Suppressed) != 0 || again.AlreadyRecorded != 6 {
		t.Errorf("second run: %+v", again)
	}
}

// TestProcessMatchesByToken: a DSN whose recipient was rewritten (an alias) is matched
// to the right campaign and recipient by the unsubscribe token of the returned message;
// a token of another secret is not trusted.
func TestProcessMatchesByToken(t *testing.T) {
	ctx := context.Background()
	st := sentStore(t, "nov", "jane@example.org")
	addSent(t, st, "dec", "jane@example.org")
	signer, _ := unsubscribe.NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	raw, _ := os.ReadFile(filepath.Join("testdata", "maildir", "new", "1796161977.0001.postfix"))
	dsn := strings.ReplaceAll(string(raw), "jane@bounce.test", "jane.doe@alias.example")
	dsn = strings.Replace(dsn, "u2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", signer.Token("dec", "jane@example.org"), 1)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "new"), 0o755)
	os.WriteFile(filepath.Join(dir, "new", "1"), []byte(dsn), 0o644)

	other, _ := unsubscribe.NewSigner([]byte("another-secret-another-secret-xx"))
	res, err := Process(ctx, Maildir{Dir: dir}, journalOf(t, st), Options{Tokens: other})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) != 0 || res.Unmatched != 1 {
		t.Fatalf("a token of another secret matched: %+v", res)
	}
	res, err = Process(ctx, Maildir{Dir: dir}, journalOf(t, st), Options{Tokens: signer})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Failed, []string{"jane@example.org"}) {
		t.Fatalf("failed %v", res.Failed)
	}
	if got := states(t, st, "dec")["jane@example.org"]; got != "failed 5.1.1" {
		t.Errorf("dec: %s", got)
	}
	if got := states(t, st, "nov")["jane@example.org"]; got != "sent" {
		t.Errorf("nov: %s (the token names dec)", got)
	}
}

// copyDir copies the fixture Maildir into a new folder.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, sub := range []string{"new", "cur"} {
		os.MkdirAll(filepath.Join(dst, sub), 0o755)
		entries, _ := os.ReadDir(filepath.Join(src, sub))
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(src, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dst, sub, e.Name()), b, 0o644)
		}
	}
	return dst
}

// TestProcessMovesWhatItProcessed: with MoveTo, the reports about herald's recipients go
// to DIR/.Processed; the unmatched report and the other mail stay; the next run reads
// only those two and changes nothing.
func TestProcessMovesWhatItProcessed(t *testing.T) {
	ctx := context.Background()
	st := sentStore(t, "nov", "jane@bounce.test", "bob@exim.example", "carol@gmail-like.example", "dave@fbl.example",
		"erin@qmail.example", "frank@slow.example", "gina@old.example", "harry@strict.example")
	dir := copyDir(t, filepath.Join("testdata", "maildir"))
	mb := Maildir{Dir: dir, MoveTo: "Processed"}
	res, err := Process(ctx, mb, journalOf(t, st), Options{Campaign: "nov"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 10 || len(res.Failed) != 5 {
		t.Fatalf("first run: %+v", res)
	}
	moved, _ := os.ReadDir(filepath.Join(dir, ".Processed", "cur"))
	if len(moved) != 8 {
		t.Errorf("%d messages moved, want 8", len(moved))
	}
	var left []string
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			left = append(left, e.Name())
		}
	}
	want := []string{"1796161983.0007.autoreply", "1796161984.0008.unknown-rcpt"}
	if !reflect.DeepEqual(left, want) {
		t.Errorf("left in the mailbox: %v, want %v", left, want)
	}
	again, err := Process(ctx, mb, journalOf(t, st), Options{Campaign: "nov"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Messages != 2 || len(again.Failed) != 0 || again.Unmatched != 1 || again.Other != 1 {
		t.Errorf("second run: %+v", again)
	}
}
