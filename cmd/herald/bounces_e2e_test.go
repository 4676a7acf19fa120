//go:build e2e

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// The bounce loop end to end against the real servers that .ci/mailservers.sh starts:
//
//	.ci/mailservers.sh start /tmp/herald-mail 18125 18126 18127 18128 18143 18110
//	HERALD_BOUNCE_SMTP=127.0.0.1:18125 HERALD_BOUNCE_IMAP=127.0.0.1:18143 \
//	HERALD_BOUNCE_POP3=127.0.0.1:18110 HERALD_BOUNCE_PASSWORD_FILE=/tmp/herald-mail/password \
//	HERALD_SINK7_DIR=/tmp/herald-mail/sink7 \
//	go test -tags e2e -run Bounce ./cmd/herald/
//
// Postfix relays bounce.test to an smtp-sink that refuses every recipient (550 5.1.1) and
// ok.test to one that accepts, plain.test to one without 8BITMIME that keeps what it
// receives in HERALD_SINK7_DIR; it delivers its DSNs to bounces@herald.test, a Maildir that
// Dovecot serves over IMAP and POP3 (user "bounces").
const e2eBounceHelp = `start Postfix, smtp-sink and Dovecot on loopback and point the variables at them:
	.ci/mailservers.sh start /tmp/herald-mail 18125 18126 18127 18128 18143 18110
	export HERALD_BOUNCE_SMTP=127.0.0.1:18125 HERALD_BOUNCE_IMAP=127.0.0.1:18143 HERALD_BOUNCE_POP3=127.0.0.1:18110
	export HERALD_BOUNCE_PASSWORD_FILE=/tmp/herald-mail/password HERALD_SINK7_DIR=/tmp/herald-mail/sink7
	(stop them with: .ci/mailservers.sh stop /tmp/herald-mail)`

// e2eBounceEnv returns the servers, failing under CI=true and skipping elsewhere when
// they are not set.
func e2eBounceEnv(t *testing.T) (smtpAddr, imapAddr, pop3Addr, password string) {
	t.Helper()
	smtpAddr, imapAddr, pop3Addr = os.Getenv("HERALD_BOUNCE_SMTP"), os.Getenv("HERALD_BOUNCE_IMAP"), os.Getenv("HERALD_BOUNCE_POP3")
	pwFile := os.Getenv("HERALD_BOUNCE_PASSWORD_FILE")
	if smtpAddr == "" || imapAddr == "" || pop3Addr == "" || pwFile == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("HERALD_BOUNCE_SMTP, HERALD_BOUNCE_IMAP, HERALD_BOUNCE_POP3 and HERALD_BOUNCE_PASSWORD_FILE must be set; %s", e2eBounceHelp)
		}
		t.Skipf("the bounce servers are not set; %s", e2eBounceHelp)
	}
	b, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatalf("HERALD_BOUNCE_PASSWORD_FILE: %v", err)
	}
	return smtpAddr, imapAddr, pop3Addr, strings.TrimSpace(string(b))
}

// e2eWaitDSNs waits until the bounce mailbox holds n messages mentioning tag.
func e2eWaitDSNs(t *testing.T, imapAddr, password, tag string, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, err := imapclient.DialInsecure(imapAddr, nil)
		if err != nil {
			t.Fatalf("imap %s: %v", imapAddr, err)
		}
		found := 0
		if err := c.Login("bounces", password).Wait(); err != nil {
			c.Close()
			t.Fatalf("imap login: %v", err)
		}
		if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			c.Close()
			t.Fatalf("imap select: %v", err)
		}
		data, err := c.Search(&imap.SearchCriteria{Body: []string{tag}}, nil).Wait()
		if err != nil {
			c.Close()
			t.Fatalf("imap search: %v", err)
		}
		found = len(data.AllSeqNums())
		c.Close()
		if found >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d DSNs arrived in the bounce mailbox within 90s", found, n)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

type e2eBounceResult struct {
	Messages        int      `json:"messages"`
	HardBounces     int      `json:"hard_bounces"`
	Failed          []string `json:"failed"`
	Suppressed      []string `json:"suppressed"`
	AlreadyRecorded int      `json:"already_recorded"`
}

func e2eBounces(t *testing.T, dir string, env []string, args ...string) e2eBounceResult {
	t.Helper()
	code, stdout, stderr := e2eRun(t, dir, env, append([]string{"bounces"}, append(args, "--json")...)...)
	if code != 0 {
		t.Fatalf("herald bounces: exit %d: %s", code, stderr)
	}
	var r e2eBounceResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("bounces --json: %v: %s", err, stdout)
	}
	return r
}

