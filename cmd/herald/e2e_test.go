//go:build e2e

package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// The end-to-end suite runs the herald binary against real servers on loopback:
//
//	.ci/mailpit.sh .ci/tmp/bin 18025 18026
//	.ci/ses-emulator.sh .ci/tmp/ses 18005
//	HERALD_MAILPIT_SMTP=127.0.0.1:18025 HERALD_MAILPIT_API=http://127.0.0.1:18026 \
//	HERALD_SES_ENDPOINT=http://127.0.0.1:18005 go test -tags e2e ./cmd/herald/
//
// The STARTTLS test starts a Mailpit of its own from HERALD_MAILPIT_BIN (default: the
// one .ci/mailpit.sh installs, .ci/tmp/bin/mailpit).

const (
	e2eMailpitHelp = `start Mailpit on loopback and point HERALD_MAILPIT_SMTP and HERALD_MAILPIT_API at it:
	.ci/mailpit.sh .ci/tmp/bin 18025 18026
	export HERALD_MAILPIT_SMTP=127.0.0.1:18025 HERALD_MAILPIT_API=http://127.0.0.1:18026
	(stop it with: kill -TERM "$(cat .ci/tmp/bin/mailpit.pid)")`
	e2eSESHelp = `start the SES v2 emulator on loopback and point HERALD_SES_ENDPOINT at it:
	.ci/ses-emulator.sh .ci/tmp/ses 18005
	export HERALD_SES_ENDPOINT=http://127.0.0.1:18005
	(stop it with: kill "$(cat .ci/tmp/ses/pid)")`
	// e2eRecipients is the size of the campaigns sent end to end.
	e2eRecipients = 50
)

// e2eRequireEnv returns the variable or fails the test with how to provide it.
func e2eRequireEnv(t *testing.T, name, help string) string {
	t.Helper()
	v := strings.TrimRight(os.Getenv(name), "/")
	if v == "" {
		t.Fatalf("%s is not set; %s", name, help)
	}
	return v
}

// e2eCampaign writes a campaign of e2eRecipients recipients whose names need quoting or
// encoding, with a non-ASCII subject, and the given provider block. It returns the
// campaign file and the recipients' addresses, which carry run so that they are this
// run's own.
func e2eCampaign(t *testing.T, run, provider string) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf(`name: e2e-%s
from: "Herald E2E <news@example.com>"
subject: "{{ .name }}: nouveautés d'automne"
html: t.html
text: t.txt
list: list.csv
unsubscribe:
  url: "https://news.example.com/unsubscribe"
  mailto: "unsubscribe@example.com"
headers:
  X-Campaign: e2e
provider:
%s
rate: "500/s"
workers: 4
retry: {attempts: 2, backoff: 50ms, max_backoff: 100ms}
`, run, provider)
	names := []string{"Hopper, Grace", "René Descartes", `Donald "Don" Knuth`}
	var list strings.Builder
	list.WriteString("email,name\n")
	var addrs []string
	for i := 1; i <= e2eRecipients; i++ {
		name := fmt.Sprintf("Reader %02d", i)
		if i <= len(names) {
			name = names[i-1]
		}
		addr := fmt.Sprintf("r%02d.%s@example.org", i, run)
		addrs = append(addrs, addr)
		fmt.Fprintf(&list, "%s,\"%s\"\n", addr, strings.ReplaceAll(name, `"`, `""`))
	}
	files := map[string]string{
		"c.yaml":   yaml,
		"t.txt":    "Hello {{ .name }},\nnews.\nUnsubscribe: {{ .UnsubscribeURL }}\n",
		"t.html":   `<p>Hello {{ .name }},</p><p><a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p>`,
		"list.csv": list.String(),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "c.yaml"), addrs
}

// e2eRun runs the herald binary with args in dir and an environment of the test's
// own without any HERALD_ variable, plus extra. It returns the exit code, stdout and
// stderr.
func e2eRun(t *testing.T, dir string, extra []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, heraldBin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") && !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running herald %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	t.Logf("herald %s → %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	return code, stdout.String(), stderr.String()
}

// e2eSend runs `herald send CF --yes --json` and decodes its one JSON object.
func e2eSend(t *testing.T, cf string, extra []string) (int, map[string]any, string) {
	t.Helper()
	code, stdout, stderr := e2eRun(t, filepath.Dir(cf), extra, "send", cf, "--yes", "--json")
	obj, err := decodeOneObject(stdout)
	if err != nil {
		t.Fatalf("send --json: %v", err)
	}
	return code, obj, stderr
}

func e2eHTTP(t *testing.T, method, url string, into any) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, body)
	}
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, url, body, err)
		}
	}
}

