package campaign

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/unsubscribe"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
	"github.com/heraldmail/herald/templates"
)

// sequentialDryRun is the dry run as it was before it rendered on every core: one
// goroutine, each recipient's whole message built in list order. The parallel dry run
// must count and fail exactly as it does.
func sequentialDryRun(ctx context.Context, src *Source, renderer *Renderer, sum *Summary) error {
	var renderErr error
	res, err := src.Scan(ctx, func(rc *Recipient) error {
		if rc.GiveUp {
			return nil
		}
		var ae *AttachmentError
		if _, err := renderer.Message(ctx, rc); err != nil && renderErr == nil && !errors.As(err, &ae) {
			if ctx.Err() != nil {
				return err
			}
			renderErr = err
		}
		return nil
	})
	sum.Total, sum.Skipped = res.Total, res.Skipped
	sum.Pending = res.ToSend + res.GaveUp
	sum.Waiting = res.NotDue
	if err != nil {
		return err
	}
	if renderErr != nil {
		return &ConfigError{Err: renderErr}
	}
	return nil
}

// dryRunResult is what a dry run reports: the summary's counts, the warnings and the
// error.
type dryRunResult struct {
	sum   Summary
	warns []Warning
	err   string
}

// runDryRun sets up a dry run of the fixture's campaign as Send does (the store read when
// it exists, its secret, the list's columns, the renderer) and runs it with run.
func runDryRun(t *testing.T, ctx context.Context, f *fixture, env Env, run func(context.Context, *Source, *Renderer, *Summary) error) dryRunResult {
	t.Helper()
	c := f.load()
	var store journal.Store
	if storeExists(f.store()) {
		var err error
		if store, err = OpenStore(ctx, f.store(), journal.Options{Now: env.Now}); err != nil {
			t.Fatal(err)
		}
		defer store.Close()
	}
	secret, err := Secret(ctx, store, env.getenv)
	if err != nil {
		t.Fatal(err)
	}
	var res dryRunResult
	src := &Source{Campaign: c, Now: env.Now, Warn: func(w Warning) { res.warns = append(res.warns, w) }}
	if store != nil {
		src.Journal = store
	}
	cols, err := src.Columns()
	if err != nil {
		t.Fatal(err)
	}
	rd, err := NewRenderer(ctx, c, cols, secret, env.Now)
	if err != nil {
		t.Fatal(err)
	}
	sum := &Summary{Campaign: c.Name, DryRun: true}
	if err := run(ctx, src, rd, sum); err != nil {
		res.err = err.Error()
	}
	res.sum = *sum
	return res
}

// checkLikeSequential runs the dry run of f both ways, the parallel one with several
// worker counts, and wants the same counts, warnings and error.
func checkLikeSequential(t *testing.T, f *fixture, env Env) dryRunResult {
	t.Helper()
	want := runDryRun(t, t.Context(), f, env, sequentialDryRun)
	for _, workers := range []int{1, 2, 7} {
		got := runDryRun(t, t.Context(), f, env, func(ctx context.Context, src *Source, rd *Renderer, sum *Summary) error {
			return dryRunWith(ctx, src, rd, sum, workers)
		})
		if got.sum != want.sum {
			t.Errorf("%d workers: summary %s, want %s", workers, got.sum.JSON(), want.sum.JSON())
		}
		if got.err != want.err {
			t.Errorf("%d workers: error %q, want %q", workers, got.err, want.err)
		}
		if fmt.Sprint(got.warns) != fmt.Sprint(want.warns) {
			t.Errorf("%d workers: warnings %v, want %v", workers, got.warns, want.warns)
		}
	}
	return want
}

