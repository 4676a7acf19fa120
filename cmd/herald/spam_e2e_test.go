//go:build e2e

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestE2ESpamAssassin: `herald validate --spam` with the real SpamAssassin: the
// quickstart scores below the threshold (exit 0, score and rules printed); a message
// built to score high (the GTUBE test string) exits 1. .ci/mailservers.sh installs
// SpamAssassin; under CI=true a missing one fails the test.
func TestE2ESpamAssassin(t *testing.T) {
	if _, err := exec.LookPath("spamassassin"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("spamassassin is not installed: apt-get install -y spamassassin (.ci/mailservers.sh installs it)")
		}
		t.Skip("spamassassin is not installed: apt-get install -y spamassassin")
	}
	dir := t.TempDir()
	if code, _, stderr := e2eRun(t, dir, nil, "init", "demo"); code != 0 {
		t.Fatalf("init: %s", stderr)
	}
	cf := filepath.Join(dir, "demo", "campaign.yaml")
	code, stdout, _ := e2eRun(t, dir, nil, "validate", cf, "--spam")
	if code != 0 {
		t.Fatalf("validate --spam on the quickstart: exit %d", code)
	}
	m := regexp.MustCompile(`SpamAssassin score (-?[\d.]+), threshold ([\d.]+)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no score printed: %q", stdout)
	}
	t.Logf("quickstart: score %s, threshold %s", m[1], m[2])

	html := filepath.Join(dir, "demo", "template.html")
	b, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	gtube := "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
	spammy := strings.Replace(string(b), "<body>", "<body><p>"+gtube+"</p>", 1)
	if spammy == string(b) {
		spammy = "<p>" + gtube + "</p>" + string(b)
	}
	if err := os.WriteFile(html, []byte(spammy), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = e2eRun(t, dir, nil, "validate", cf, "--spam")
	if code != 1 || !strings.Contains(stdout, "GTUBE") {
		t.Fatalf("validate --spam on a GTUBE message: exit %d, %q; want exit 1 naming GTUBE", code, stdout)
	}
}