// e2eMailpitList is the part of Mailpit's GET /api/v1/messages answer the tests read.
type e2eMailpitList struct {
	MessagesCount int `json:"messages_count"`
	Messages      []struct {
		ID   string `json:"ID"`
		From struct{ Name, Address string }
		To   []struct{ Name, Address string }
		// Subject is decoded by Mailpit.
		Subject string
	} `json:"messages"`
}

// e2eMailpitMessages waits until Mailpit at api holds want messages (or 10 s have passed)
// and returns the listing.
func e2eMailpitMessages(t *testing.T, api string, want int) e2eMailpitList {
	t.Helper()
	var l e2eMailpitList
	deadline := time.Now().Add(10 * time.Second)
	for {
		e2eHTTP(t, http.MethodGet, api+"/api/v1/messages?limit=1000", &l)
		if l.MessagesCount >= want || time.Now().After(deadline) {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// e2eCheckSentAll checks a send summary for n recipients all sent.
func e2eCheckSentAll(t *testing.T, code int, sum map[string]any, n int) {
	t.Helper()
	if code != 0 {
		t.Errorf("send exited %d, want 0", code)
	}
	for key, want := range map[string]int{"total": n, "sent": n, "failed": 0, "deferred": 0, "unknown": 0, "pending": 0} {
		if got := jsonCount(t, sum, key); got != want {
			t.Errorf("summary %s = %d, want %d", key, got, want)
		}
	}
}

// TestE2EMailpit sends a campaign of 50 through the smtp provider (AUTH, no TLS) to
// Mailpit and reads back every message and the headers of some.
func TestE2EMailpit(t *testing.T) {
	smtpAddr := e2eRequireEnv(t, "HERALD_MAILPIT_SMTP", e2eMailpitHelp)
	api := e2eRequireEnv(t, "HERALD_MAILPIT_API", e2eMailpitHelp)
	host, port, err := net.SplitHostPort(smtpAddr)
	if err != nil {
		t.Fatalf("HERALD_MAILPIT_SMTP=%q: want host:port: %v", smtpAddr, err)
	}
	e2eHTTP(t, http.MethodDelete, api+"/api/v1/messages", nil)

	run := fmt.Sprintf("m%d", time.Now().UnixNano())
	cf, addrs := e2eCampaign(t, run, fmt.Sprintf(
		"  kind: smtp\n  host: %s\n  port: %s\n  tls: none\n  username: herald\n  password_env: E2E_SMTP_PASSWORD", host, port))
	secret := "e2e-password-" + run
	code, sum, stderr := e2eSend(t, cf, []string{"E2E_SMTP_PASSWORD=" + secret})
	e2eCheckSentAll(t, code, sum, e2eRecipients)
	if strings.Contains(stderr, secret) {
		t.Error("the SMTP password appears on stderr")
	}

	l := e2eMailpitMessages(t, api, e2eRecipients)
	if l.MessagesCount != e2eRecipients {
		t.Errorf("Mailpit holds %d messages, want %d", l.MessagesCount, e2eRecipients)
	}
	ids := map[string]string{} // address → Mailpit ID
	for _, m := range l.Messages {
		if len(m.To) != 1 {
			t.Errorf("message %s has %d To addresses", m.ID, len(m.To))
			continue
		}
		to := m.To[0].Address
		if _, dup := ids[to]; dup {
			t.Errorf("%s received the campaign twice", to)
		}
		ids[to] = m.ID
		if !strings.HasSuffix(m.Subject, ": nouveautés d'automne") {
			t.Errorf("%s: subject %q", to, m.Subject)
		}
		if m.From.Address != "news@example.com" || m.From.Name != "Herald E2E" {
			t.Errorf("%s: From %+v", to, m.From)
		}
	}
	for _, a := range addrs {
		if _, ok := ids[a]; !ok {
			t.Errorf("%s received nothing", a)
		}
	}

	// Headers of the recipients whose names need quoting or encoding.
	for i, want := range []string{"Hopper, Grace", "René Descartes", `Donald "Don" Knuth`, "Reader 50"} {
		addr := addrs[i]
		if i == 3 {
			addr = addrs[e2eRecipients-1]
		}
		id, ok := ids[addr]
		if !ok {
			continue
		}
		var h map[string][]string
		e2eHTTP(t, http.MethodGet, api+"/api/v1/message/"+id+"/headers", &h)
		one := func(name string) string {
			v := h[name]
			if len(v) != 1 {
				t.Errorf("%s: %d %s header(s), want 1: %q", addr, len(v), name, v)
				return ""
			}
			return strings.Join(strings.Fields(v[0]), " ")
		}
		to, err := mail.ParseAddress(one("To"))
		if err != nil || to.Name != want || to.Address != addr {
			t.Errorf("%s: To %q parses as %v (%v), want name %q", addr, h["To"], to, err, want)
		}
		subject, err := new(mime.WordDecoder).DecodeHeader(one("Subject"))
		if err != nil || subject != want+": nouveautés d'automne" {
			t.Errorf("%s: Subject %q decodes to %q (%v)", addr, h["Subject"], subject, err)
		}
		unsub := regexp.MustCompile(`^<https://news\.example\.com/unsubscribe/[A-Za-z0-9._~-]+>, <mailto:unsubscribe@example\.com>$`)
		if got := one("List-Unsubscribe"); !unsub.MatchString(got) {
			t.Errorf("%s: List-Unsubscribe %q does not match %s", addr, got, unsub)
		}
		if got := one("List-Unsubscribe-Post"); got != "List-Unsubscribe=One-Click" {
			t.Errorf("%s: List-Unsubscribe-Post %q", addr, got)
		}
		for name, want := range map[string]string{"Precedence": "bulk", "X-Campaign": "e2e", "Mime-Version": "1.0"} {
			if got := one(name); got != want {
				t.Errorf("%s: %s %q, want %q", addr, name, got, want)
			}
		}
		if got := one("Message-Id"); !strings.HasSuffix(got, "@example.com>") {
			t.Errorf("%s: Message-ID %q", addr, got)
		}
	}

	// A re-run sends nothing more.
	code, sum, _ = e2eSend(t, cf, []string{"E2E_SMTP_PASSWORD=" + secret})
	if code != 0 || jsonCount(t, sum, "sent") != 0 || jsonCount(t, sum, "skipped.already_done") != e2eRecipients {
		t.Errorf("re-run: exit %d, sent %d, already_done %d; want 0, 0, %d", code, jsonCount(t, sum, "sent"), jsonCount(t, sum, "skipped.already_done"), e2eRecipients)
	}
	if l := e2eMailpitMessages(t, api, 0); l.MessagesCount != e2eRecipients {
		t.Errorf("after the re-run Mailpit holds %d messages, want %d", l.MessagesCount, e2eRecipients)
	}
}

// e2eSESStore is the part of the emulator's GET /store answer the test reads.
type e2eSESStore struct {
	Emails []struct {
		Subject     string `json:"subject"`
		Destination struct {
			To []string `json:"to"`
		} `json:"destination"`
		Body struct {
			Text string `json:"text"`
			HTML string `json:"html"`
		} `json:"body"`
	} `json:"emails"`
}

// TestE2ESES sends the same kind of campaign through the ses provider to the SES v2
// emulator and reads back its store. The store is not cleared: the providers/ses suite
// may use the same emulator at the same time; this run's recipients carry a run id
// and only they are counted.
func TestE2ESES(t *testing.T) {
	ep := e2eRequireEnv(t, "HERALD_SES_ENDPOINT", e2eSESHelp)
	var probe e2eSESStore
	e2eHTTP(t, http.MethodGet, ep+"/store", &probe)

	run := fmt.Sprintf("s%d", time.Now().UnixNano())
	cf, addrs := e2eCampaign(t, run, fmt.Sprintf("  kind: ses\n  region: eu-west-1\n  endpoint: %s", ep))
	none := filepath.Join(t.TempDir(), "none")
	env := []string{
		"AWS_ACCESS_KEY_ID=AKIAE2EHERALDTEST", "AWS_SECRET_ACCESS_KEY=e2e-secret-" + run,
		"AWS_REGION=eu-west-1", "AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none,
		"AWS_EC2_METADATA_DISABLED=true",
	}

	// validate checks the settings without connecting.
	if code, _, stderr := e2eRun(t, filepath.Dir(cf), env, "validate", cf); code != 0 || !strings.Contains(stderr, "is valid") {
		t.Fatalf("validate: exit %d", code)
	}
	code, sum, stderr := e2eSend(t, cf, env)
	e2eCheckSentAll(t, code, sum, e2eRecipients)
	if strings.Contains(stderr, "e2e-secret-"+run) {
		t.Error("the AWS secret appears on stderr")
	}

	var st e2eSESStore
	e2eHTTP(t, http.MethodGet, ep+"/store", &st)
	got := map[string]int{}
	for _, e := range st.Emails {
		for _, to := range e.Destination.To {
			if !strings.Contains(to, run) {
				continue
			}
			addr, err := mail.ParseAddress(to)
			if err != nil {
				t.Errorf("stored destination %q: %v", to, err)
				continue
			}
			got[addr.Address]++
			if !strings.HasSuffix(e.Subject, ": nouveautés d'automne") {
				t.Errorf("%s: subject %q", to, e.Subject)
			}
			if !strings.Contains(e.Body.Text+e.Body.HTML, "https://news.example.com/unsubscribe/") {
				t.Errorf("%s: no unsubscribe link in the stored body", to)
			}
		}
	}
	for _, a := range addrs {
		if got[a] != 1 {
			t.Errorf("%s: stored %d time(s), want once", a, got[a])
		}
	}
	if len(got) != e2eRecipients {
		t.Errorf("the emulator stored %d recipients of this run, want %d", len(got), e2eRecipients)
	}
}

// e2eMailpitBinary finds the Mailpit binary: HERALD_MAILPIT_BIN, or the one
// .ci/mailpit.sh installs into .ci/tmp/bin of the repository.
func e2eMailpitBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HERALD_MAILPIT_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("HERALD_MAILPIT_BIN=%s: %v", p, err)
		}
		return p
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, ".ci", "tmp", "bin", "mailpit")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no Mailpit binary at %s and HERALD_MAILPIT_BIN is not set; install it with\n\t.ci/mailpit.sh .ci/tmp/bin 18025 18026\n(or GOBIN=$PWD/.ci/tmp/bin go install github.com/axllent/mailpit@v1.33.1)", p)
	}
	return p
}

