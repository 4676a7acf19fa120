package main

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
)

// TestServeMandrillWebhookSuppresses starts `herald serve` with a Mandrill webhook key
// and a public URL (as behind a reverse proxy), posts a signed hard_bounce the way
// Mandrill does, and finds the address on the store's suppression list; an unsigned
// post changes nothing.
func TestServeMandrillWebhookSuppresses(t *testing.T) {
	dir := t.TempDir()
	const (
		key    = "mandrill-e2e-key"
		public = "https://hooks.acme.example/herald/webhooks/mandrill"
	)
	base := startServe(t, dir, []string{"HERALD_MANDRILL_WEBHOOK_KEY=" + key}, "--store", "herald.db", "--public-url", public)

	post := func(events, sig string) int {
		t.Helper()
		form := url.Values{"mandrill_events": {events}}
		req, _ := http.NewRequest(http.MethodPost, base+"/herald/webhooks/mandrill", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if sig != "" {
			req.Header.Set("X-Mandrill-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	sign := func(events string) string {
		m := hmac.New(sha1.New, []byte(key))
		m.Write([]byte(public + "mandrill_events" + events))
		return base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	list := func() string {
		t.Helper()
		cmd := exec.Command(heraldBin, "suppress", "list", "--store", "herald.db")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("suppress list: %v\n%s", err, out)
		}
		return string(out)
	}

	forged := `[{"event":"hard_bounce","msg":{"email":"forged@example.org"}}]`
	if code := post(forged, ""); code != http.StatusUnauthorized {
		t.Fatalf("unsigned POST = %d, want 401", code)
	}
	events := `[{"event":"hard_bounce","ts":1764324000,"msg":{"email":"gone@example.org","state":"bounced","bounce_description":"bad_mailbox"}},{"event":"open","msg":{"email":"reader@example.org"}}]`
	if code := post(events, sign(events)); code != http.StatusOK {
		t.Fatalf("signed POST = %d, want 200", code)
	}
	got := list()
	if !strings.Contains(got, "gone@example.org") || strings.Contains(got, "forged@example.org") || strings.Contains(got, "reader@example.org") {
		t.Fatalf("suppression list:\n%s\nwant gone@example.org only", got)
	}
}