// A list of invalid, duplicate and suppressed rows among many good ones (more than a
// few batches of the dry run's queues) is counted exactly as the sequential dry run
// counts it, with the same warnings in list order.
func TestDryRunCountsLikeSequential(t *testing.T) {
	f := newFixture(t, 0, "  kind: file\n  dir: outbox\n", "suppress: [bounced.txt]\n")
	var list, bounced strings.Builder
	list.WriteString("email,first_name\n")
	for i := 1; i <= 3000; i++ {
		switch {
		case i%97 == 0:
			fmt.Fprintf(&list, "not-an-address-%d,Bad\n", i)
		case i%89 == 0:
			fmt.Fprintf(&list, "R%04d@Example.org,Again\n", i-1)
		default:
			fmt.Fprintf(&list, "r%04d@example.org,Name%d\n", i, i)
		}
		if i%53 == 0 {
			fmt.Fprintf(&bounced, "r%04d@example.org\n", i)
		}
	}
	f.write("subscribers.csv", list.String())
	f.write("bounced.txt", bounced.String())
	got := checkLikeSequential(t, f, testEnv(nil))
	if got.err != "" || got.sum.Skipped.Invalid == 0 || got.sum.Skipped.Duplicate == 0 || got.sum.Skipped.Suppressed == 0 {
		t.Fatalf("the list should have rows of every kind and no error: %s %q", got.sum.JSON(), got.err)
	}
	checkAddsUp(t, &got.sum)
}

