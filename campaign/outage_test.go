package campaign

import (
	"errors"
	"strings"
	"sync"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// Issue 9, the deferred-after-outage fix: the relay stops mid-run and comes back; an
// immediate re-run delivers everyone who is not `unknown`. Connection failures are the
// relay's, not the recipient's: they do not push a recipient's next attempt out by
// max_backoff (an hour here). With two workers and two attempts, recipients run out of
// attempts before five connection failures in a row stop the run.
func TestOutageThenImmediateRerunDeliversEveryone(t *testing.T) {
	var once sync.Once
	var srv *smtptest.Server
	stopped := make(chan struct{})
	srv = smtptest.Start(t, smtptest.Options{Data: func(m smtptest.Message) *gosmtp.SMTPError {
		if srv.Accepted() >= 20 {
			once.Do(func() { go func() { srv.Stop(); close(stopped) }() })
		}
		return nil
	}})
	const n = 200
	f := newFixture(t, n, smtpBlock(srv), "")
	f.write("campaign.yaml", strings.Replace(mustRead(t, f.path),
		"retry: {attempts: 3, backoff: 1ms, max_backoff: 5ms}", "retry: {attempts: 2, backoff: 1ms, max_backoff: 1h}", 1))
	sum, err := f.send(-1, SendOptions{Workers: 2})
	var se *StopError
	if !errors.As(err, &se) || se.Reason != StopUnreachable {
		t.Fatalf("first run: %v %s, want a stop \"unreachable\"", err, sum.JSON())
	}
	checkAddsUp(t, sum)
	<-stopped
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	sum, err = f.send(-1, SendOptions{Workers: 2})
	if err != nil {
		t.Fatalf("re-run: %v %s", err, sum.JSON())
	}
	checkAddsUp(t, sum)
	c := f.counts()
	if c[journal.Sent]+c[journal.Unknown] != n {
		t.Fatalf("after the re-run the store holds %v; want everyone sent but the unknown", c)
	}
	if sum.Pending != 0 || sum.Waiting != 0 || sum.Deferred != 0 {
		t.Fatalf("re-run summary %s: want nothing pending, waiting or deferred", sum.JSON())
	}
	for to, k := range received(srv) {
		if k != 1 {
			t.Errorf("%s received %d messages", to, k)
		}
	}
}

// A deferred recipient whose retry time has not come is `waiting`, not `pending`, and
// the summary says when it is due.
func TestSummaryCountsWaitingRecipients(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(rcpt string, attempt int) *gosmtp.SMTPError {
		if rcpt == "r0002@example.org" {
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "greylisted"}
		}
		return nil
	}})
	f := newFixture(t, 5, smtpBlock(srv), "")
	f.write("campaign.yaml", strings.Replace(mustRead(t, f.path),
		"retry: {attempts: 3, backoff: 1ms, max_backoff: 5ms}", "retry: {attempts: 2, backoff: 1ms, max_backoff: 1h}", 1))
	sum, err := f.send(-1, SendOptions{})
	if err != nil || sum.Sent != 4 || sum.Deferred != 1 || sum.Waiting != 0 || sum.FirstDue == "" {
		t.Fatalf("first run: %v %s, want 4 sent, 1 deferred, its due time", err, sum.JSON())
	}
	checkAddsUp(t, sum)
	sum, err = f.send(-1, SendOptions{})
	if err != nil || sum.Sent != 0 || sum.Pending != 0 || sum.Waiting != 1 || sum.FirstDue == "" {
		t.Fatalf("second run: %v %s, want 1 waiting (not pending) with its due time", err, sum.JSON())
	}
	checkAddsUp(t, sum)
	if !strings.Contains(string(sum.JSON()), `"waiting":1`) {
		t.Fatalf("JSON %s", sum.JSON())
	}
}