// TestE2EBounceLoop: herald sends through a real Postfix that bounces one domain; the
// DSNs land in a Dovecot mailbox; `herald bounces --imap` marks exactly those recipients
// failed with 5.1.1 and suppresses them; a second run (and a POP3 run over the same mail)
// finds nothing new.
func TestE2EBounceLoop(t *testing.T) {
	smtpAddr, imapAddr, pop3Addr, password := e2eBounceEnv(t)
	host, port, _ := strings.Cut(smtpAddr, ":")
	run := fmt.Sprintf("b%d", time.Now().UnixNano()%1e9)
	dir := t.TempDir()
	var bad, good []string
	var list strings.Builder
	list.WriteString("email\n")
	for i := 1; i <= 3; i++ {
		bad = append(bad, fmt.Sprintf("gone%d.%s@bounce.test", i, run))
		good = append(good, fmt.Sprintf("here%d.%s@ok.test", i, run))
	}
	for i := range bad {
		fmt.Fprintf(&list, "%s\n%s\n", good[i], bad[i])
	}
	files := map[string]string{
		"c.yaml": fmt.Sprintf(`name: bounce-%s
from: "News <news@herald.test>"
return_path: bounces@herald.test
subject: "News %s"
html: t.html
list: list.csv
unsubscribe:
  url: "https://news.herald.test/unsubscribe"
provider:
  kind: smtp
  host: %s
  port: %s
  tls: none
`, run, run, host, port),
		"t.html":   `<p>Hello, news. <a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p>`,
		"list.csv": list.String(),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cf := filepath.Join(dir, "c.yaml")
	code, sum, _ := e2eSend(t, cf, nil)
	e2eCheckSentAll(t, code, sum, len(bad)+len(good))

	e2eWaitDSNs(t, imapAddr, password, run, len(bad))
	env := []string{"HERALD_BOUNCES_PASSWORD=" + password}
	first := e2eBounces(t, dir, env, cf, "--imap", "imap://bounces@"+imapAddr+"/INBOX")
	sort.Strings(bad)
	if !reflect.DeepEqual(first.Failed, bad) {
		t.Fatalf("failed %v, want exactly %v", first.Failed, bad)
	}
	_, stdout, _ := e2eRun(t, dir, nil, "status", cf, "--failed")
	for _, a := range bad {
		if !strings.Contains(stdout, a) || !strings.Contains(stdout, "5.1.1") {
			t.Errorf("status --failed does not show %s with 5.1.1", a)
		}
	}
	for _, a := range good {
		if strings.Contains(stdout, a) {
			t.Errorf("status --failed shows %s, which was delivered", a)
		}
	}
	_, stdout, _ = e2eRun(t, dir, nil, "suppress", "list", "--campaign", cf)
	for _, a := range bad {
		if !strings.Contains(stdout, a) {
			t.Errorf("%s is not suppressed", a)
		}
	}
	for _, a := range good {
		if strings.Contains(stdout, a) {
			t.Errorf("%s is suppressed", a)
		}
	}

	second := e2eBounces(t, dir, env, cf, "--imap", "imap://bounces@"+imapAddr+"/INBOX")
	if len(second.Failed) != 0 || len(second.Suppressed) != 0 || second.AlreadyRecorded < len(bad) {
		t.Errorf("second run: %+v, want nothing new", second)
	}
	viaPOP3 := e2eBounces(t, dir, env, cf, "--pop3", "pop3://bounces@"+pop3Addr)
	if len(viaPOP3.Failed) != 0 || viaPOP3.AlreadyRecorded < len(bad) || viaPOP3.Messages != second.Messages {
		t.Errorf("POP3 run over the same mail: %+v (IMAP read %d messages)", viaPOP3, second.Messages)
	}
	// --move-to takes this run's DSNs (and only them) out of the inbox.
	e2eBounces(t, dir, env, cf, "--imap", "imap://bounces@"+imapAddr+"/INBOX", "--move-to", "herald-done")
	after := e2eBounces(t, dir, env, cf, "--imap", "imap://bounces@"+imapAddr+"/INBOX")
	if after.Messages != second.Messages-len(bad) || after.AlreadyRecorded != 0 {
		t.Errorf("after --move-to: %+v, want %d messages and none of this run's", after, second.Messages-len(bad))
	}
	moved := e2eBounces(t, dir, env, cf, "--imap", "imap://bounces@"+imapAddr+"/herald-done")
	if moved.AlreadyRecorded < len(bad) {
		t.Errorf("the moved folder: %+v, want this run's %d DSNs", moved, len(bad))
	}
}