// After a send that sent, failed and deferred recipients, a dry run when the retries are
// due, before they are due and a week later (given up on) counts exactly as the
// sequential one.
func TestDryRunCountsJournalLikeSequential(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(rcpt string, _ int) *gosmtp.SMTPError {
		switch {
		case strings.HasSuffix(rcpt, "3@example.org"):
			return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		case strings.HasSuffix(rcpt, "7@example.org"):
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	f := newFixture(t, 400, smtpBlock(srv), "")
	sum, err := f.send(100, SendOptions{})
	if err != nil || sum.Deferred == 0 || sum.Failed == 0 || sum.Sent == 0 {
		t.Fatalf("send: %v %s", err, sum.JSON())
	}
	counts := f.counts()
	done := counts[journal.Sent] + counts[journal.Failed]
	due := checkLikeSequential(t, f, testEnv(nil))
	if due.sum.Waiting != 0 || due.sum.Pending != 400-done {
		t.Errorf("dry run after the retry delay: %s", due.sum.JSON())
	}
	earlier := testEnv(nil)
	earlier.Now = func() time.Time { return time.Now().Add(-time.Hour) }
	notDue := checkLikeSequential(t, f, earlier)
	if notDue.sum.Waiting != counts[journal.Deferred] || notDue.sum.Skipped.AlreadyDone != done {
		t.Errorf("dry run before the retry is due: %s", notDue.sum.JSON())
	}
	later := testEnv(nil)
	later.Now = func() time.Time { return time.Now().Add(7 * 24 * time.Hour) }
	gaveUp := checkLikeSequential(t, f, later)
	if gaveUp.sum.Waiting != 0 || gaveUp.sum.Pending != 400-done {
		t.Errorf("dry run a week later: %s", gaveUp.sum.JSON())
	}
}

// Recipients whose own attachment is missing are not errors of the dry run (validate
// lists them; a send leaves them pending); one whose file is there is built in full.
func TestDryRunAttachmentsLikeSequential(t *testing.T) {
	f := newFixture(t, 0, "  kind: file\n  dir: outbox\n", "attachment_column: invoice\n")
	var list strings.Builder
	list.WriteString("email,first_name,invoice\n")
	for i := 1; i <= 500; i++ {
		inv := ""
		switch i % 3 {
		case 1:
			inv = fmt.Sprintf("invoices/%d.pdf", i)
		case 2:
			inv = "invoices/missing.pdf"
		}
		fmt.Fprintf(&list, "r%04d@example.org,Name%d,%s\n", i, i, inv)
	}
	f.write("subscribers.csv", list.String())
	if err := os.MkdirAll(filepath.Join(f.dir, "invoices"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 500; i += 3 {
		f.write(fmt.Sprintf("invoices/%d.pdf", i), "%PDF-1.4 invoice")
	}
	got := checkLikeSequential(t, f, testEnv(nil))
	if got.err != "" || got.sum.Pending != 500 {
		t.Fatalf("dry run: %s %q", got.sum.JSON(), got.err)
	}
}

// The error is the first failing row's in list order, also when later rows fail too,
// fail sooner (the first bad row takes long to render, the later ones fail at once) and
// several workers race: the list is still counted to its end.
func TestDryRunNamesFirstFailingRow(t *testing.T) {
	f := newFixture(t, 4000, "  kind: file\n  dir: outbox\n", "")
	// Row 1,800 (line 1,801) loops a while and then fails on a missing template; rows
	// 1,900, 2,500 and 3,999 fail at once.
	f.write("template.txt", `Hello {{ .first_name }}
{{ if eq .first_name "Name1800" }}{{ range 2000000 }}{{ end }}{{ template "missing" }}{{ end }}
{{- if or (eq .first_name "Name1900") (eq .first_name "Name2500") (eq .first_name "Name3999") }}{{ template "missing" }}{{ end }}
Unsubscribe: {{ .UnsubscribeURL }}
`)
	got := checkLikeSequential(t, f, testEnv(nil))
	if !strings.Contains(got.err, "line 1801 (r1800@example.org)") {
		t.Fatalf("error %q: want line 1801 named", got.err)
	}
	if got.sum.Total != 4000 || got.sum.Pending != 4000 {
		t.Fatalf("dry run: %s", got.sum.JSON())
	}
	// Through Send: a *ConfigError.
	_, err := f.send(-1, SendOptions{DryRun: true})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "line 1801 (r1800@example.org)") {
		t.Fatalf("Send = %v, want a *ConfigError naming line 1801", err)
	}
}

// A row whose To name or headers cannot be written fails the dry run as it fails the send:
// here an unsubscribe URL too long for its header line, for one recipient.
func TestDryRunChecksWhatTheBuilderRefuses(t *testing.T) {
	f := newFixture(t, 0, "  kind: file\n  dir: outbox\n", "")
	// An unsubscribe base URL that leaves room for the token of a short address only.
	short, long := "short@example.org", strings.Repeat("x", 40)+"@example.org"
	signer, err := unsubscribe.NewSigner(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	base := "https://example.com/"
	// (minus one for the "/" that then separates the token)
	base += strings.Repeat("a", templates.MaxUnsubscribeURL-1-len(unsubscribe.URL(base, signer.Token("test-campaign", short))))
	f.write("campaign.yaml", strings.Replace(mustRead(t, f.path), `unsubscribe: {url: "https://example.com/u"}`,
		`unsubscribe: {url: "`+base+`"}`, 1))
	f.write("subscribers.csv", "email,first_name\n"+short+",A\n"+long+",B\n"+short+"x,C\n")
	got := checkLikeSequential(t, f, testEnv(nil))
	if !strings.Contains(got.err, "line 3") || !strings.Contains(got.err, "unsubscribe URL is") {
		t.Fatalf("error %q: want line 3's unsubscribe URL refused", got.err)
	}
}

// An interrupt stops the dry run at once while every worker is in the middle of a render
// that loops without writing and the list reader waits for room in the queue.
func TestDryRunStopsWhileWorkersAreStuck(t *testing.T) {
	f := newFixture(t, 0, "  kind: file\n  dir: outbox\n", "")
	// Every 50th row renders for seconds without writing (a list of them would take
	// minutes); after the stop, each worker finishes the render it is in and quits.
	var list strings.Builder
	list.WriteString("email,first_name,slow\n")
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&list, "r%04d@example.org,Name%d,%v\n", i, i, i%50 == 1)
	}
	f.write("subscribers.csv", list.String())
	f.write("template.txt", `Hello {{ .first_name }}
{{ if eq .slow "true" }}{{ range 50000000 }}{{ end }}{{ end }}
Unsubscribe: {{ .UnsubscribeURL }}
`)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		res dryRunResult
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		res := runDryRun(t, ctx, f, testEnv(nil), func(ctx context.Context, src *Source, rd *Renderer, sum *Summary) error {
			return dryRunWith(ctx, src, rd, sum, 2)
		})
		done <- result{res, time.Now()}
	}()
	// Each stuck render takes seconds, and they come more often than the queues are
	// long; should the stop come before the workers are stuck, the run stops all the
	// same.
	time.Sleep(500 * time.Millisecond)
	cancel()
	stopped := time.Now()
	select {
	case r := <-done:
		if r.res.err != context.Canceled.Error() {
			t.Fatalf("error %q, want %q", r.res.err, context.Canceled)
		}
		if r.res.sum.Total >= 5000 {
			t.Errorf("the list was read to its end (%d rows) while no worker could take more", r.res.sum.Total)
		}
		if d := r.at.Sub(stopped); d > 5*time.Second {
			t.Errorf("stopped %s after the cancel", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dry run still running 20 s after the cancel")
	}
}

// Through Send, an interrupt while the last rows render is an interrupted stop (exit
// 130, "nothing was sent"), with every row counted.
func TestDryRunInterruptedIsAStop(t *testing.T) {
	f := newFixture(t, 0, "  kind: file\n  dir: outbox\n", "")
	// The last ten rows render for seconds each without writing.
	var list strings.Builder
	list.WriteString("email,first_name,slow\n")
	for i := 1; i <= 50; i++ {
		fmt.Fprintf(&list, "r%04d@example.org,Name%d,%v\n", i, i, i > 40)
	}
	f.write("subscribers.csv", list.String())
	f.write("template.txt", `Hello {{ .first_name }}
{{ if eq .slow "true" }}{{ range 50000000 }}{{ end }}{{ end }}
Unsubscribe: {{ .UnsubscribeURL }}
`)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		sum *Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := Send(ctx, f.load(), SendOptions{DryRun: true, Limit: -1, Store: f.store()}, testEnv(nil))
		done <- result{sum, err}
	}()
	time.Sleep(500 * time.Millisecond)
	cancel()
	select {
	case r := <-done:
		var se *StopError
		if !errors.As(r.err, &se) || se.Reason != StopInterrupted || !strings.Contains(r.err.Error(), "nothing was sent") {
			t.Fatalf("Send = %v, want an interrupted stop of a dry run", r.err)
		}
		if r.sum.Stopped != StopInterrupted {
			t.Errorf("summary %s: want stopped interrupted", r.sum.JSON())
		}
		checkAddsUp(t, r.sum)
	case <-time.After(20 * time.Second):
		t.Fatal("dry run still running 20 s after the cancel")
	}
}

// The dedupe table of a first scan is sized from the list file's size: the estimate is
// at least the rows (no growth by doubling) and not far above them, also when the rows
// grow longer down the list.
func TestEstimateRows(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct {
		rows int
		row  func(i int) string
	}{
		"bench list": {200000, func(i int) string {
			return fmt.Sprintf("user%07d@example.org,Name%d,Name%d Surname,City%d\n", i, i, i, i%100)
		}},
		"rows grow longer": {60000, func(i int) string {
			return fmt.Sprintf("u%d@example.org,%s\n", i, strings.Repeat("x", i/1000))
		}},
		"small": {100, func(i int) string { return fmt.Sprintf("u%d@example.org,x\n", i) }},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".csv")
			var b strings.Builder
			b.WriteString("email,name\n")
			for i := range c.rows {
				b.WriteString(c.row(i))
			}
			if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := estimateRows(f)
			if b.Len() < 1<<20 {
				if got != 0 {
					t.Fatalf("estimate %d for a list of %d bytes: want none", got, b.Len())
				}
				return
			}
			if got < c.rows || got > c.rows*3/2 {
				t.Fatalf("estimate %d rows, have %d", got, c.rows)
			}
		})
	}
}

// A recipient with a file of its own is built in full, and what the builder refuses for
// it is the dry run's error as for any other recipient: here an empty body (the template
// shows nothing without a first name), which only the build with the file finds.
func TestDryRunBuildsRecipientsWithTheirOwnFile(t *testing.T) {
	f := newFixture(t, 0, "  kind: file\n  dir: outbox\n", "attachment_column: invoice\n")
	f.write("template.txt", "{{ if .first_name }}Hello {{ .first_name }}\nUnsubscribe: {{ .UnsubscribeURL }}{{ end }}")
	f.write("subscribers.csv", "email,first_name,invoice\nr1@example.org,Ann,inv.pdf\nr2@example.org,,inv.pdf\nr3@example.org,Bob,\n")
	f.write("inv.pdf", "%PDF-1.4 invoice")
	got := checkLikeSequential(t, f, testEnv(nil))
	if !strings.Contains(got.err, "line 3 (r2@example.org)") {
		t.Fatalf("dry run error %q, want line 3's empty body named", got.err)
	}
}
