//go:build e2e

package ses

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/providertest"
)

const emulatorHelp = `start the SES v2 emulator (npm package aws-ses-v2-local 2.10.2) and point HERALD_SES_ENDPOINT at it:
	bash .ci/ses-emulator.sh /tmp/ses-emulator 8005
	HERALD_SES_ENDPOINT=http://127.0.0.1:8005 go test -tags e2e ./providers/ses/
	kill "$(cat /tmp/ses-emulator/pid)"`

// emulatorStore is the part of the emulator's GET /store answer the test reads.
type emulatorStore struct {
	Emails []struct {
		MessageID   string `json:"messageId"`
		From        string `json:"from"`
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

func emulatorEndpoint(t *testing.T) string {
	t.Helper()
	ep := strings.TrimRight(os.Getenv("HERALD_SES_ENDPOINT"), "/")
	if ep == "" {
		t.Fatalf("HERALD_SES_ENDPOINT is not set; %s", emulatorHelp)
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(ep + "/store")
	if err != nil {
		t.Fatalf("the SES emulator does not answer at %s: %v; %s", ep, err, emulatorHelp)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/store answered %s: is this aws-ses-v2-local? %s", ep, resp.Status, emulatorHelp)
	}
	return ep
}

func readStore(t *testing.T, ep string, since int64) emulatorStore {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("%s/store?since=%d", ep, since))
	if err != nil {
		t.Fatalf("reading the emulator's store: %v", err)
	}
	defer resp.Body.Close()
	var st emulatorStore
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decoding the emulator's store: %v", err)
	}
	return st
}

// e2eMessage renders a message the way herald does: raw MIME with the unsubscribe
// headers, a non-ASCII subject in RFC 2047, text and html parts.
func e2eMessage(run string, n int) *providers.Message {
	to := fmt.Sprintf("e2e-%s-%02d@example.org", run, n)
	unsub := fmt.Sprintf("https://news.example.com/u/%s-%d", run, n)
	m := &providers.Message{
		Campaign:    "e2e." + run,
		From:        `"Herald E2E" <news@example.com>`,
		FromAddress: "news@example.com",
		To:          to,
		ToName:      fmt.Sprintf("Reader %d", n),
		Subject:     fmt.Sprintf("Run %s: nouveautés nº%d", run, n),
		MessageID:   fmt.Sprintf("<%s.%d@example.com>", run, n),
	}
	m.Text = fmt.Sprintf("Hello reader %d\r\nUnsubscribe: %s\r\n", n, unsub)
	m.HTML = fmt.Sprintf("<p>Hello reader %d</p><p><a href=\"%s\">Unsubscribe</a></p>", n, unsub)
	m.Headers = []providers.Header{
		{Name: "List-Unsubscribe", Value: "<" + unsub + ">"},
		{Name: "List-Unsubscribe-Post", Value: "List-Unsubscribe=One-Click"},
		{Name: "Precedence", Value: "bulk"},
	}
	m.Raw = providertest.Render(m)
	return m
}

// TestEmulatorEndToEnd sends a small campaign through the provider, opened the way
// herald opens it (Registration, the standard credential chain), to aws-ses-v2-local
// and reads back what the emulator stored.
func TestEmulatorEndToEnd(t *testing.T) {
	ep := emulatorEndpoint(t)
	// Any credentials do: the emulator checks only that the request is signed.
	t.Setenv("AWS_ACCESS_KEY_ID", testKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")

	block := fmt.Sprintf("region: %s\nendpoint: %s\n", testRegion, ep)
	var mu sync.Mutex
	var warnings []string
	spec := providertest.Spec(Kind, block, nil)
	spec.Getenv = os.Getenv
	spec.Warnf = func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		warnings = append(warnings, fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := Registration().Check(spec, true); err != nil {
		t.Fatalf("Check: %v", err)
	}
	since := time.Now().Unix() - 1
	p, err := Registration().Open(ctx, spec)
	if err != nil {
		t.Fatalf("Open against %s: %v", ep, err)
	}
	defer p.Close()
	// The emulator answers GetAccount only when started with AWS_SES_ACCOUNT set (a
	// complete GetAccount answer in JSON); otherwise it answers an unnamed 400.
	read := true
	for _, w := range warnings {
		t.Logf("warning at Open: %s", w)
		switch {
		case strings.HasPrefix(w, "cannot read the SES account"):
			read = false
		case strings.Contains(w, "is in the sandbox"): // an account JSON without production access
		default:
			t.Errorf("unexpected warning %q", w)
		}
	}
	if read {
		rem, known := p.(*Provider).Quota()
		t.Logf("account read: max rate %v/s, remaining quota %v", p.Capabilities().MaxRate, rem)
		if p.Capabilities().MaxRate <= 0 || !known {
			t.Errorf("the account was read without a warning but MaxRate = %v, quota known = %v", p.Capabilities().MaxRate, known)
		}
	}

	run := fmt.Sprintf("%d", time.Now().UnixNano())
	const total, workers = 20, 4
	msgs := make([]*providers.Message, total)
	for i := range msgs {
		msgs[i] = e2eMessage(run, i)
	}
	jobs := make(chan *providers.Message)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range jobs {
				r, err := p.Send(ctx, m)
				if err != nil {
					t.Errorf("Send to %s: %v", m.To, err)
					continue
				}
				if r.MessageID == "" {
					t.Errorf("Send to %s: empty receipt id", m.To)
				}
			}
		}()
	}
	for _, m := range msgs {
		jobs <- m
	}
	close(jobs)
	wg.Wait()

	st := readStore(t, ep, since)
	seen := map[string]int{}
	for _, e := range st.Emails {
		if !strings.Contains(e.Subject, "Run "+run+":") {
			continue // another run's mail
		}
		if len(e.Destination.To) != 1 {
			t.Errorf("stored mail %q has recipients %q, want one", e.Subject, e.Destination.To)
			continue
		}
		a, err := mail.ParseAddress(e.Destination.To[0])
		if err != nil {
			t.Errorf("stored recipient %q: %v", e.Destination.To[0], err)
			continue
		}
		var n int
		if _, err := fmt.Sscanf(strings.TrimPrefix(a.Address, "e2e-"+run+"-"), "%02d@", &n); err != nil || n < 0 || n >= total {
			t.Errorf("stored recipient %q was not sent by this run", a.Address)
			continue
		}
		want := msgs[n]
		seen[a.Address]++
		if e.Subject != want.Subject {
			t.Errorf("%s: subject %q, want %q", a.Address, e.Subject, want.Subject)
		}
		if !strings.Contains(e.Body.Text, fmt.Sprintf("Hello reader %d", n)) || !strings.Contains(e.Body.Text, "https://news.example.com/u/"+run) {
			t.Errorf("%s: text body %q lost its content", a.Address, e.Body.Text)
		}
		if !strings.Contains(e.Body.HTML, fmt.Sprintf("<p>Hello reader %d</p>", n)) {
			t.Errorf("%s: html body %q lost its content", a.Address, e.Body.HTML)
		}
		if !strings.Contains(e.From, "news@example.com") {
			t.Errorf("%s: from %q", a.Address, e.From)
		}
	}
	for _, m := range msgs {
		if c := seen[m.To]; c != 1 {
			t.Errorf("%s arrived %d times, want once", m.To, c)
		}
	}
	if t.Failed() {
		t.Logf("the emulator stored %d messages since %d", len(st.Emails), since)
	}
}

// TestEmulatorRejects checks how a rejection of the real emulator is classified: a raw
// message without a From header is refused with an unnamed 400.
func TestEmulatorRejects(t *testing.T) {
	ep := emulatorEndpoint(t)
	p, err := New(context.Background(), testClient(t, ep), Config{Region: testRegion, Endpoint: ep}, func(string, ...any) {})
	if err != nil {
		t.Fatalf("New against %s: %v", ep, err)
	}
	defer p.Close()
	m := e2eMessage("reject", 1)
	m.Raw = []byte("To: x@example.org\r\nSubject: no sender\r\n\r\nbody\r\n")
	_, err = p.Send(context.Background(), m)
	pe := providers.AsError(err)
	if pe == nil || pe.Kind != providers.Permanent || pe.Code != http.StatusBadRequest {
		t.Fatalf("got %v, want a permanent 400", err)
	}
	t.Logf("emulator rejection: %v", err)
}