// e2eFreePort returns a loopback port that was free a moment ago.
func e2eFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// e2eStartTLSMailpit starts a Mailpit that requires STARTTLS with a self-signed
// certificate for 127.0.0.1. It returns the SMTP port, the API base URL and the
// certificate in PEM; t.Cleanup stops Mailpit with SIGTERM.
func e2eStartTLSMailpit(t *testing.T) (int, string, []byte) {
	t.Helper()
	bin := e2eMailpitBinary(t)
	dir := t.TempDir()
	cfg, certPEM := smtptest.SelfSigned(t)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cfg.Certificates[0].PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	smtpPort, httpPort := e2eFreePort(t), e2eFreePort(t)
	api := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	var log bytes.Buffer
	cmd := exec.Command(bin,
		"--smtp", fmt.Sprintf("127.0.0.1:%d", smtpPort), "--listen", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--database", filepath.Join(dir, "mailpit.db"),
		"--disable-version-check", "--smtp-disable-rdns", "--smtp-auth-accept-any", "--max", "0",
		"--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile, "--smtp-require-starttls")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("Mailpit did not stop within 10s of SIGTERM")
		}
	})
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Get(api + "/api/v1/messages?limit=1")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return smtpPort, api, certPEM
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("Mailpit exited (%v); its output:\n%s", err, log.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("Mailpit did not answer on %s within 20s; its output:\n%s", api, log.String())
		}
	}
}

