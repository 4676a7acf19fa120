package campaign

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

func smtpBlock(srv *smtptest.Server) string {
	return fmt.Sprintf("  kind: smtp\n  host: %s\n  port: %d\n  tls: none\n  timeout: 5s\n", srv.Host(), srv.Port())
}

// received counts deliveries per envelope recipient.
func received(srv *smtptest.Server) map[string]int {
	got := map[string]int{}
	for _, m := range srv.Messages() {
		for _, to := range m.To {
			got[strings.ToLower(to)]++
		}
	}
	return got
}

func TestSendFileProvider(t *testing.T) {
	f := newFixture(t, 25, "  kind: file\n  dir: outbox\n", "")
	sum, err := f.send(-1, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 25 || sum.Total != 25 {
		t.Fatalf("summary %s, want 25 sent", sum.JSON())
	}
	files, _ := filepath.Glob(filepath.Join(f.dir, "outbox", "*.eml"))
	if len(files) != 25 {
		t.Fatalf("outbox holds %d files, want 25", len(files))
	}
	checkAddsUp(t, sum)
	// A re-run sends nothing and counts everything as already done.
	sum, err = f.send(-1, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 0 || sum.Skipped.AlreadyDone != 25 {
		t.Fatalf("re-run: %s, want 0 sent and 25 already done", sum.JSON())
	}
	files, _ = filepath.Glob(filepath.Join(f.dir, "outbox", "*.eml"))
	if len(files) != 25 {
		t.Fatalf("re-run wrote more files: %d", len(files))
	}
}

func TestSendRetriesTemporaryThenDelivers(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(rcpt string, attempt int) *gosmtp.SMTPError {
		if attempt == 1 {
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}})
	f := newFixture(t, 10, smtpBlock(srv), "")
	sum, err := f.send(-1, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 10 || sum.Deferred != 0 {
		t.Fatalf("summary %s, want all 10 sent after a retry", sum.JSON())
	}
	for i := 1; i <= 10; i++ {
		if n := received(srv)[fmt.Sprintf("r%04d@example.org", i)]; n != 1 {
			t.Errorf("r%04d received %d times, want 1", i, n)
		}
	}
}

func TestSendPermanentFailureNotRetriedAndSuppressed(t *testing.T) {
	var rcpts atomic.Int64
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(rcpt string, attempt int) *gosmtp.SMTPError {
		if rcpt == "r0003@example.org" {
			rcpts.Add(1)
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	f := newFixture(t, 5, smtpBlock(srv), "")
	sum, err := f.send(-1, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 4 || sum.Failed != 1 {
		t.Fatalf("summary %s, want 4 sent 1 failed", sum.JSON())
	}
	if rcpts.Load() != 1 {
		t.Fatalf("the 550 recipient was tried %d times, want 1", rcpts.Load())
	}
	// Not retried on a re-run, and on the suppression list.
	sum, err = f.send(-1, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rcpts.Load() != 1 {
		t.Fatalf("the 550 recipient was retried by a re-run")
	}
	if sum.Failed != 0 || sum.Skipped.AlreadyDone != 5 {
		t.Fatalf("re-run summary %s: want all five already done (four sent, one failed)", sum.JSON())
	}
	st, err := journal.Open(t.Context(), f.store(), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ok, err := st.IsSuppressed(t.Context(), "r0003@example.org"); err != nil || !ok {
		t.Fatalf("hard bounce not suppressed: %v %v", ok, err)
	}
	var row journal.Row
	_ = st.EachRow(t.Context(), "test-campaign", []journal.State{journal.Failed}, func(r journal.Row) error { row = r; return nil })
	if row.Code != 550 || row.Enhanced != "5.1.1" || !strings.Contains(row.Reason, "no such user") {
		t.Fatalf("failed row lost the provider's answer: %+v", row)
	}
}

func TestSendFatalStopsRun(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Username: "u", Password: "right"})
	f := newFixture(t, 20, smtpBlock(srv)+"  username: u\n  password_env: TEST_SMTP_PASSWORD\n", "")
	c := f.load()
	sum, err := Send(t.Context(), c, SendOptions{Store: f.store(), Limit: -1}, testEnv(map[string]string{"TEST_SMTP_PASSWORD": "wrong"}))
	var se *StopError
	if !errors.As(err, &se) || se.Reason != "fatal" {
		t.Fatalf("err = %v, want a fatal stop", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if sum.Failed != 0 || sum.Sent != 0 || sum.Pending != 20 {
		t.Fatalf("summary %s, want nothing failed and all 20 pending", sum.JSON())
	}
	checkAddsUp(t, sum)
	if c := f.counts(); c[journal.Failed] != 0 || c[journal.Sending] != 0 {
		t.Fatalf("journal after a fatal error: %v", c)
	}
	if sum.Stopped != "fatal" {
		t.Fatalf("summary does not say why it stopped: %s", sum.JSON())
	}
}

func TestSendWorkersRunInParallel(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{DataDelay: 100 * time.Millisecond})
	f := newFixture(t, 8, smtpBlock(srv), "")
	sum, err := f.send(-1, SendOptions{Workers: 8})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 8 {
		t.Fatalf("summary %s", sum.JSON())
	}
	// A connection is dialled only when every open one is busy: with slow answers,
	// parallel workers need several at once; one after the other would need one.
	if s := srv.Sessions(); s < 4 {
		t.Fatalf("%d session(s) for 8 slow messages with 8 workers: workers do not run in parallel", s)
	}
}

func TestSendReusesConnections(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, 60, smtpBlock(srv), "")
	if _, err := f.send(-1, SendOptions{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	if srv.Accepted() != 60 {
		t.Fatalf("accepted %d", srv.Accepted())
	}
	if s := srv.Sessions(); s > 2 {
		t.Fatalf("60 messages with 2 workers used %d connections, want ≤ 2", s)
	}
}

func TestSendLimitThenResume(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, 30, smtpBlock(srv), "")
	sum, err := f.send(10, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 10 || sum.Pending != 20 {
		t.Fatalf("--limit 10: %s", sum.JSON())
	}
	checkAddsUp(t, sum)
	sum, err = f.send(0, SendOptions{})
	if err != nil || sum.Sent != 0 || sum.Pending != 20 {
		t.Fatalf("--limit 0: %s %v", sum.JSON(), err)
	}
	sum, err = f.send(-1, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 20 || sum.Skipped.AlreadyDone != 10 {
		t.Fatalf("resume: %s", sum.JSON())
	}
	for i := 1; i <= 30; i++ {
		if n := received(srv)[fmt.Sprintf("r%04d@example.org", i)]; n != 1 {
			t.Errorf("r%04d received %d times, want 1", i, n)
		}
	}
}

func TestDryRunSendsAndJournalsNothing(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, 12, smtpBlock(srv)+"  username: u\n  password_env: UNSET_VARIABLE\n", "")
	sum, err := f.send(-1, SendOptions{DryRun: true})
	if err != nil {
		t.Fatalf("dry run needs no credentials: %v", err)
	}
	if sum.Pending != 12 || sum.Sent != 0 || !sum.DryRun {
		t.Fatalf("dry run: %s", sum.JSON())
	}
	if srv.Sessions() != 0 {
		t.Fatalf("dry run connected %d time(s)", srv.Sessions())
	}
	if _, err := os.Stat(f.store()); err == nil {
		t.Fatalf("dry run created the journal")
	}
}

func TestSendSkipsInvalidDuplicateSuppressed(t *testing.T) {
	f := newFixture(t, 0, "  kind: file\n  dir: outbox\n", "suppress: [bounced.txt]\n")
	f.write("subscribers.csv", "email,first_name\na@example.org,A\nnot-an-address,B\nA@Example.org,C\nb@example.org,D\nc@example.org,E\n")
	f.write("bounced.txt", "# old bounces\nb@example.org\n")
	var warns []Warning
	sum, err := f.send(-1, SendOptions{DryRun: true, Warn: func(w Warning) { warns = append(warns, w) }})
	if err != nil {
		t.Fatal(err)
	}
	want := Skipped{Invalid: 1, Duplicate: 1, Suppressed: 1}
	if sum.Skipped != want || sum.Pending != 2 || sum.Total != 5 {
		t.Fatalf("dry run: %s", sum.JSON())
	}
	if len(warns) != 2 || warns[0].Line != 3 || warns[1].Line != 4 || !strings.Contains(warns[1].Reason, "line 2") {
		t.Fatalf("warnings %+v: want line 3 invalid and line 4 duplicate of line 2", warns)
	}
	sum, err = f.send(-1, SendOptions{})
	if err != nil || sum.Sent != 2 {
		t.Fatalf("send: %s %v", sum.JSON(), err)
	}
	checkAddsUp(t, sum)
}

func TestSendRefusesBadInputBeforeSending(t *testing.T) {
	for name, c := range map[string]struct{ file, content, want string }{
		"missing column":   {"template.txt", "Hi {{ .frist_name }} {{ .UnsubscribeURL }}", "frist_name"},
		"no unsubscribe":   {"template.txt", "Hi {{ .first_name }}", "UnsubscribeURL"},
		"template syntax":  {"template.txt", "Hi {{ .first_name ", "template.txt"},
		"unterminated csv": {"subscribers.csv", "email,first_name\n\"a@example.org,A\n", "subscribers.csv"},
		"no email column":  {"subscribers.csv", "mail,first_name\na@example.org,A\n", "email"},
	} {
		t.Run(name, func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.Options{})
			f := newFixture(t, 3, smtpBlock(srv), "")
			f.write(c.file, c.content)
			_, err := f.send(-1, SendOptions{})
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %q", err, c.want)
			}
			if srv.Sessions() != 0 {
				t.Fatalf("connected before refusing")
			}
		})
	}
}

func TestSendDeferredThenGiveUp(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(string, int) *gosmtp.SMTPError {
		return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
	}})
	f := newFixture(t, 2, smtpBlock(srv), "")
	sum, err := f.send(-1, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Deferred != 2 {
		t.Fatalf("summary %s, want 2 deferred", sum.JSON())
	}
	// Two days later, still failing: retried (deferred again); a week later: failed.
	c := f.load()
	later := func(d time.Duration) Env {
		e := testEnv(nil)
		e.Now = func() time.Time { return time.Now().Add(d) }
		return e
	}
	sum, err = Send(t.Context(), c, SendOptions{Store: f.store(), Limit: -1}, later(48*time.Hour))
	if err != nil || sum.Deferred != 2 {
		t.Fatalf("two days later: %s %v", sum.JSON(), err)
	}
	sum, err = Send(t.Context(), c, SendOptions{Store: f.store(), Limit: -1}, later(7*24*time.Hour))
	if err != nil || sum.Failed != 2 {
		t.Fatalf("a week later: %s %v, want 2 failed (give_up_after 120h)", sum.JSON(), err)
	}
	if n := f.counts()[journal.Failed]; n != 2 {
		t.Fatalf("journal has %d failed", n)
	}
}

func TestResendUnknownAsksFirst(t *testing.T) {
	drop := smtptest.Start(t, smtptest.Options{DropAfterData: true})
	f := newFixture(t, 3, smtpBlock(drop), "")
	sum, err := f.send(-1, SendOptions{})
	if err != nil || sum.Unknown != 3 {
		t.Fatalf("first run: %s %v, want 3 unknown", sum.JSON(), err)
	}
	var asked Plan
	_, err = f.send(-1, SendOptions{ResendUnknown: true, Confirm: func(p Plan) bool { asked = p; return false }})
	if !errors.Is(err, ErrDeclined) || asked.ToSend != 3 {
		t.Fatalf("declined resend: %v, asked about %d", err, asked.ToSend)
	}
	if c := f.counts(); c[journal.Unknown] != 3 {
		t.Fatalf("a declined --resend-unknown changed the journal: %v", c)
	}
	ok := smtptest.Start(t, smtptest.Options{})
	f.write("campaign.yaml", strings.Replace(mustRead(t, f.path), smtpBlock(drop), smtpBlock(ok), 1))
	sum, err = f.send(-1, SendOptions{ResendUnknown: true, Confirm: func(Plan) bool { return true }})
	if err != nil || sum.Sent != 3 {
		t.Fatalf("confirmed resend: %s %v", sum.JSON(), err)
	}
	if ok.Accepted() != 3 {
		t.Fatalf("the relay got %d messages", ok.Accepted())
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A template that fails for a row about to be sent stops send before anything is sent
// (a *ConfigError naming the line); nothing is journalled as failed, and once the row is
// fixed the next run sends everyone (issue 13 item 2).
func TestSendRefusesUpFrontWhenARowCannotBeRendered(t *testing.T) {
	f := newFixture(t, 4, "  kind: file\n  dir: outbox", "")
	f.write("campaign.yaml", strings.Replace(mustRead(t, f.path), `subject: "Hi {{ .first_name }}"`,
		`subject: '{{ printf "%c" (index .first_name 0) }} news'`, 1))
	f.write("subscribers.csv", "email,first_name\na@example.org,Ann\nb@example.org,\nc@example.org,Cy\n")
	sum, err := f.send(-1, SendOptions{})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "nothing was sent") {
		t.Fatalf("err = %v, want a ConfigError naming line 3", err)
	}
	if sum.Sent != 0 {
		t.Fatalf("sent %d", sum.Sent)
	}
	if n := len(outboxFiles(t, f)); n != 0 {
		t.Fatalf("%d message(s) written", n)
	}
	if c := f.counts(); c[journal.Failed]+c[journal.Sent]+c[journal.Sending] != 0 {
		t.Fatalf("journal %v after a refused run", c)
	}
	// With --limit 1 only the first row is about to be sent: it goes.
	if sum, err := f.send(1, SendOptions{}); err != nil || sum.Sent != 1 {
		t.Fatalf("--limit 1: %v, %s", err, sum.JSON())
	}
	f.write("subscribers.csv", "email,first_name\na@example.org,Ann\nb@example.org,Bo\nc@example.org,Cy\n")
	sum, err = f.send(-1, SendOptions{})
	if err != nil || sum.Sent != 2 || sum.Skipped.AlreadyDone != 1 {
		t.Fatalf("after the fix: %v, %s; want 2 sent, 1 already done", err, sum.JSON())
	}
}

func outboxFiles(t *testing.T, f *fixture) []os.DirEntry {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(f.dir, "outbox"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return ents
}

// A store that cannot be used stops the run with reason "store" in the summary
// (issue 13 item 6).
func TestSendStoreThatCannotBeUsed(t *testing.T) {
	f := newFixture(t, 3, "  kind: file\n  dir: outbox", "")
	f.write("herald.db", strings.Repeat("this is not a database\n", 200))
	sum, err := f.send(-1, SendOptions{})
	var se *StopError
	if !errors.As(err, &se) || se.Reason != StopStore {
		t.Fatalf("err = %v, want a store stop", err)
	}
	if sum.Stopped != StopStore || !strings.Contains(sum.Error, "herald.db") {
		t.Fatalf("summary %s: want stopped store and an error naming the store", sum.JSON())
	}
	if sum.Sent != 0 || len(outboxFiles(t, f)) != 0 {
		t.Fatalf("sent with a broken store: %s", sum.JSON())
	}
}
