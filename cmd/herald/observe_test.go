package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign/logging"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// background runs Main in a goroutine with stderr readable while it runs.
type background struct {
	stdout, stderr cliBuffer
	code           chan int
}

func runBackground(env map[string]string, args ...string) *background {
	b := &background{code: make(chan int, 1)}
	sys := &IO{
		Stdin:  strings.NewReader(""),
		Stdout: &b.stdout, Stderr: &b.stderr,
		Getenv: func(k string) string { return env[k] },
		Now:    time.Now,
		Exit:   func(int) {},
	}
	go func() { b.code <- Main(args, sys) }()
	return b
}

// wait returns Main's exit code.
func (b *background) wait(t *testing.T) int {
	t.Helper()
	select {
	case c := <-b.code:
		return c
	case <-time.After(2 * time.Minute):
		t.Fatalf("herald did not finish; stderr:\n%s", b.stderr.String())
	}
	return -1
}

// scrapeMetrics returns the samples of herald_messages_total by outcome.
func scrapeMessages(t *testing.T, url string) map[string]int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	re := regexp.MustCompile(`(?m)^herald_messages_total\{campaign="cli",outcome="(\w+)",provider="smtp"\} (\d+)$`)
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		n, _ := strconv.Atoi(m[2])
		out[m[1]] = n
	}
	// The journal's hand-offs, under a key that is no outcome.
	if m := regexp.MustCompile(`(?m)^herald_journal_commit_seconds_count (\d+)$`).FindStringSubmatch(string(body)); m != nil {
		out["commits"], _ = strconv.Atoi(m[1])
	} else {
		out["commits"] = -1
	}
	// The campaign's health in the store, in thousandths, under keys that are no outcome.
	for _, g := range []string{"bounce_ratio", "complaint_ratio", "outcomes"} {
		out[g] = -1
		if m := regexp.MustCompile(`(?m)^herald_campaign_` + g + `\{campaign="cli"\} (\S+)$`).FindStringSubmatch(string(body)); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			if g != "outcomes" {
				v *= 1000
			}
			out[g] = int(math.Round(v))
		}
	}
	return out
}