// TestE2EMailpitSTARTTLS sends over STARTTLS to a Mailpit that requires it: with the
// certificate as ca_file every message arrives; without it the run stops on the
// certificate and nothing is delivered.
func TestE2EMailpitSTARTTLS(t *testing.T) {
	port, api, certPEM := e2eStartTLSMailpit(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	provider := func(extra string) string {
		return fmt.Sprintf("  kind: smtp\n  host: 127.0.0.1\n  port: %d\n  tls: starttls\n  username: herald\n  password_env: E2E_SMTP_PASSWORD\n%s", port, extra)
	}
	env := []string{"E2E_SMTP_PASSWORD=tls-secret"}

	t.Run("untrusted certificate", func(t *testing.T) {
		cf, _ := e2eCampaign(t, fmt.Sprintf("u%d", time.Now().UnixNano()), provider(""))
		code, stdout, stderr := e2eRun(t, filepath.Dir(cf), env, "send", cf, "--yes", "--json")
		if code != 1 && code != 2 {
			t.Errorf("exit %d, want 1 or 2", code)
		}
		if !regexp.MustCompile(`(?i)certificate|x509`).MatchString(stderr) {
			t.Errorf("stderr does not name the certificate problem")
		}
		if sum, err := decodeOneObject(stdout); err == nil && jsonCount(t, sum, "sent") != 0 {
			t.Errorf("summary says %d sent", jsonCount(t, sum, "sent"))
		}
		if l := e2eMailpitMessages(t, api, 0); l.MessagesCount != 0 {
			t.Errorf("Mailpit holds %d messages, want none", l.MessagesCount)
		}
	})

	t.Run("ca_file", func(t *testing.T) {
		cf, addrs := e2eCampaign(t, fmt.Sprintf("t%d", time.Now().UnixNano()), provider("  ca_file: "+caFile))
		code, sum, _ := e2eSend(t, cf, env)
		e2eCheckSentAll(t, code, sum, e2eRecipients)
		l := e2eMailpitMessages(t, api, e2eRecipients)
		if l.MessagesCount != e2eRecipients {
			t.Errorf("Mailpit holds %d messages, want %d", l.MessagesCount, e2eRecipients)
		}
		seen := map[string]bool{}
		for _, m := range l.Messages {
			for _, to := range m.To {
				seen[to.Address] = true
			}
		}
		for _, a := range addrs {
			if !seen[a] {
				t.Errorf("%s received nothing", a)
			}
		}
	})
}
