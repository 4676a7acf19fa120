package main

// Crash, signal, outage and lock tests of the herald binary: each runs `herald send` as
// a child process against an in-process SMTP server and checks the journal's guarantees
// (PRODUCT.md "The journal and its guarantees") from the outside, with `herald status`
// and what the server received.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// TestCrashKill9 kills `herald send` with SIGKILL at spread-out points of the run, re-runs
// it to completion and checks that nobody got the campaign twice, that everyone got it or
// is `unknown`, and that at most `workers` recipients are unknown per crash. A kill comes
// after a number of deliveries seen at the server, not after a time: the server holds
// every RCPT past that number and the workers in flight until the kill, so the run can
// neither finish first nor be killed before it got there, however busy the machine. The
// seed of the kill points is logged; HERALD_CRASH_SEED replays one.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 trials take about 10 s")
	}
	const (
		n       = 300
		workers = 4
		trials  = 6
	)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HERALD_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HERALD_CRASH_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (HERALD_CRASH_SEED=%d replays these kill points)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x6865726c64))
	for i := 0; i < trials; i++ {
		// Spread over the run, one slot per trial, at a random point of the slot: the
		// kill comes once at comes deliveries have been accepted.
		slot := (n - 2*workers) / trials
		at := 1 + i*slot + rng.IntN(slot)
		t.Run(fmt.Sprintf("trial%d", i+1), func(t *testing.T) {
			var rcpts atomic.Int32
			killed := make(chan struct{})
			var release sync.Once
			defer release.Do(func() { close(killed) })
			srv := smtptest.Start(t, smtptest.Options{
				DataDelay: 12 * time.Millisecond,
				Rcpt: func(string, int) *smtp.SMTPError {
					if int(rcpts.Add(1)) > at+workers {
						<-killed
					}
					return nil
				},
			})
			c := newCrashCampaign(t, n, srv, crashOptions{Workers: workers})
			ch := c.startSend()
			waitFor(t, time.Minute, fmt.Sprintf("%d deliveries", at), func() bool { return srv.Accepted() >= at })
			_ = ch.cmd.Process.Signal(syscall.SIGKILL) // fails only when it has ended
			r := ch.wait(t, 10*time.Second)
			release.Do(func() { close(killed) })
			if r.code != -1 {
				t.Errorf("the run ended (exit %d) before the kill after %d deliveries", r.code, at)
			}
			before := srv.Accepted()

			var recovered string
			for run := 1; ; run++ {
				r := c.send()
				if strings.Contains(r.stderr, "were being sent when an earlier run died") && recovered == "" {
					recovered = firstLine(r.stderr, "were being sent")
				}
				if r.code == 0 {
					s := r.summary(t)
					if s.Failed != 0 || s.Deferred != 0 || s.Stopped != "" {
						t.Errorf("re-run %d: %s", run, r.stdout)
					}
					break
				}
				if run == 3 {
					t.Fatalf("re-run %d: exit %d\nstdout: %s\nstderr: %s", run, r.code, r.stdout, r.stderr)
				}
			}
			st := c.checkComplete(srv, workers)
			if st.Unknown > 0 && recovered == "" {
				t.Errorf("%d unknown recipients but no re-run warned about them", st.Unknown)
			}
			t.Logf("kill after %3d deliveries: delivered at the kill %3d, unknown after re-run %d (%d of them received), total received %d",
				at, before, st.Unknown, countReceived(srv, st.inState("unknown")), srv.Accepted())
		})
	}
}