// TestMetricsDuringSendMatchSummary scrapes --metrics-addr while `herald send` runs
// against the in-process SMTP server, with the last recipient held at RCPT until the
// scrape has seen every other outcome: herald_messages_total by outcome then equals the
// run's JSON summary, less the one held recipient, and every recipient's hand-off (the
// held one's too) is in herald_journal_commit_seconds.
func TestMetricsDuringSendMatchSummary(t *testing.T) {
	const n = 12
	last := fmt.Sprintf("r%d@example.org", n)
	release := make(chan struct{})
	srv := smtptest.Start(t, smtptest.Options{
		Rcpt: func(rcpt string, _ int) *smtp.SMTPError {
			switch rcpt {
			case "r3@example.org", "r7@example.org":
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			case last:
				<-release
			}
			return nil
		},
	})
	defer close(release)
	cf := cliCampaign(t, n, cliSMTPProvider(srv, ""), "workers: 1")
	run := runBackground(nil, "send", cf, "--yes", "--json", "--metrics-addr", "127.0.0.1:0")

	var url string
	addr := regexp.MustCompile(`metrics at (http://\S+/metrics)`)
	waitFor(t, time.Minute, "the metrics address on stderr", func() bool {
		m := addr.FindStringSubmatch(run.stderr.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	var during map[string]int
	waitFor(t, time.Minute, "every outcome but the held one in the metrics, and in the store's figures", func() bool {
		during = scrapeMessages(t, url)
		return during["sent"]+during["failed"] == n-1 && during["outcomes"] == n-1
	})
	// Two hard bounces among the eleven outcomes in the store, no complaint.
	if want := int(math.Round(2.0 / float64(n-1) * 1000)); during["bounce_ratio"] != want || during["complaint_ratio"] != 0 {
		t.Errorf("herald_campaign_bounce_ratio = %d‰, complaint ratio %d‰ during the run, want %d‰ and 0",
			during["bounce_ratio"], during["complaint_ratio"], want)
	}
	release <- struct{}{}
	if code := run.wait(t); code != 1 {
		t.Fatalf("exit %d, want 1 (failed recipients); stderr:\n%s", code, run.stderr.String())
	}
	sum := cliSummary(t, cliRun{stdout: run.stdout.String()})
	want := map[string]int{
		"sent":         jsonCount(t, sum, "sent") - 1, // the held one
		"failed":       jsonCount(t, sum, "failed"),
		"deferred":     jsonCount(t, sum, "deferred"),
		"unknown":      jsonCount(t, sum, "unknown"),
		"already_done": 0,
	}
	for outcome, w := range want {
		if during[outcome] != w {
			t.Errorf("herald_messages_total{outcome=%q} = %d during the run, summary says %d", outcome, during[outcome], w)
		}
	}
	if during["commits"] != n {
		t.Errorf("herald_journal_commit_seconds_count = %d during the run, want %d hand-offs", during["commits"], n)
	}
	if want["failed"] != 2 || want["sent"] != n-3 {
		t.Errorf("summary %v: want 2 failed and the rest sent", sum)
	}
	if _, err := http.Get(url); err == nil {
		t.Errorf("the metrics server still answers after the run")
	}
}

// TestJSONLogs runs a send with --log-format json against a relay that needs a password
// and refuses some recipients: every stderr line is a JSON object with time, level and
// msg; the run's start, its failures and its summary are there with their fields; no
// address appears in full and the password nowhere.
func TestJSONLogs(t *testing.T) {
	const password = "s3cret-relay-pw"
	srv := smtptest.Start(t, smtptest.Options{
		Username: "herald", Password: password,
		Rcpt: func(rcpt string, _ int) *smtp.SMTPError {
			if rcpt == "r2@example.org" {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user r2@example.org"}
			}
			return nil
		},
	})
	cf := cliCampaign(t, 5, cliSMTPProvider(srv, "  username: herald\n  password_env: RELAY_PW\n"), "")
	// A duplicate and an invalid row: their warnings name the addresses.
	list := filepath.Join(filepath.Dir(cf), "list.csv")
	f, err := os.OpenFile(list, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "R1@example.org,Again\nnobody@@example.org,Bad\n")
	f.Close()
	e := &cliEnv{env: map[string]string{"RELAY_PW": password}}
	r := e.run(t, "send", cf, "--yes", "--log-format", "json")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	if r.stdout != "" {
		t.Errorf("stdout without --json: %q", r.stdout)
	}
	records := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(r.stderr))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", sc.Text(), err)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("line %q has no %q", sc.Text(), k)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"])); err != nil {
			t.Errorf("time %v: %v", rec["time"], err)
		}
		records[fmt.Sprint(rec["msg"])] = rec
	}
	start, failed, done := records["run started"], records["send failed"], records["run finished"]
	if start == nil || start["campaign"] != "cli" || start["to_send"] != 5.0 {
		t.Errorf("run started: %v", start)
	}
	if failed == nil || failed["level"] != "WARN" || failed["kind"] != "permanent" || failed["code"] != 550.0 ||
		failed["to"] != logging.Hash("r2@example.org") {
		t.Errorf("send failed: %v", failed)
	}
	if done == nil || done["sent"] != 4.0 || done["failed"] != 1.0 || done["level"] != "WARN" {
		t.Errorf("run finished: %v", done)
	} else if sk, ok := done["skipped"].(map[string]any); !ok || sk["duplicate"] != 1.0 || sk["invalid"] != 1.0 {
		t.Errorf("run finished: skipped %v", done["skipped"])
	}
	if strings.Contains(r.stderr, "@example.org") || strings.Contains(r.stderr, "nobody") {
		t.Errorf("an address in full at info level:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, password) {
		t.Errorf("the relay password is in the log:\n%s", r.stderr)
	}
	if srv.Auths() == 0 {
		t.Errorf("the relay saw no AUTH: the password was not used")
	}

	// A dry run lists the skipped rows, whose reasons name addresses: hashed too.
	r = e.run(t, "send", cf, "--dry-run", "--log-format", "json")
	if r.code != 0 || !strings.Contains(r.stderr, `"msg":"skipped row","line":7,"reason":"duplicate of line 2 (sha256:`) ||
		strings.Contains(r.stderr, "@example.org") || strings.Contains(r.stderr, "nobody") {
		t.Errorf("dry run: exit %d, want 0 and skipped rows with hashed addresses:\n%s", r.code, r.stderr)
	}

	// At debug level the address is there in full.
	srv2 := smtptest.Start(t, smtptest.Options{Rcpt: func(rcpt string, _ int) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
	}})
	cf = cliCampaign(t, 1, cliSMTPProvider(srv2, ""), "")
	r = e.run(t, "send", cf, "--yes", "--log-format", "text", "--log-level", "debug")
	if !strings.Contains(r.stderr, "to=r1@example.org") || !strings.Contains(r.stderr, `msg="send failed"`) {
		t.Errorf("debug level: no full address in the failure record:\n%s", r.stderr)
	}
}

