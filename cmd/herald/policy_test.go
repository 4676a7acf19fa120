package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign/journal/pgtest"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// TestSendOutsideWindowExit0: a run outside the send window sends nothing, exits 0 and
// says when the window opens; inside it, the campaign goes.
func TestSendOutsideWindowExit0(t *testing.T) {
	cf := cliCampaign(t, 6, cliFileProvider, "timezone: Europe/Paris\nwindow: {days: Mon-Fri, hours: \"09:00-17:00\"}\n")
	paris, _ := time.LoadLocation("Europe/Paris")
	now := time.Date(2026, 12, 4, 17, 30, 0, 0, paris) // Friday evening
	e := &cliEnv{now: func() time.Time { return now }}
	r := e.run(t, "send", cf, "--yes", "--json")
	if r.code != 0 || cliOutboxFiles(t, cf) != 0 {
		t.Fatalf("exit %d, %d sent: want 0 and nothing sent", r.code, cliOutboxFiles(t, cf))
	}
	sum := cliSummary(t, r)
	checkCountsAddUp(t, sum)
	if jsonCount(t, sum, "pending") != 6 || sum["next_at"] != "2026-12-07T09:00:00+01:00" {
		t.Errorf("summary %v: want 6 pending, next at Monday 09:00", sum)
	}
	if !strings.Contains(r.stderr, "outside the send window") || !strings.Contains(r.stderr, "2026-12-07T09:00:00+01:00") {
		t.Errorf("stderr %q: want the reason and when the window opens", r.stderr)
	}
	now = time.Date(2026, 12, 7, 9, 30, 0, 0, paris)
	if r := e.run(t, "send", cf, "--yes"); r.code != 0 || cliOutboxFiles(t, cf) != 6 {
		t.Fatalf("inside the window: exit %d, %d sent", r.code, cliOutboxFiles(t, cf))
	}
}

// TestSendExpiredExit0: past not_after, the rest expires: exit 0, a clear line, the
// count in the JSON and in status.
func TestSendExpiredExit0(t *testing.T) {
	cf := cliCampaign(t, 5, cliFileProvider, "not_after: \"2026-12-01T00:00:00Z\"\n")
	e := &cliEnv{now: func() time.Time { return time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC) }}
	r := e.run(t, "send", cf, "--yes", "--json")
	if r.code != 0 || cliOutboxFiles(t, cf) != 0 {
		t.Fatalf("exit %d, %d sent", r.code, cliOutboxFiles(t, cf))
	}
	sum := cliSummary(t, r)
	checkCountsAddUp(t, sum)
	if jsonCount(t, sum, "expired") != 5 || !strings.Contains(r.stderr, "not_after 2026-12-01T00:00:00Z has passed") || !strings.Contains(r.stderr, "5 expired") {
		t.Errorf("summary %v, stderr %q: want 5 expired and the reason", sum, r.stderr)
	}
	r = e.run(t, "status", cf)
	if r.code != 0 || !strings.Contains(r.stdout, "expired") || !strings.Contains(r.stdout, "5") {
		t.Errorf("status: exit %d, %q", r.code, r.stdout)
	}
}

// TestSendPauseExit1: a bounce spike stops the run (exit 1, "stopped":"paused" with the
// figures); later runs refuse (exit 1) until --resume-paused.
func TestSendPauseExit1(t *testing.T) {
	var bouncing atomic.Bool
	bouncing.Store(true)
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(rcpt string, _ int) *smtp.SMTPError {
		n, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(rcpt, "@", 2)[0], "r"))
		if bouncing.Load() && n%10 == 0 {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	cf := cliCampaign(t, 600, cliSMTPProvider(srv, ""), "pause_if: {bounce_rate: 5%, min_sent: 40}\n")
	e := &cliEnv{}
	r := e.run(t, "send", cf, "--yes", "--json")
	sum := cliSummary(t, r)
	if r.code != 1 || sum["stopped"] != "paused" {
		t.Fatalf("exit %d, summary %v: want 1 and stopped paused", r.code, sum)
	}
	checkCountsAddUp(t, sum)
	if jsonCount(t, sum, "pause.outcomes") < 40 || jsonCount(t, sum, "pause.bounces")*20 <= jsonCount(t, sum, "pause.outcomes") || jsonCount(t, sum, "pending") < 300 {
		t.Errorf("summary %v: want the figures and the rest pending", sum)
	}
	accepted := srv.Accepted()
	if r := e.run(t, "status", cf); r.code != 0 || !strings.Contains(r.stdout, "paused") || !strings.Contains(r.stdout, "bounce rate") {
		t.Errorf("status of a paused campaign: exit %d, %q", r.code, r.stdout)
	}
	r = e.run(t, "send", cf, "--yes")
	if r.code != 1 || srv.Accepted() != accepted || !strings.Contains(r.stderr, "--resume-paused") {
		t.Fatalf("run of a paused campaign: exit %d, %d more sent, stderr %q", r.code, srv.Accepted()-accepted, r.stderr)
	}
	bouncing.Store(false)
	r = e.run(t, "send", cf, "--yes", "--resume-paused", "--json")
	if r.code != 0 || jsonCount(t, cliSummary(t, r), "pending") != 0 {
		t.Fatalf("resumed: exit %d", r.code)
	}
}

