//go:build e2e

package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// TestE2EDKIMThroughRelay: DKIM-signed mail relayed by a real Postfix to a server that
// does not announce 8BITMIME (smtp-sink -8) still verifies with go-msgauth: herald's
// 7-bit parts are labelled 7bit and its MAIL FROM declares BODY=8BITMIME only when the
// bytes need it, so Postfix has nothing to re-encode. (Before, parts labelled 8bit were
// turned into quoted-printable by the hop, and every signature failed.)
func TestE2EDKIMThroughRelay(t *testing.T) {
	smtpAddr, _, _, _ := e2eBounceEnv(t)
	sink := os.Getenv("HERALD_SINK7_DIR")
	if sink == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("HERALD_SINK7_DIR is not set; %s", e2eBounceHelp)
		}
		t.Skipf("HERALD_SINK7_DIR is not set; %s", e2eBounceHelp)
	}
	host, port, _ := strings.Cut(smtpAddr, ":")
	run := fmt.Sprintf("d%d", time.Now().UnixNano()%1e9)
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	record := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
	const n = 10
	var list strings.Builder
	list.WriteString("email,name\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&list, "r%d.%s@plain.test,Reader %d\n", i, run, i)
	}
	files := map[string]string{
		"c.yaml": fmt.Sprintf(`name: dkim-%s
from: "News <news@herald.test>"
return_path: bounces@herald.test
subject: "News for {{ .name }} (%s)"
html: t.html
text: t.txt
list: list.csv
unsubscribe:
  url: "https://news.herald.test/unsubscribe"
provider:
  kind: smtp
  host: %s
  port: %s
  tls: none
  dkim: {domain: herald.test, selector: s1, private_key_file: dkim.pem}
`, run, run, host, port),
		"t.html":   `<p>Hello {{ .name }}, here is the news.</p><p><a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p>`,
		"t.txt":    "Hello {{ .name }}, here is the news.\nUnsubscribe: {{ .UnsubscribeURL }}\n",
		"list.csv": list.String(),
		"dkim.pem": string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, sum, _ := e2eSend(t, filepath.Join(dir, "c.yaml"), nil)
	e2eCheckSentAll(t, code, sum, n)

	// Wait for the n messages of this run to reach the sink.
	var got []string
	deadline := time.Now().Add(60 * time.Second)
	for len(got) < n {
		got = got[:0]
		entries, _ := os.ReadDir(sink)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(sink, e.Name()))
			if err == nil && strings.Contains(string(b), "."+run+"@plain.test") && strings.Contains(string(b), "\n\r\n") || strings.Contains(string(b), "\n\n") && strings.Contains(string(b), "."+run+"@plain.test") {
				got = append(got, string(b))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages reached the sink within 60s", len(got), n)
		}
		if len(got) < n {
			time.Sleep(300 * time.Millisecond)
		}
	}
	failed := 0
	for _, raw := range got {
		vs, err := dkim.VerifyWithOptions(strings.NewReader(raw), &dkim.VerifyOptions{
			LookupTXT: func(domain string) ([]string, error) {
				if domain != "s1._domainkey.herald.test" {
					return nil, fmt.Errorf("unexpected lookup %s", domain)
				}
				return []string{record}, nil
			},
		})
		if err != nil || len(vs) != 1 || vs[0].Err != nil {
			failed++
			if failed == 1 {
				var verr error = err
				if len(vs) == 1 {
					verr = vs[0].Err
				}
				t.Errorf("a relayed message fails DKIM (%v):\n%s", verr, raw)
			}
		}
	}
	t.Logf("DKIM through one Postfix hop to a server without 8BITMIME: %d of %d messages verify", len(got)-failed, len(got))
	if failed > 0 {
		t.Fatalf("%d of %d relayed messages fail DKIM verification", failed, len(got))
	}
}
