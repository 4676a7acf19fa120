package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestScheduleFiresOnceAndStopsCleanly runs `herald schedule` with a campaign due every
// second: the first firing sends to everyone, later firings find nothing new, and SIGTERM
// ends the process with exit 0.
func TestScheduleFiresOnceAndStopsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the scheduler for a few seconds")
	}
	dir := t.TempDir()
	files := map[string]string{
		"subscribers.csv": "email,name\na@example.org,A\nb@example.org,B\nc@example.org,C\n",
		"template.txt":    "Hi {{ .name }}\n{{ .UnsubscribeURL }}\n",
		"campaign.yaml": `name: daily-{{ .Date }}
from: news@example.com
subject: Daily
text: template.txt
list: subscribers.csv
unsubscribe: {url: "https://example.com/u"}
provider: {kind: file, dir: outbox}
schedule: "@every 1s"
timezone: UTC
`,
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stderr syncBuffer
	cmd := exec.Command(heraldBin, "schedule", filepath.Join(dir, "campaign.yaml"))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outbox := filepath.Join(dir, "outbox")
	count := func() int {
		m, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
		return len(m)
	}
	deadline := time.Now().Add(20 * time.Second)
	for count() < 3 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	// Let it fire a few more times: nothing new must be sent.
	for fired := strings.Count(stderr.String(), "starting"); strings.Count(stderr.String(), "starting") < fired+2 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if err != nil {
		t.Fatalf("schedule exited with %v after SIGTERM; stderr:\n%s", err, stderr.String())
	}
	if n := count(); n != 3 {
		t.Fatalf("outbox holds %d messages after several firings, want 3; stderr:\n%s", n, stderr.String())
	}
	if !strings.Contains(stderr.String(), "daily-"+time.Now().UTC().Format("2006-01-02")) {
		t.Fatalf("the campaign name did not take the date; stderr:\n%s", stderr.String())
	}
}

func TestScheduleRefusesBadSpec(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "l.csv"), []byte("email\na@example.org\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "t.txt"), []byte("{{ .UnsubscribeURL }}"), 0o644)
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("name: x\nfrom: a@example.com\nsubject: s\ntext: t.txt\nlist: l.csv\nunsubscribe: {url: \"https://e.example/u\"}\nschedule: \"every day\"\n"), 0o644)
	var stderr bytes.Buffer
	cmd := exec.Command(heraldBin, "schedule", filepath.Join(dir, "c.yaml"))
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want 2; stderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "schedule") || !strings.Contains(stderr.String(), "every day") {
		t.Fatalf("error does not name the bad schedule: %s", stderr.String())
	}
}

// syncBuffer is a bytes.Buffer safe to write from a process's output goroutine while
// the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
