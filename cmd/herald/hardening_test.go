package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// The relay answers every message with the same permanent refusal (a sender it does
// not accept): the run stops within ten recipients, nobody is failed, and once the
// relay accepts, the next run sends everyone (issue 14 item 1, the backstop).
func TestMainSamePermanentAnswerStopsFailing(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	srv := smtptest.Start(t, smtptest.Options{
		Data: func(smtptest.Message) *smtp.SMTPError {
			if refuse.Load() {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender address not verified"}
			}
			return nil
		},
	})
	cf := cliCampaign(t, 40, cliSMTPProvider(srv, ""), "workers: 2\n")
	e := &cliEnv{}
	r := e.run(t, "send", cf, "--yes", "--json")
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	sum := cliSummary(t, r)
	if s, _ := jsonLookup(sum, "stopped"); s != "failing" {
		t.Errorf("stopped = %q, want failing", s)
	}
	if jsonCount(t, sum, "failed") != 0 || jsonCount(t, sum, "pending") != 40 {
		t.Errorf("failed %d pending %d, want 0 and 40", jsonCount(t, sum, "failed"), jsonCount(t, sum, "pending"))
	}
	checkCountsAddUp(t, sum)
	if !strings.Contains(r.stderr, "sender address not verified") {
		t.Errorf("stderr does not give the answer")
	}
	if n := len(srv.Messages()); n > 11 {
		t.Errorf("%d messages handed over, want at most 10 (+1 in flight)", n)
	}
	refuse.Store(false)
	r = e.run(t, "send", cf, "--yes", "--json")
	if r.code != 0 || jsonCount(t, cliSummary(t, r), "sent") != 40 {
		t.Errorf("after the fix: exit %d, want 0 and 40 sent", r.code)
	}
}

// A run whose recipients ended unknown exits 1 (issue 13 item 12).
func TestMainUnknownExit1(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{DropAfterData: true})
	cf := cliCampaign(t, 2, cliSMTPProvider(srv, ""), "workers: 1\n")
	r := (&cliEnv{}).run(t, "send", cf, "--yes", "--json")
	if r.code != 1 {
		t.Errorf("exit %d, want 1 (recipients unknown)", r.code)
	}
	if n := jsonCount(t, cliSummary(t, r), "unknown"); n == 0 {
		t.Errorf("no unknown recipient: the relay did not drop as intended")
	}
}

// send --json with a store that cannot be used: exit 1, stopped "store" and the error
// (issue 13 item 6); status on it exits 1 naming the store (item 7).
func TestMainStoreThatCannotBeUsed(t *testing.T) {
	cf := cliCampaign(t, 3, cliFileProvider, "")
	store := filepath.Join(filepath.Dir(cf), "herald.db")
	if err := os.WriteFile(store, []byte(strings.Repeat("not a database\n", 400)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := (&cliEnv{}).run(t, "send", cf, "--yes", "--json")
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	sum := cliSummary(t, r)
	if s, _ := jsonLookup(sum, "stopped"); s != "store" {
		t.Errorf("stopped = %q, want store", s)
	}
	if s, _ := jsonLookup(sum, "error"); !strings.Contains(s, store) {
		t.Errorf("error = %q, want one naming %s", s, store)
	}
	if n := cliOutboxFiles(t, cf); n != 0 {
		t.Errorf("%d message(s) sent", n)
	}
	r = (&cliEnv{}).run(t, "status", cf, "--json")
	if r.code != 1 || !strings.Contains(r.stderr, store) {
		t.Errorf("status: exit %d, stderr %q: want 1 naming the store", r.code, r.stderr)
	}
}

// status on a store whose recipient pages are damaged exits 1 naming the store, rather
// than blaming the list with a total of -1 (issue 13 item 7).
func TestMainStatusDamagedStore(t *testing.T) {
	cf := cliCampaign(t, 10, cliFileProvider, "")
	e := &cliEnv{}
	if r := e.run(t, "send", cf, "--yes"); r.code != 0 {
		t.Fatalf("send: exit %d", r.code)
	}
	store := filepath.Join(filepath.Dir(cf), "herald.db")
	b, err := os.ReadFile(store)
	if err != nil || len(b) < 2*4096 {
		t.Fatalf("store: %d bytes, %v", len(b), err)
	}
	for i := 4096 + 8; i < 2*4096; i++ { // page 2: the recipients
		b[i] = 0x55
	}
	if err := os.WriteFile(store, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.run(t, "status", cf, "--json")
	if r.code != 1 || !strings.Contains(r.stderr, store) || strings.Contains(r.stdout, `"total":-1`) {
		t.Errorf("status: exit %d, stderr %q, stdout %q: want exit 1 naming the store", r.code, r.stderr, r.stdout)
	}
}

// A closed stdout and stderr (herald send … 2>&1 | head -c 20, head gone) never stop a
// send: the binary does not die of SIGPIPE, drops the output and exits as the run says
// (issue 13 item 11).
func TestBinaryClosedPipeDoesNotStopSend(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"text", nil},
		{"json", []string{"--json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf := cliCampaign(t, 30, cliFileProvider, "")
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			r.Close() // the reader is gone before herald writes its first line
			cmd := exec.Command(heraldBin, append([]string{"send", cf, "--yes"}, tc.args...)...)
			cmd.Stdout, cmd.Stderr = w, w
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			err = cmd.Run()
			w.Close()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("herald send with a closed pipe: %v (exit %d), want exit 0", err, ee.ExitCode())
			} else if err != nil {
				t.Fatal(err)
			}
			if n := cliOutboxFiles(t, cf); n != 30 {
				t.Errorf("%d message(s) written, want 30", n)
			}
		})
	}
}