// TestCrashKill9AfterLastClaim kills a run whose every recipient is claimed and in
// flight: the next run has nothing left to send, and must still turn the dead run's
// claims into `unknown` (and say so) rather than leave them `sending`.
func TestCrashKill9AfterLastClaim(t *testing.T) {
	const n = 4
	var rcpts atomic.Int32
	hang := smtptest.Start(t, smtptest.Options{
		HangData: true,
		Rcpt: func(string, int) *smtp.SMTPError {
			rcpts.Add(1)
			return nil
		},
	})
	c := newCrashCampaign(t, n, hang, crashOptions{Workers: n})
	ch := c.startSend()
	// A recipient reaches RCPT only after its claim is committed.
	waitFor(t, 20*time.Second, "every recipient in flight", func() bool { return rcpts.Load() == n })
	ch.signal(t, syscall.SIGKILL)
	ch.wait(t, 10*time.Second)
	hang.Close()

	r := c.send()
	if r.code != 0 {
		t.Fatalf("re-run: exit %d\nstderr: %s", r.code, r.stderr)
	}
	if s := r.summary(t); s.Sent != 0 || s.Skipped.AlreadyDone != n {
		t.Errorf("re-run: want nothing sent, %d already done: %s", n, r.stdout)
	}
	if !strings.Contains(r.stderr, fmt.Sprintf("%d recipient(s) were being sent when an earlier run died", n)) {
		t.Errorf("the re-run does not warn about the %d recipients of the dead run:\n%s", n, r.stderr)
	}
	if st := c.status(); st.Sending != 0 || st.Unknown != n {
		t.Errorf("status after the re-run: %d sending, %d unknown; want 0 and %d", st.Sending, st.Unknown, n)
	}

	srv := relisten(t, hang.Addr(), smtptest.Options{})
	if r := c.send("--resend-unknown"); r.code != 0 || r.summary(t).Sent != n {
		t.Errorf("send --resend-unknown: exit %d %s\n%s", r.code, r.stdout, r.stderr)
	}
	c.checkComplete(srv, 0)
}