// TestValidateExplainsPolicy: validate prints one line per policy and the rows whose
// time zone is not one.
func TestValidateExplainsPolicy(t *testing.T) {
	cf := cliCampaign(t, 3, cliFileProvider, `timezone: Europe/Paris
window: {days: Mon-Fri, hours: "09:00-17:00"}
recipient_timezone: tz
not_after: 48h
warmup: {start: 500, growth: 1.5, max: 200000}
pause_if: {bounce_rate: 5%, complaint_rate: 0.1%, min_sent: 500}
domains: {gmail.com: {rate: "20/s", connections: 2}}
fallback: {kind: file, dir: outbox2}
`)
	list := "email,name,tz\na@example.org,A,Asia/Tokyo\nb@example.org,B,Mars/Olympus\nc@example.org,C,\n"
	writeFile(t, cf, "list.csv", list)
	r := (&cliEnv{}).run(t, "validate", cf)
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	for _, want := range []string{"policy: window:", "policy: not_after:", "policy: warmup:", "policy: pause_if:", "policy: domains: gmail.com, googlemail.com at up to 20/s", "policy: fallback: file", "line 3", "Mars/Olympus"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("validate output lacks %q", want)
		}
	}
	if n := strings.Count(r.stderr, "policy: "); n != 6 {
		t.Errorf("%d policy lines, want 6", n)
	}
}

// writeFile writes name beside the campaign file cf.
func writeFile(t *testing.T, cf, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(filepath.Dir(cf), name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresWarmupTwoCampaigns: two campaigns sending at once into one PostgreSQL
// store share the day's warm-up cap; the next day they go on.
func TestPostgresWarmupTwoCampaigns(t *testing.T) {
	url := pgtest.URL(t)
	var cfs []string
	for _, name := range []string{"spring", "summer"} {
		cf := cliCampaign(t, 40, cliFileProvider, "timezone: Europe/Paris\nwarmup: [30, 100]\n")
		b, err := os.ReadFile(cf)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, cf, "c.yaml", strings.Replace(string(b), "name: cli", "name: "+name, 1))
		cfs = append(cfs, cf)
	}
	paris, _ := time.LoadLocation("Europe/Paris")
	var now atomic.Pointer[time.Time]
	day1 := time.Date(2026, 12, 7, 12, 0, 0, 0, paris)
	now.Store(&day1)
	e := &cliEnv{now: func() time.Time { return *now.Load() }}
	codes := make(chan int, 2)
	for _, cf := range cfs {
		go func() { codes <- e.run(t, "send", cf, "--yes", "--store", url).code }()
	}
	for range cfs {
		if code := <-codes; code != 0 {
			t.Fatalf("exit %d", code)
		}
	}
	if got := cliOutboxFiles(t, cfs[0]) + cliOutboxFiles(t, cfs[1]); got != 30 {
		t.Fatalf("day 1: %d sent by the two campaigns, cap 30", got)
	}
	day2 := day1.Add(24 * time.Hour)
	now.Store(&day2)
	for _, cf := range cfs {
		if r := e.run(t, "send", cf, "--yes", "--store", url); r.code != 0 {
			t.Fatalf("day 2: exit %d", r.code)
		}
	}
	if got := cliOutboxFiles(t, cfs[0]) + cliOutboxFiles(t, cfs[1]); got != 80 {
		t.Fatalf("day 2: %d sent in all, want 80", got)
	}
}
