package spam

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParseReports(t *testing.T) {
	cases := []struct {
		file             string
		score, threshold float64
		spam             bool
		rules            int
		last             Rule
	}{
		{"quickstart.txt", 1.0, 5.0, false, 4, Rule{"LIST_PARTIAL_SHORT_MSG", 1.0, "Incomplete mailing list headers + short message"}},
		{"gtube.txt", 1001.0, 5.0, true, 5, Rule{"LIST_PARTIAL_SHORT_MSG", 1.0, "Incomplete mailing list headers + short message"}},
	}
	for _, tc := range cases {
		out, err := os.ReadFile(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(out)
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if r.Score != tc.score || r.Threshold != tc.threshold || r.Spam() != tc.spam || len(r.Rules) != tc.rules {
			t.Errorf("%s: %+v", tc.file, r)
			continue
		}
		if got := r.Rules[len(r.Rules)-1]; got != tc.last {
			t.Errorf("%s: last rule %+v, want %+v", tc.file, got, tc.last)
		}
	}
	if _, err := Parse([]byte("no report here")); err == nil {
		t.Error("Parse accepted output without a report")
	}
}

// TestCheckRunsTheCommand: the message goes to the command's standard input and its
// report is read; a missing command is ErrNotInstalled.
func TestCheckRunsTheCommand(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake-spamassassin")
	report, _ := filepath.Abs(filepath.Join("testdata", "gtube.txt"))
	got := filepath.Join(dir, "stdin")
	script := "#!/bin/sh\ncat > " + got + "\ncat " + report + "\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := Check(context.Background(), []byte("Subject: x\r\n\r\nbody\r\n"), []string{fake, "-t"})
	if err != nil || !r.Spam() {
		t.Fatalf("Check = %+v, %v", r, err)
	}
	if b, _ := os.ReadFile(got); string(b) != "Subject: x\r\n\r\nbody\r\n" {
		t.Errorf("the command read %q", b)
	}
	if _, err := Check(context.Background(), nil, []string{filepath.Join(dir, "nope")}); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("missing command: %v", err)
	}
}