func TestObserveFlagsBadValues(t *testing.T) {
	cf := cliCampaign(t, 2, cliFileProvider, "")
	e := &cliEnv{}
	for _, argv := range [][]string{
		{"send", cf, "--yes", "--log-format", "xml"},
		{"send", cf, "--yes", "--log-format", "json", "--log-level", "loud"},
		{"send", cf, "--yes", "--metrics-addr", "127.0.0.1:notaport"},
	} {
		r := e.run(t, argv...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2", argv, r.code)
		}
		if cliOutboxFiles(t, cf) != 0 {
			t.Fatalf("%v: messages were written", argv)
		}
	}
	if r := e.run(t, "status", cf, "--metrics-addr", "127.0.0.1:0"); r.code != 2 {
		t.Errorf("status --metrics-addr: exit %d, want 2 (only send, schedule and serve have it)", r.code)
	}
}

// TestEveryCommandHasExamplesAndExitStatus walks the command tree: each command has
// examples and a Long text with an EXIT STATUS section.
func TestEveryCommandHasExamplesAndExitStatus(t *testing.T) {
	a := &app{io: &IO{Getenv: func(string) string { return "" }, Now: time.Now}}
	root := a.rootCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || strings.HasPrefix(c.Name(), "__") {
			return
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%q has no examples", c.CommandPath())
		}
		if !strings.Contains(c.Long, "\nEXIT STATUS\n  0") {
			t.Errorf("%q has no EXIT STATUS in its Long text", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// TestCompletion asks cobra's completion protocol (what the shell scripts call) for
// campaign files and suppress subcommands.
func TestCompletion(t *testing.T) {
	e := &cliEnv{}
	for _, cmd := range []string{"send", "validate", "preview", "status", "schedule"} {
		r := e.run(t, "__complete", cmd, "")
		// The directive ShellCompDirectiveFilterFileExt (8) with the extensions.
		if !strings.Contains(r.stdout, "yaml\nyml\n:8\n") {
			t.Errorf("%s: completion %q does not offer *.yaml files", cmd, r.stdout)
		}
	}
	r := e.run(t, "__complete", "suppress", "")
	for _, sub := range []string{"add", "remove", "import", "list"} {
		if !regexp.MustCompile(`(?m)^` + sub + `\t`).MatchString(r.stdout) {
			t.Errorf("suppress: completion %q lacks %s", r.stdout, sub)
		}
	}
	r = e.run(t, "__complete", "send", "c.yaml", "--log-format", "")
	if !strings.Contains(r.stdout, "text\njson\n") {
		t.Errorf("--log-format completion: %q", r.stdout)
	}
}
