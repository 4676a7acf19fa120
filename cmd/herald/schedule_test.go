package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// TestScheduleFiresOnceAndStopsCleanly runs `herald schedule` in process with a campaign
// due every second, in a testing/synctest bubble (a fake clock that moves only when every
// goroutine waits): the first firing sends to everyone, the next ones find nothing new,
// and SIGTERM ends it with exit 0. The campaign's name takes the bubble's date.
func TestScheduleFiresOnceAndStopsCleanly(t *testing.T) {
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
	outbox := filepath.Join(dir, "outbox")
	count := func() int {
		m, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
		return len(m)
	}
	synctest.Test(t, func(t *testing.T) {
		var stderr syncBuffer
		signals := make(chan os.Signal, 1)
		sys := &IO{
			Stdin:  strings.NewReader(""),
			Stdout: io.Discard, Stderr: &stderr,
			Getenv:  func(string) string { return "" },
			Now:     time.Now,
			Signals: signals,
			Exit:    func(int) { t.Error("IO.Exit called") },
		}
		code := make(chan int, 1)
		go func() { code <- Main([]string{"schedule", filepath.Join(dir, "campaign.yaml")}, sys) }()
		// Firings at 1 s, 2 s and 3 s; each sends at once (the bubble's clock does not move
		// while a run works).
		time.Sleep(3500 * time.Millisecond)
		synctest.Wait()
		if n := strings.Count(stderr.String(), "starting"); n != 3 {
			t.Errorf("%d firings in 3.5 s of @every 1s, want 3; stderr:\n%s", n, stderr.String())
		}
		signals <- syscall.SIGTERM
		if c := <-code; c != 0 {
			t.Fatalf("schedule exited %d after SIGTERM, want 0; stderr:\n%s", c, stderr.String())
		}
		if n := count(); n != 3 {
			t.Fatalf("outbox holds %d messages after three firings, want 3; stderr:\n%s", n, stderr.String())
		}
		if !strings.Contains(stderr.String(), "daily-"+time.Now().UTC().Format("2006-01-02")) {
			t.Fatalf("the campaign name did not take the date; stderr:\n%s", stderr.String())
		}
	})
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