// TestCrashSIGINT interrupts a run: it finishes the messages in flight, records them,
// prints the summary and exits 130; a re-run completes it.
func TestCrashSIGINT(t *testing.T) {
	const n = 300
	srv := smtptest.Start(t, smtptest.Options{DataDelay: 5 * time.Millisecond})
	c := newCrashCampaign(t, n, srv, crashOptions{})
	ch := c.startSend()
	waitFor(t, 20*time.Second, "the first 40 messages", func() bool { return srv.Accepted() >= 40 })
	ch.signal(t, syscall.SIGINT)
	r := ch.wait(t, 30*time.Second)
	if r.code != 130 {
		t.Fatalf("exit %d after SIGINT, want 130\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	s := r.summary(t)
	if s.Stopped != "interrupted" {
		t.Errorf(`summary "stopped" is %q, want "interrupted": %s`, s.Stopped, r.stdout)
	}
	if s.Pending == 0 || s.Sent == 0 || s.Unknown != 0 || s.Failed != 0 {
		t.Errorf("interrupted summary: want some sent, some pending, none unknown or failed: %s", r.stdout)
	}
	if got := srv.Accepted(); got != s.Sent {
		t.Errorf("summary says %d sent, the server accepted %d", s.Sent, got)
	}
	st := c.status()
	if st.Unknown != 0 || st.Sending != 0 {
		t.Errorf("after SIGINT: %d unknown, %d sending; want none", st.Unknown, st.Sending)
	}
	if st.Sent != s.Sent || st.Pending != s.Pending {
		t.Errorf("status (sent %d, pending %d) disagrees with the summary %s", st.Sent, st.Pending, r.stdout)
	}
	t.Logf("SIGINT after %s: %d sent, %d pending", r.elapsed.Round(time.Millisecond), s.Sent, s.Pending)

	r = c.send()
	if r.code != 0 {
		t.Fatalf("re-run: exit %d\nstderr: %s", r.code, r.stderr)
	}
	if s2 := r.summary(t); s2.Sent != n-s.Sent || s2.Skipped.AlreadyDone != s.Sent {
		t.Errorf("re-run sent %d with %d already done; want %d and %d", s2.Sent, s2.Skipped.AlreadyDone, n-s.Sent, s.Sent)
	}
	if st := c.checkComplete(srv, 0); st.Sent != n {
		t.Errorf("%d sent, want %d", st.Sent, n)
	}
}

// TestCrashSIGINTWhileCounting interrupts a run while it counts a long list, before it
// sends anything: exit 130, a summary that says so and adds up, nothing sent.
func TestCrashSIGINTWhileCounting(t *testing.T) {
	const n = 300000
	srv := smtptest.Start(t, smtptest.Options{})
	c := newCrashCampaign(t, n, srv, crashOptions{})
	ch := c.startSend()
	// The journal is created just before the list is counted, which takes most of a
	// second for this list: the signal goes as soon as the journal is there (a fixed wait
	// after it could outlast the count on a fast machine).
	waitFor(t, 20*time.Second, "the journal file", func() bool {
		_, err := os.Stat(c.store)
		return err == nil
	})
	ch.signal(t, syscall.SIGINT)
	r := ch.wait(t, 30*time.Second)
	if r.code != 130 {
		t.Fatalf("exit %d after SIGINT, want 130\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	s := r.summary(t) // checks that the counts add up
	if s.Stopped != "interrupted" || s.Sent != 0 || s.Pending != s.Total {
		t.Errorf("summary of a run interrupted while counting: want stopped interrupted, all pending: %s", r.stdout)
	}
	if !strings.Contains(r.stderr, "interrupted") {
		t.Errorf("stderr does not say the run was interrupted:\n%s", r.stderr)
	}
	if srv.Sessions() != 0 {
		t.Errorf("the interrupted run connected %d times", srv.Sessions())
	}
	t.Logf("SIGINT after %s: %d of %d rows counted, all pending", r.elapsed.Round(time.Millisecond), s.Total, n)
}

// TestCrashOutage cuts the network to the server mid-run: the run gives up with exit
// 1, leaving the rest pending or deferred (and at most `workers` unknown: those whose
// data was sent when the connection was cut); once the server is back, a later run
// completes with no duplicates.
//
// The outage is a proxy that closes its listener and cuts every connection: smtptest's
// own Stop answers a message in DATA with "554 transaction failed" before it closes the
// connection, and herald rightly takes a 554 as a permanent failure.
func TestCrashOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("an outage and recovery take a few seconds")
	}
	const n, workers = 300, 4
	srv := smtptest.Start(t, smtptest.Options{DataDelay: 5 * time.Millisecond})
	proxy := startProxy(t, srv.Addr())
	c := newCrashCampaign(t, n, proxy, crashOptions{Workers: workers})
	ch := c.startSend()
	waitFor(t, 20*time.Second, "the first 50 messages", func() bool { return srv.Accepted() >= 50 })
	proxy.Cut()
	stopped := time.Now()
	r := ch.wait(t, 90*time.Second)
	took := time.Since(stopped)
	if r.code != 1 {
		t.Fatalf("exit %d after the outage, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if took > time.Minute {
		t.Errorf("the run took %s to give up after the outage", took)
	}
	s := r.summary(t)
	if s.Stopped != "unreachable" {
		t.Errorf(`summary "stopped" is %q, want "unreachable": %s`, s.Stopped, r.stdout)
	}
	if !strings.Contains(r.stderr, "unreachable") {
		t.Errorf("stderr does not say the provider is unreachable:\n%s", r.stderr)
	}
	if s.Failed != 0 || s.Unknown > workers || s.Pending+s.Deferred == 0 {
		t.Errorf("after the outage: want no failed, at most %d unknown, the rest pending or deferred: %s", workers, r.stdout)
	}
	st := c.status()
	if st.Failed != 0 || st.Sending != 0 || st.Sent != s.Sent || st.Unknown != s.Unknown || st.Deferred != s.Deferred {
		t.Errorf("status after the outage disagrees with the summary: %+v vs %s", st, r.stdout)
	}
	t.Logf("outage after %d accepted: gave up in %s; %d sent, %d deferred, %d unknown, %d pending",
		s.Sent, took.Round(time.Millisecond), s.Sent, s.Deferred, s.Unknown, s.Pending)

	// While the server is unreachable, a run gives up again and breaks nothing.
	if r := c.send(); r.code != 1 || r.summary(t).Stopped != "unreachable" {
		t.Errorf("run during the outage: exit %d, %s", r.code, r.stdout)
	}
	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	r = c.send()
	if r.code != 0 {
		t.Fatalf("run after recovery: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	c.checkComplete(srv, workers)
}

// TestCrashLock: a second send of a running campaign is refused at once, naming the
// running process; another campaign of the same store may run at the same time; the
// lock of a killed run does not block the next one.
func TestCrashLock(t *testing.T) {
	const n = 60
	srv := smtptest.Start(t, smtptest.Options{DataDelay: 50 * time.Millisecond})
	a := newCrashCampaign(t, n, srv, crashOptions{Name: "lock-a", Workers: 2})
	ch := a.startSend()
	waitFor(t, 20*time.Second, "the first message of the running send", func() bool { return srv.Accepted() >= 1 })

	second := a.send()
	if second.code == 0 {
		t.Fatalf("a second send of a running campaign succeeded:\n%s", second.stderr)
	}
	if second.elapsed > 5*time.Second {
		t.Errorf("the second send took %s to refuse", second.elapsed)
	}
	pid := strconv.Itoa(ch.cmd.Process.Pid)
	if !strings.Contains(second.stderr, "already being sent") || !strings.Contains(second.stderr, "process "+pid) {
		t.Errorf("the refusal does not name the running process %s:\n%s", pid, second.stderr)
	}
	if strings.TrimSpace(second.stdout) != "" {
		t.Errorf("the refused send printed a summary: %s", second.stdout)
	}

	// Another campaign in the same store runs alongside.
	fast := smtptest.Start(t, smtptest.Options{})
	b := newCrashCampaign(t, 20, fast, crashOptions{Name: "lock-b", Store: a.store})
	if r := b.send(); r.code != 0 || r.summary(t).Sent != 20 {
		t.Errorf("another campaign of the same store: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	select {
	case <-ch.done:
		t.Fatal("the first send ended before the checks made while it ran were over; make it slower")
	default:
	}
	if r := ch.wait(t, 30*time.Second); r.code != 0 {
		t.Fatalf("the first send: exit %d\nstderr: %s", r.code, r.stderr)
	}
	a.checkComplete(srv, 0)
	b.checkComplete(fast, 0)

	// A stale lock: kill -9 a run, the next one is not blocked.
	slow := smtptest.Start(t, smtptest.Options{DataDelay: 50 * time.Millisecond})
	k := newCrashCampaign(t, n, slow, crashOptions{Name: "lock-k", Workers: 2})
	ch = k.startSend()
	waitFor(t, 20*time.Second, "the first message of the send to kill", func() bool { return slow.Accepted() >= 2 })
	ch.signal(t, syscall.SIGKILL)
	ch.wait(t, 10*time.Second)
	r := k.send()
	if r.code != 0 {
		t.Fatalf("send after a killed send: exit %d\nstderr: %s", r.code, r.stderr)
	}
	k.checkComplete(slow, 2)
}

// TestCrashDropAfterData: a connection lost after the message data, before the
// server's answer, leaves the recipient `unknown`; a re-run does not resend it, and
// `send --resend-unknown` does.
func TestCrashDropAfterData(t *testing.T) {
	const n = 5
	// The first server drops the connection after the data of every message; the
	// first run sends one message to it. Then a normal server takes its place on the
	// same address.
	drop := smtptest.Start(t, smtptest.Options{DropAfterData: true})
	c := newCrashCampaign(t, n, drop, crashOptions{})
	r := c.send("--limit", "1")
	s := r.summary(t)
	if s.Unknown != 1 || s.Sent != 0 || s.Failed != 0 || s.Deferred != 0 {
		t.Fatalf("connection dropped after DATA: want 1 unknown and nothing else: exit %d %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	st := c.status()
	unknown := st.inState("unknown")
	if st.Unknown != 1 || len(unknown) != 1 {
		t.Fatalf("status: %d unknown (%v), want 1", st.Unknown, unknown)
	}
	for _, row := range st.Recipients {
		if row.State == "unknown" && !strings.Contains(row.Reason, "may have been accepted") {
			t.Errorf("the unknown recipient's reason does not say it may have been accepted: %q", row.Reason)
		}
	}
	drop.Close()
	srv := relisten(t, drop.Addr(), smtptest.Options{})

	// A re-run of two more does not resend the unknown one.
	r = c.send("--limit", "2")
	if r.code != 0 {
		t.Fatalf("re-run: exit %d\nstderr: %s", r.code, r.stderr)
	}
	if s := r.summary(t); s.Sent != 2 || s.Skipped.AlreadyDone != 1 || s.Pending != n-3 {
		t.Errorf("re-run --limit 2: want 2 sent, the unknown one already done, %d pending: %s", n-3, r.stdout)
	}
	got := received(srv)
	for a := range unknown {
		if got[a] != 0 {
			t.Errorf("the re-run resent the unknown recipient %s", a)
		}
	}
	if st := c.status(); st.Unknown != 1 || st.Sent != 2 {
		t.Errorf("status after the re-run: %d sent, %d unknown; want 2 and 1", st.Sent, st.Unknown)
	}

	// --resend-unknown sends it, with the rest.
	r = c.send("--resend-unknown")
	if r.code != 0 {
		t.Fatalf("send --resend-unknown: exit %d\nstderr: %s", r.code, r.stderr)
	}
	if s := r.summary(t); s.Sent != n-2 || s.Skipped.AlreadyDone != 2 || s.Unknown != 0 {
		t.Errorf("send --resend-unknown: want %d sent and 2 already done: %s", n-2, r.stdout)
	}
	if st := c.checkComplete(srv, 0); st.Sent != n {
		t.Errorf("%d sent, want %d", st.Sent, n)
	}
	// And once everything is sent, --resend-unknown finds nothing to do.
	if r := c.send("--resend-unknown"); r.code != 0 || r.summary(t).Skipped.AlreadyDone != n {
		t.Errorf("a last send --resend-unknown: exit %d %s", r.code, r.stdout)
	}
	if len(srv.Messages()) != n {
		t.Errorf("the second server received %d messages, want %d", len(srv.Messages()), n)
	}
}

// TestCrashAuthFailure: 535 to AUTH stops the run at once with exit 1 and a message
// about authentication; nobody is failed, everyone stays pending.
func TestCrashAuthFailure(t *testing.T) {
	const n = 20
	srv := smtptest.Start(t, smtptest.Options{Username: "herald", Password: "right-password"})
	c := newCrashCampaign(t, n, srv, crashOptions{
		Provider: "  username: herald\n  password_env: CRASH_TEST_SMTP_PASSWORD",
		Env:      []string{"CRASH_TEST_SMTP_PASSWORD=wrong-password"},
	})
	r := c.send()
	if r.code != 1 {
		t.Fatalf("exit %d after 535, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r.elapsed > 10*time.Second {
		t.Errorf("the run took %s to stop on a fatal error", r.elapsed)
	}
	if !strings.Contains(strings.ToLower(r.stderr), "auth") {
		t.Errorf("the message does not name authentication:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr+r.stdout, "wrong-password") {
		t.Errorf("the password appears in the output:\n%s\n%s", r.stdout, r.stderr)
	}
	s := r.summary(t)
	if s.Stopped != "fatal" || s.Sent != 0 || s.Failed != 0 || s.Deferred != 0 || s.Unknown != 0 || s.Pending != n {
		t.Errorf("summary after 535: want stopped fatal and all %d pending: %s", n, r.stdout)
	}
	st := c.status()
	if st.Failed != 0 || st.Sent != 0 || st.Unknown != 0 || st.Deferred != 0 || st.Sending != 0 || st.Pending != n {
		t.Errorf("status after 535: %+v; want all %d pending", st, n)
	}
	if srv.Accepted() != 0 {
		t.Errorf("the server accepted %d messages", srv.Accepted())
	}
}

// firstLine returns the first line of s that contains sub.
func firstLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// countReceived counts the addresses of set that srv received.
func countReceived(srv *smtptest.Server, set map[string]bool) int {
	got := received(srv)
	n := 0
	for a := range set {
		if got[a] > 0 {
			n++
		}
	}
	return n
}
