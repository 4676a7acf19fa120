package campaign

import (
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign/unsubscribe"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// TestRateIsACeilingForAllWorkers: with 8 workers and rate 20/s, no one-second window
// of the relay's arrivals holds more than 20 messages (PRODUCT.md: "a ceiling over any
// one-second window, for all workers together"), and --rate overrides the file. The
// windows are 20 ms short of a second to allow for delivery jitter on a busy machine;
// TestNewLimiterCeiling checks the exact arithmetic.
func TestRateIsACeilingForAllWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("sends for about two seconds")
	}
	var mu sync.Mutex
	var arrivals []time.Time
	srv := smtptest.Start(t, smtptest.Options{Data: func(smtptest.Message) *gosmtp.SMTPError {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		return nil
	}})
	f := newFixture(t, 45, smtpBlock(srv), "")
	r, _ := ParseRate("20/s")
	sum, err := f.send(-1, SendOptions{Workers: 8, Rate: &r})
	if err != nil || sum.Sent != 45 {
		t.Fatalf("send: %s %v", sum.JSON(), err)
	}
	sort.Slice(arrivals, func(i, j int) bool { return arrivals[i].Before(arrivals[j]) })
	for i := range arrivals {
		n := 0
		for j := i; j < len(arrivals) && arrivals[j].Sub(arrivals[i]) <= time.Second-20*time.Millisecond; j++ {
			n++
		}
		if n > 20 {
			t.Fatalf("%d messages arrived within one second from message %d; the ceiling is 20/s", n, i)
		}
	}
	// 45 messages at 20/s cannot take less than about two seconds.
	if span := arrivals[len(arrivals)-1].Sub(arrivals[0]); span < 2*time.Second-100*time.Millisecond {
		t.Fatalf("45 messages at 20/s arrived over %s", span)
	}
}

// TestHeraldSecretSignsTheLinks: with HERALD_SECRET set, the unsubscribe token in every
// message verifies with that secret (so `herald serve` elsewhere can check it).
func TestHeraldSecretSignsTheLinks(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, 3, smtpBlock(srv), "")
	const secret = "a-shared-secret-of-some-length"
	if _, err := Send(t.Context(), f.load(), SendOptions{Store: f.store(), Limit: -1}, testEnv(map[string]string{"HERALD_SECRET": secret})); err != nil {
		t.Fatal(err)
	}
	signer, _ := unsubscribe.NewSigner([]byte(secret))
	other, _ := unsubscribe.NewSigner([]byte("herald-preview-secret-not-for-sending"))
	re := regexp.MustCompile(`List-Unsubscribe: <https://example\.com/u/(u[12]\.[^>]+)>`)
	for _, m := range srv.Messages() {
		tok := re.FindSubmatch(m.Raw)
		if tok == nil {
			t.Fatalf("no token in %s", m.Raw)
		}
		campaign, addr, err := signer.Verify(string(tok[1]))
		if err != nil || campaign != "test-campaign" || addr != m.To[0] {
			t.Fatalf("token %s: %q %q %v", tok[1], campaign, addr, err)
		}
		if _, _, err := other.Verify(string(tok[1])); err == nil {
			t.Fatalf("the token verifies with another secret too")
		}
	}
	if len(srv.Messages()) != 3 {
		t.Fatalf("%d messages", len(srv.Messages()))
	}
}