// failingWriter fails every write and counts them.
type failingWriter struct{ writes int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.writes++
	return 0, errors.New("write |1: broken pipe")
}

func TestDropOnErrorStopsWritingAfterAnError(t *testing.T) {
	fw := &failingWriter{}
	d := &dropOnError{w: fw}
	for i := 0; i < 3; i++ {
		if n, err := d.Write([]byte("line\n")); n != 5 || err != nil {
			t.Fatalf("Write = %d, %v; want 5, nil", n, err)
		}
	}
	if fw.writes != 1 {
		t.Errorf("%d writes reached the failed writer, want 1", fw.writes)
	}
}

// cpuTicks is the user+system CPU time of process pid in clock ticks (from /proc).
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return u + k
}

// validate on a runaway template: a subject that renders without end is refused naming
// the row (exit 2); one that loops without writing stops promptly on SIGTERM (exit 130)
// with a message for validate, not for a send (issue 13 item 10).
func TestBinaryValidateRunawayTemplate(t *testing.T) {
	cf := cliCampaign(t, 3, cliFileProvider, "")
	data, _ := os.ReadFile(cf)
	write := func(subject string) {
		t.Helper()
		out := strings.Replace(string(data), `subject: "Hello {{ .name }}"`, "subject: '"+subject+"'", 1)
		if err := os.WriteFile(cf, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{{ if eq .name "Reader 2" }}{{ range 300000000 }}x{{ end }}{{ end }}`)
	out, err := exec.Command(heraldBin, "validate", cf).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "line 3") || !strings.Contains(string(out), "renders more than") {
		t.Fatalf("validate of a runaway subject: %v\n%s\nwant exit 2 naming line 3 and the size", err, out)
	}

	write(`{{ range 300000000 }}{{ end }}`)
	cmd := exec.Command(heraldBin, "validate", cf)
	var stderr cliBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Once it has spent half a second of CPU it is rendering (the rest takes
	// milliseconds) and has its signal handler.
	waitFor(t, 30*time.Second, "validate to be rendering", func() bool { return cpuTicks(t, cmd.Process.Pid) >= 50 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Errorf("validate after SIGTERM: %v, want exit 130", err)
		}
		if d := time.Since(signalled); d > 5*time.Second {
			t.Errorf("validate took %s to stop", d)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("validate still running 20 s after SIGTERM")
	}
	if s := stderr.String(); strings.Contains(s, "in-flight") || strings.Contains(s, "in flight") || !strings.Contains(s, "nothing was sent") {
		t.Errorf("stderr %q: validate sends nothing; its stop message must not speak of sends in flight", s)
	}
}

// The store's file cannot grow mid-run (a file-size limit stands in for a full disk):
// the summary counts as sent exactly what the journal recorded, the messages handed
// over without a record count as unknown, the run stops with the store's error
// (exit 1, "stopped":"store"), and a later run completes without mailing anyone twice
// (issue 13 item 5).
func TestBinaryStoreFullMidRun(t *testing.T) {
	cf := cliCampaign(t, 1500, cliFileProvider, "rate: \"100000/s\"\nworkers: 4\n")
	data, _ := os.ReadFile(cf)
	os.WriteFile(cf, []byte(strings.Replace(string(data), `rate: "1000/s"`, "", 1)), 0o644)
	dir := filepath.Dir(cf)
	// bash's ulimit -f counts KiB; Go ignores SIGXFSZ, so writes past it fail with EFBIG.
	cmd := exec.Command("bash", "-c", `ulimit -f 300 && exec "$0" "$@"`, heraldBin, "send", cf, "--yes", "--json")
	cmd.Dir = dir
	var stdout, stderr cliBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("send with the store's file limited: %v, want exit 1\n%s", err, stderr.String())
	}
	sum := cliSummary(t, cliRun{stdout: stdout.String()})
	if s, _ := jsonLookup(sum, "stopped"); s != "store" {
		t.Fatalf("stopped = %q, want store\n%s", s, stderr.String())
	}
	checkCountsAddUp(t, sum)
	r := (&cliEnv{}).run(t, "status", cf, "--json")
	st := cliSummary(t, r)
	sent, unknown := jsonCount(t, sum, "sent"), jsonCount(t, sum, "unknown")
	if js := jsonCount(t, st, "sent"); js != sent {
		t.Errorf("summary says %d sent, the journal holds %d", sent, js)
	}
	if files := cliOutboxFiles(t, cf); files != sent+unknown {
		t.Errorf("%d messages written; summary: %d sent + %d unknown", files, sent, unknown)
	}
	if sent+unknown >= 1500 {
		t.Fatalf("the run did not stop when the store failed")
	}

	// Room again: the next run finishes; the unrecorded ones are unknown, not resent.
	r = (&cliEnv{}).run(t, "send", cf, "--yes", "--json")
	if r.code != 0 && r.code != 1 {
		t.Fatalf("second run: exit %d", r.code)
	}
	if files := cliOutboxFiles(t, cf); files != 1500 {
		t.Errorf("%d messages written in all, want 1500 (one each)", files)
	}
}
