package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// cliBuffer is a bytes.Buffer safe for the writes of several goroutines (the
// progress reporter and the signal handler write to stderr while a run goes on).
type cliBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *cliBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *cliBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cliRun is one in-process run of Main.
type cliRun struct {
	code           int
	stdout, stderr string
}

// cliEnv describes the world a run of Main sees.
type cliEnv struct {
	env      map[string]string
	stdin    string
	stdinTTY bool
	signals  chan os.Signal
	// exits records calls of IO.Exit (a second Ctrl-C).
	exits atomic.Int32
	// exitCode is the code of the last IO.Exit call.
	exitCode atomic.Int32
	// now is the clock (nil: time.Now).
	now func() time.Time
}

func (e *cliEnv) run(t *testing.T, args ...string) cliRun {
	t.Helper()
	var stdout, stderr cliBuffer
	sys := &IO{
		Stdin:  strings.NewReader(e.stdin),
		Stdout: &stdout, Stderr: &stderr,
		Getenv:   func(k string) string { return e.env[k] },
		Now:      time.Now,
		StdinTTY: e.stdinTTY,
		Exit: func(code int) {
			e.exits.Add(1)
			e.exitCode.Store(int32(code))
		},
	}
	if e.signals != nil {
		sys.Signals = e.signals
	}
	if e.now != nil {
		sys.Now = e.now
	}
	code := Main(args, sys)
	r := cliRun{code: code, stdout: stdout.String(), stderr: stderr.String()}
	t.Logf("herald %s → %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// cliCampaign writes c.yaml (the given provider block and extra keys), t.txt and
// list.csv with n recipients r1@example.org … into a new folder and returns c.yaml.
func cliCampaign(t *testing.T, n int, provider, extra string) string {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf(`name: cli
from: "News <news@example.com>"
subject: "Hello {{ .name }}"
text: t.txt
list: list.csv
unsubscribe:
  url: "https://example.com/unsubscribe"
provider:
%s
rate: "1000/s"
retry: {attempts: 1, backoff: 10ms, max_backoff: 10ms}
%s`, provider, extra)
	var list strings.Builder
	list.WriteString("email,name\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&list, "r%d@example.org,Reader %d\n", i, i)
	}
	files := map[string]string{
		"c.yaml":   yaml,
		"t.txt":    "Hello {{ .name }}.\nUnsubscribe: {{ .UnsubscribeURL }}\n",
		"list.csv": list.String(),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "c.yaml")
}

const cliFileProvider = "  kind: file\n  dir: outbox"

func cliSMTPProvider(srv *smtptest.Server, extra string) string {
	return fmt.Sprintf("  kind: smtp\n  host: %s\n  port: %d\n  tls: none\n%s", srv.Host(), srv.Port(), extra)
}

// cliOutboxFiles counts the .eml files the file provider wrote beside cf (0 when none).
func cliOutboxFiles(t *testing.T, cf string) int {
	t.Helper()
	n, err := countDirFiles(filepath.Join(filepath.Dir(cf), "outbox"), "*.eml")
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// cliJournalRows counts the attempted recipients (not pending) of campaign "cli" in the
// store beside cf.
func cliJournalRows(t *testing.T, cf string) int {
	t.Helper()
	path := filepath.Join(filepath.Dir(cf), "herald.db")
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	st, err := journal.Open(context.Background(), path, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	if err := st.EachRow(context.Background(), "cli", nil, func(r journal.Row) error {
		if r.State != journal.Pending {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// cliSummary decodes stdout as exactly one JSON summary object.
func cliSummary(t *testing.T, r cliRun) map[string]any {
	t.Helper()
	obj, err := decodeOneObject(r.stdout)
	if err != nil {
		t.Fatalf("stdout: %v", err)
	}
	if n := strings.Count(r.stdout, "\n"); n != 1 {
		t.Errorf("stdout has %d lines, want one JSON object on one line", n)
	}
	return obj
}

// jsonCount reads a dotted key of a summary as an int.
func jsonCount(t *testing.T, obj map[string]any, key string) int {
	t.Helper()
	s, err := jsonLookup(obj, key)
	if err != nil {
		t.Fatalf("summary: %v", err)
	}
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("summary: %s = %s, not a number", key, s)
	}
	return n
}

// checkCountsAddUp checks that the counts of a send summary add up to total.
func checkCountsAddUp(t *testing.T, obj map[string]any) {
	t.Helper()
	sum := 0
	for _, k := range []string{"sent", "failed", "deferred", "unknown", "expired", "pending",
		"skipped.invalid", "skipped.duplicate", "skipped.suppressed", "skipped.already_done"} {
		sum += jsonCount(t, obj, k)
	}
	if total := jsonCount(t, obj, "total"); sum != total {
		t.Errorf("summary counts add up to %d, total is %d", sum, total)
	}
}

func TestExitCodeMapping(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"usage", &usageError{err: errors.New("bad flag")}, 2},
		{"usage wrapped", fmt.Errorf("send: %w", &usageError{err: errors.New("x")}), 2},
		{"config", &campaign.ConfigError{Err: errors.New("from: required")}, 2},
		{"config wrapped", fmt.Errorf("load: %w", &campaign.ConfigError{Err: errors.New("x")}), 2},
		{"interrupted", &campaign.StopError{Reason: "interrupted"}, 130},
		{"canceled", fmt.Errorf("send: %w", context.Canceled), 130},
		{"fatal stop", &campaign.StopError{Reason: "fatal", Err: errors.New("535 auth")}, 1},
		{"unreachable stop", &campaign.StopError{Reason: "unreachable", Err: errors.New("refused")}, 1},
		{"store stop", &campaign.StopError{Reason: campaign.StopStore, Err: errors.New("disk full")}, 1},
		{"failing stop", &campaign.StopError{Reason: campaign.StopFailing, Err: errors.New("554 sender")}, 1},
		{"dry run interrupted", &campaign.StopError{Reason: campaign.StopInterrupted, DryRun: true}, 130},
		{"render errors", &campaign.RenderErrors{N: 1, First: []error{errors.New("line 3: x")}}, 1},
		{"failed recipients", &exitError{code: 1}, 1},
		{"declined", campaign.ErrDeclined, 1},
		{"other", errors.New("disk full"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

// TestMainExitCodes runs Main in process for each exit code of PRODUCT.md.
func TestMainExitCodes(t *testing.T) {
	good := cliCampaign(t, 3, cliFileProvider, "")
	noFrom := cliCampaign(t, 3, cliFileProvider, "")
	data, _ := os.ReadFile(noFrom)
	os.WriteFile(noFrom, bytes.Replace(data, []byte("from:"), []byte("# from:"), 1), 0o644)
	badList := cliCampaign(t, 3, cliFileProvider, "")
	os.WriteFile(filepath.Join(filepath.Dir(badList), "list.csv"), []byte("email,name\n\"a@example.org,x\n"), 0o644)

	for _, tc := range []struct {
		name   string
		args   []string
		want   int
		stderr string
	}{
		{"ok", []string{"send", good, "--yes"}, 0, "3 sent"},
		{"unknown command", []string{"sned"}, 2, `unknown command "sned"`},
		{"unknown flag", []string{"send", good, "--fast"}, 2, "unknown flag: --fast"},
		{"missing argument", []string{"send"}, 2, "accepts 1 arg"},
		{"negative limit", []string{"send", good, "--limit", "-1"}, 2, "--limit -1"},
		{"bad rate flag", []string{"send", good, "--rate", "lots"}, 2, "--rate"},
		{"config", []string{"send", noFrom, "--yes"}, 2, "from: required"},
		{"missing file", []string{"validate", filepath.Join(t.TempDir(), "nope.yaml")}, 2, "nope.yaml"},
		{"bad list", []string{"send", badList, "--yes"}, 2, "list.csv:2:"},
		{"validate bad list", []string{"validate", badList}, 2, "unterminated quoted field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &cliEnv{}
			r := e.run(t, tc.args...)
			if r.code != tc.want {
				t.Errorf("exit %d, want %d", r.code, tc.want)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr does not say %q", tc.stderr)
			}
		})
	}
	if n := cliOutboxFiles(t, noFrom) + cliOutboxFiles(t, badList); n != 0 {
		t.Errorf("%d message(s) written by runs that exit 2", n)
	}
	if n := cliJournalRows(t, badList); n != 0 {
		t.Errorf("%d journal row(s) left by a run with a bad list", n)
	}
}

func TestMainFailedRecipientsExit1(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{
		Rcpt: func(rcpt string, _ int) *smtp.SMTPError {
			if rcpt == "r2@example.org" {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		},
	})
	cf := cliCampaign(t, 4, cliSMTPProvider(srv, ""), "")
	e := &cliEnv{}
	r := e.run(t, "send", cf, "--yes", "--json")
	if r.code != 1 {
		t.Errorf("exit %d, want 1 (a recipient failed)", r.code)
	}
	sum := cliSummary(t, r)
	if jsonCount(t, sum, "sent") != 3 || jsonCount(t, sum, "failed") != 1 {
		t.Errorf("sent %d failed %d, want 3 and 1", jsonCount(t, sum, "sent"), jsonCount(t, sum, "failed"))
	}
	checkCountsAddUp(t, sum)
	if got := srv.Accepted(); got != 3 {
		t.Errorf("server accepted %d messages, want 3", got)
	}

	// A re-run has nothing left to do and earlier failures do not count: exit 0.
	r = e.run(t, "send", cf, "--yes", "--json")
	if r.code != 0 {
		t.Errorf("re-run: exit %d, want 0", r.code)
	}
	sum = cliSummary(t, r)
	if jsonCount(t, sum, "sent") != 0 || jsonCount(t, sum, "skipped.already_done")+jsonCount(t, sum, "skipped.suppressed") != 4 {
		t.Errorf("re-run: sent %d, already_done %d + suppressed %d, want 0 and 4 in all",
			jsonCount(t, sum, "sent"), jsonCount(t, sum, "skipped.already_done"), jsonCount(t, sum, "skipped.suppressed"))
	}
	if got := srv.Accepted(); got != 3 {
		t.Errorf("server accepted %d messages after the re-run, want still 3", got)
	}

	// 550 5.1.1 is a hard bounce: the address is on the suppression list.
	r = e.run(t, "suppress", "list", "--campaign", cf)
	if r.code != 0 || !strings.Contains(r.stdout, "r2@example.org") {
		t.Errorf("suppress list: exit %d, stdout %q: want r2@example.org (hard bounce)", r.code, r.stdout)
	}

	r = e.run(t, "status", cf, "--failed")
	if r.code != 0 || !strings.Contains(r.stdout, "r2@example.org") || !strings.Contains(r.stdout, "no such user") {
		t.Errorf("status --failed: exit %d, stdout %q: want r2@example.org and the server's reason", r.code, r.stdout)
	}
	if !strings.Contains(r.stdout, "r2@example.org\tfailed\tsmtp\t550") {
		t.Errorf("status --failed: stdout %q: want r2@example.org failed through smtp", r.stdout)
	}
	// The JSON lists each recipient with the provider that took it.
	r = e.run(t, "status", cf, "--failed", "--json")
	var st struct {
		Failed     int `json:"failed"`
		Recipients []struct {
			Email    string  `json:"email"`
			Provider *string `json:"provider"`
		} `json:"recipients"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 {
		t.Fatalf("status --failed --json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	if st.Failed != 1 || len(st.Recipients) != 1 || st.Recipients[0].Email != "r2@example.org" ||
		st.Recipients[0].Provider == nil || *st.Recipients[0].Provider != "smtp" {
		t.Errorf("status --failed --json = %q: want r2@example.org with provider smtp", r.stdout)
	}
}

func TestMainFatalProviderErrorExit1(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Username: "herald", Password: "right"})
	cf := cliCampaign(t, 5, cliSMTPProvider(srv, "  username: herald\n  password_env: CLI_SMTP_PASSWORD"), "")
	e := &cliEnv{env: map[string]string{"CLI_SMTP_PASSWORD": "wrong-secret-value"}}
	r := e.run(t, "send", cf, "--yes", "--json")
	if r.code != 1 {
		t.Errorf("exit %d, want 1 (stopped by a fatal provider error)", r.code)
	}
	sum := cliSummary(t, r)
	if jsonCount(t, sum, "sent") != 0 || jsonCount(t, sum, "pending") != 5 {
		t.Errorf("sent %d pending %d, want 0 and 5", jsonCount(t, sum, "sent"), jsonCount(t, sum, "pending"))
	}
	checkCountsAddUp(t, sum)
	if strings.Contains(r.stdout+r.stderr, "wrong-secret-value") {
		t.Error("the password appears in the output")
	}
}

func TestMainInterruptedExit130(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{DataDelay: 100 * time.Millisecond})
	cf := cliCampaign(t, 30, cliSMTPProvider(srv, ""), "workers: 1\n")
	e := &cliEnv{signals: make(chan os.Signal)}
	done := make(chan cliRun, 1)
	go func() { done <- e.run(t, "send", cf, "--yes", "--json") }()

	deadline := time.Now().Add(10 * time.Second)
	for srv.Accepted() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no message reached the server within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.signals <- os.Interrupt // unbuffered: the handler has taken it when this returns

	var r cliRun
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("send did not stop within 15s of SIGINT")
	}
	if r.code != 130 {
		t.Errorf("exit %d, want 130", r.code)
	}
	if e.exits.Load() != 0 {
		t.Errorf("IO.Exit called after one signal")
	}
	sum := cliSummary(t, r)
	checkCountsAddUp(t, sum)
	sent, pending := jsonCount(t, sum, "sent"), jsonCount(t, sum, "pending")
	if sent < 1 || pending < 1 || sent != srv.Accepted() {
		t.Errorf("sent %d pending %d (server accepted %d): want some sent, the rest pending, and the journal to match the server", sent, pending, srv.Accepted())
	}
	if !strings.Contains(r.stderr, "stopping") {
		t.Errorf("stderr does not say that herald is stopping")
	}

	// The re-run completes the campaign: everyone exactly once.
	r = (&cliEnv{}).run(t, "send", cf, "--yes", "--json")
	if r.code != 0 {
		t.Errorf("resume: exit %d, want 0", r.code)
	}
	if got := srv.Accepted(); got != 30 {
		t.Errorf("server accepted %d messages after the resume, want 30", got)
	}
	seen := map[string]int{}
	for _, m := range srv.Messages() {
		for _, to := range m.To {
			seen[to]++
		}
	}
	for to, n := range seen {
		if n != 1 {
			t.Errorf("%s received %d messages", to, n)
		}
	}
}

// TestMainSecondSignalExitsAtOnce: a second Ctrl-C while a send is in flight exits at
// once (130) instead of waiting for it. The signals go once the relay has a message in
// flight (an event, not a delay): sent earlier, the first could stop the run before
// anything is in flight, and nobody would take the second.
func TestMainSecondSignalExitsAtOnce(t *testing.T) {
	inFlight := make(chan struct{}, 16)
	srv := smtptest.Start(t, smtptest.Options{DataDelay: 3 * time.Second,
		Rcpt: func(string, int) *smtp.SMTPError {
			inFlight <- struct{}{}
			return nil
		}})
	cf := cliCampaign(t, 10, cliSMTPProvider(srv, ""), "workers: 1\n")
	e := &cliEnv{signals: make(chan os.Signal)}
	done := make(chan cliRun, 1)
	go func() { done <- e.run(t, "send", cf, "--yes") }()
	select {
	case <-inFlight:
	case <-time.After(30 * time.Second):
		t.Fatal("no message in flight within 30s")
	}
	for i := range 2 { // the second is taken only by the handler's second wait
		select {
		case e.signals <- os.Interrupt:
		case <-time.After(15 * time.Second):
			t.Fatalf("interrupt %d not taken within 15s", i+1)
		}
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("send did not return within 15s")
	}
	if e.exits.Load() != 1 || e.exitCode.Load() != 130 {
		t.Errorf("IO.Exit called %d time(s) with %d, want once with 130", e.exits.Load(), e.exitCode.Load())
	}
}

// TestJSONIsOneObjectOnStdout: with --json, stdout holds one JSON object and nothing
// else, whatever the outcome; the human summary goes to stderr.
func TestJSONIsOneObjectOnStdout(t *testing.T) {
	reject := smtptest.Start(t, smtptest.Options{
		Rcpt: func(string, int) *smtp.SMTPError {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
		},
	})
	for _, tc := range []struct {
		name     string
		provider string
		args     []string
		code     int
		dryRun   string
	}{
		{"sent", cliFileProvider, []string{"send", "--yes", "--json"}, 0, "false"},
		{"dry run", cliFileProvider, []string{"send", "--dry-run", "--json"}, 0, "true"},
		{"limit 0", cliFileProvider, []string{"send", "--yes", "--json", "--limit", "0"}, 0, "false"},
		{"failed", cliSMTPProvider(reject, ""), []string{"send", "--yes", "--json"}, 1, "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf := cliCampaign(t, 3, tc.provider, "")
			args := append([]string{tc.args[0], cf}, tc.args[1:]...)
			r := (&cliEnv{}).run(t, args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			sum := cliSummary(t, r)
			checkCountsAddUp(t, sum)
			if got, _ := jsonLookup(sum, "dry_run"); got != tc.dryRun {
				t.Errorf("dry_run %s, want %s", got, tc.dryRun)
			}
			if got, _ := jsonLookup(sum, "campaign"); got != "cli" {
				t.Errorf("campaign %q, want cli", got)
			}
			if !strings.Contains(r.stderr, "cli") {
				t.Errorf("no human summary on stderr")
			}
		})
	}

	t.Run("status", func(t *testing.T) {
		cf := cliCampaign(t, 3, cliFileProvider, "")
		if r := (&cliEnv{}).run(t, "send", cf, "--yes", "--limit", "2"); r.code != 0 || r.stdout != "" {
			t.Fatalf("send without --json: exit %d, stdout %q (want 0 and nothing)", r.code, r.stdout)
		}
		r := (&cliEnv{}).run(t, "status", cf, "--json")
		if r.code != 0 {
			t.Errorf("exit %d", r.code)
		}
		sum := cliSummary(t, r)
		if jsonCount(t, sum, "sent") != 2 || jsonCount(t, sum, "pending") != 1 || jsonCount(t, sum, "total") != 3 {
			t.Errorf("status: sent %d pending %d total %d, want 2 1 3", jsonCount(t, sum, "sent"), jsonCount(t, sum, "pending"), jsonCount(t, sum, "total"))
		}
	})
}

// TestConfirmation: send asks once when stdin is a terminal and --yes is absent, and
// never otherwise.
func TestConfirmation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tty    bool
		stdin  string
		args   []string
		asked  bool
		code   int
		outbox int
	}{
		{"terminal, no", true, "n\n", nil, true, 1, 0},
		{"terminal, empty answer", true, "\n", nil, true, 1, 0},
		{"terminal, end of input", true, "", nil, true, 1, 0},
		{"terminal, yes", true, "y\n", nil, true, 0, 3},
		{"terminal, YES", true, "YES\n", nil, true, 0, 3},
		{"terminal, --yes", true, "n\n", []string{"--yes"}, false, 0, 3},
		{"terminal, dry run", true, "n\n", []string{"--dry-run"}, false, 0, 0},
		{"no terminal", false, "n\n", nil, false, 0, 3},
		{"no terminal, no input", false, "", nil, false, 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf := cliCampaign(t, 3, cliFileProvider, "")
			e := &cliEnv{stdin: tc.stdin, stdinTTY: tc.tty}
			r := e.run(t, append([]string{"send", cf}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			asked := strings.Count(r.stderr, "[y/N]")
			if tc.asked && asked != 1 {
				t.Errorf("asked %d time(s), want once", asked)
			}
			if !tc.asked && asked != 0 {
				t.Errorf("asked for confirmation")
			}
			if tc.asked && !strings.Contains(r.stderr, "3 recipient(s) via file") {
				t.Errorf("the question does not name the count and the provider")
			}
			if got := cliOutboxFiles(t, cf); got != tc.outbox {
				t.Errorf("%d message(s) written, want %d", got, tc.outbox)
			}
			if tc.outbox == 0 {
				if n := cliJournalRows(t, cf); n != 0 {
					t.Errorf("%d journal row(s) after nothing was sent", n)
				}
			}
			if tc.code == 1 && !strings.Contains(r.stderr, "not confirmed") {
				t.Errorf("a declined send does not say so")
			}
		})
	}
}
