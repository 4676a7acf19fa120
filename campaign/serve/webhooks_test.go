package serve

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers"
)

var hookNow = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func webhookServer(t *testing.T, cfg WebhookConfig) (*httptest.Server, *fakeStore) {
	t.Helper()
	st := &fakeStore{}
	h, err := New(st, secret, func() time.Time { return hookNow })
	if err != nil {
		t.Fatal(err)
	}
	if err := h.EnableWebhooks(cfg); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, st
}

func send(t *testing.T, method, u string, hdr http.Header, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// emails lists the suppressed addresses, sorted, and checks each entry's source and time.
func emails(t *testing.T, st *fakeStore, source string) []string {
	t.Helper()
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for _, s := range st.list {
		if s.Source != source || !s.At.Equal(hookNow) || s.Reason == "" {
			t.Errorf("suppression %+v: want source %s, reason, At %v", s, source, hookNow)
		}
		out = append(out, s.Email)
	}
	slices.Sort(out)
	return out
}

// --- SendGrid ---

func sendgridSign(t *testing.T, key *ecdsa.PrivateKey, ts string, body []byte) string {
	t.Helper()
	d := sha256.Sum256(append([]byte(ts), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func TestSendGridWebhook(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	srv, _ := webhookServer(t, WebhookConfig{SendGridKey: base64.StdEncoding.EncodeToString(der)})
	events := fixture(t, "sendgrid_events.json")
	ts := strconv.FormatInt(hookNow.Unix(), 10)
	stale := strconv.FormatInt(hookNow.Add(-11*time.Minute).Unix(), 10)
	ahead := strconv.FormatInt(hookNow.Add(6*time.Minute).Unix(), 10)
	late := strconv.FormatInt(hookNow.Add(-9*time.Minute).Unix(), 10)
	badAddr := []byte(`[{"email":"ok@example.com","event":"spamreport"},{"email":"not an address","event":"bounce","type":"bounce"}]`)
	notObject := []byte(`[{"email":"ok@example.com","event":"spamreport"},"bounce",{"email":7,"event":"bounce","type":"bounce"}]`)

	tests := []struct {
		name   string
		body   []byte
		sig    string // empty: no signature header
		ts     string // empty: no timestamp header
		code   int
		emails []string
	}{
		{"signed events", events, sendgridSign(t, key, ts, events), ts, 200,
			[]string{"dropped-bounced@example.com", "dropped-invalid@example.com", "group@example.com", "hard@example.com", "spam@example.com", "unsub@example.com"}},
		{"tampered body", bytes.Replace(events, []byte("open@example.com"), []byte("open@example.org"), 1), sendgridSign(t, key, ts, events), ts, 401, nil},
		{"other timestamp", events, sendgridSign(t, key, ts, events), ts + "1", 401, nil},
		{"replayed: signed 11 minutes ago", events, sendgridSign(t, key, stale, events), stale, 401, nil},
		{"signed 6 minutes ahead", events, sendgridSign(t, key, ahead, events), ahead, 401, nil},
		{"signed 9 minutes ago", []byte(`[]`), sendgridSign(t, key, late, []byte(`[]`)), late, 200, nil},
		{"missing signature", events, "", ts, 401, nil},
		{"missing timestamp", events, sendgridSign(t, key, ts, events), "", 401, nil},
		{"wrong key", events, sendgridSign(t, other, ts, events), ts, 401, nil},
		{"signature not base64", events, "!!!", ts, 401, nil},
		{"malformed body", []byte(`{"event":"bounce"`), sendgridSign(t, key, ts, []byte(`{"event":"bounce"`)), ts, 400, nil},
		{"bad address skipped, the rest applied", badAddr, sendgridSign(t, key, ts, badAddr), ts, 200, []string{"ok@example.com"}},
		{"an entry that is no event skipped", notObject, sendgridSign(t, key, ts, notObject), ts, 200, []string{"ok@example.com"}},
		{"empty array", []byte(`[]`), sendgridSign(t, key, ts, []byte(`[]`)), ts, 200, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{}
			h, _ := New(st, secret, func() time.Time { return hookNow })
			if err := h.EnableWebhooks(WebhookConfig{SendGridKey: base64.StdEncoding.EncodeToString(der)}); err != nil {
				t.Fatal(err)
			}
			hdr := http.Header{"Content-Type": {"application/json"}}
			if tt.sig != "" {
				hdr.Set("X-Twilio-Email-Event-Webhook-Signature", tt.sig)
			}
			if tt.ts != "" {
				hdr.Set("X-Twilio-Email-Event-Webhook-Timestamp", tt.ts)
			}
			req := httptest.NewRequest(http.MethodPost, "/hooks/webhooks/sendgrid", bytes.NewReader(tt.body))
			req.Header = hdr
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("code = %d (%s), want %d", rec.Code, rec.Body, tt.code)
			}
			if got := emails(t, st, "webhook:sendgrid"); !slices.Equal(got, tt.emails) {
				t.Fatalf("suppressed %v, want %v", got, tt.emails)
			}
		})
	}

	// Over a real connection, under a prefix.
	code, body := send(t, http.MethodPost, srv.URL+"/a/b/webhooks/sendgrid", http.Header{
		"X-Twilio-Email-Event-Webhook-Signature": {sendgridSign(t, key, ts, events)},
		"X-Twilio-Email-Event-Webhook-Timestamp": {ts},
	}, events)
	if code != 200 || !strings.Contains(body, "6 suppressed") {
		t.Fatalf("POST = %d %q", code, body)
	}
}

func TestSendGridReasonKept(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	srv, st := webhookServer(t, WebhookConfig{SendGridKey: base64.StdEncoding.EncodeToString(der)})
	body := []byte(`[{"email":"a@example.com","event":"bounce","type":"bounce","reason":"550 5.1.1 no\nsuch user"}]`)
	code, _ := send(t, http.MethodPost, srv.URL+"/webhooks/sendgrid", http.Header{
		"X-Twilio-Email-Event-Webhook-Signature": {sendgridSign(t, key, strconv.FormatInt(hookNow.Unix(), 10), body)},
		"X-Twilio-Email-Event-Webhook-Timestamp": {strconv.FormatInt(hookNow.Unix(), 10)},
	}, body)
	if code != 200 || len(st.list) != 1 || st.list[0].Reason != "bounce: 550 5.1.1 no such user" {
		t.Fatalf("code %d, list %+v", code, st.list)
	}
}

func TestSendGridKeyChecked(t *testing.T) {
	h, _ := New(&fakeStore{}, secret, nil)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	for _, k := range []string{"not base64!", base64.StdEncoding.EncodeToString([]byte("junk")), base64.StdEncoding.EncodeToString(rsaDER)} {
		err := h.EnableWebhooks(WebhookConfig{SendGridKey: k})
		if err == nil || !strings.Contains(err.Error(), EnvSendGridKey) {
			t.Errorf("key %.20q: err = %v, want one naming %s", k, err, EnvSendGridKey)
		}
	}
}

// --- Mandrill ---

// mandrillSign follows Mandrill's documented steps: the URL, then each POST field sorted
// by name as name and value, HMAC-SHA1 with the key, base64.
func mandrillSign(key, u string, form url.Values) string {
	s := u
	names := make([]string, 0, len(form))
	for n := range form {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s += n + form.Get(n)
	}
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestMandrillWebhook(t *testing.T) {
	const key = "mandrill-webhook-key"
	const public = "https://hooks.acme.example/herald/webhooks/mandrill"
	srv, _ := webhookServer(t, WebhookConfig{})
	events := string(fixture(t, "mandrill_events.json"))
	form := url.Values{"mandrill_events": {events}}
	badJSON := url.Values{"mandrill_events": {`[{"event":"hard_bounce"`}}
	noField := url.Values{"other": {"x"}}
	badAddr := url.Values{"mandrill_events": {`[{"event":"spam","msg":{"email":"ok@example.com"}},{"event":"hard_bounce","msg":{"email":""}}]`}}
	senderReject := url.Values{"mandrill_events": {`[
		{"event":"reject","msg":{"email":"unsigned@example.com","state":"rejected","reject":{"reason":"unsigned"}}},
		{"event":"reject","msg":{"email":"sender@example.com","state":"rejected","reject_reason":"invalid-sender"}},
		{"event":"reject","msg":{"email":"rule@example.com","state":"rejected","reject":{"reason":"rule"}}},
		{"event":"reject","msg":{"email":"blocked@example.com","state":"rejected","reject":{"reason":"hard-bounce"}}}]`}}

	tests := []struct {
		name     string
		cfgURL   string // WebhookConfig.PublicURL
		form     string // the body sent
		sig      string
		code     int
		emails   []string
		bodyWant string
	}{
		{"signed events", public, form.Encode(), mandrillSign(key, public, form), 200,
			[]string{"hard@example.com", "reject@example.com", "spam@example.com", "unsub@example.com"}, "4 suppressed"},
		{"public URL given as base", "https://hooks.acme.example/herald/", form.Encode(), mandrillSign(key, public, form), 200,
			[]string{"hard@example.com", "reject@example.com", "spam@example.com", "unsub@example.com"}, ""},
		{"public URL with a query, verbatim", public + "?site=news&x=a%2Fb", form.Encode(), mandrillSign(key, public+"?site=news&x=a%2Fb", form), 200,
			[]string{"hard@example.com", "reject@example.com", "spam@example.com", "unsub@example.com"}, ""},
		{"signed for another URL", public, form.Encode(), mandrillSign(key, "https://hooks.acme.example/other", form), 401, nil, "signature does not match"},
		{"tampered body", public, url.Values{"mandrill_events": {strings.Replace(events, "spam@example.com", "spam@example.org", 1)}}.Encode(), mandrillSign(key, public, form), 401, nil, ""},
		{"missing signature", public, form.Encode(), "", 401, nil, "X-Mandrill-Signature"},
		{"wrong key", public, form.Encode(), mandrillSign("other-key", public, form), 401, nil, ""},
		{"malformed events", public, badJSON.Encode(), mandrillSign(key, public, badJSON), 400, nil, "mandrill_events"},
		{"no events field", public, noField.Encode(), mandrillSign(key, public, noField), 400, nil, "mandrill_events"},
		{"bad address skipped, the rest applied", public, badAddr.Encode(), mandrillSign(key, public, badAddr), 200, []string{"ok@example.com"}, "ok"},
		{"reject for a sender reason suppresses nothing", public, senderReject.Encode(), mandrillSign(key, public, senderReject), 200, []string{"blocked@example.com"}, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{}
			h, _ := New(st, secret, func() time.Time { return hookNow })
			if err := h.EnableWebhooks(WebhookConfig{MandrillKey: providers.NewSecret(key), PublicURL: tt.cfgURL}); err != nil {
				t.Fatal(err)
			}
			// Behind a proxy: the path and Host herald sees differ from the public URL.
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8080/internal/webhooks/mandrill", strings.NewReader(tt.form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.sig != "" {
				req.Header.Set("X-Mandrill-Signature", tt.sig)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.bodyWant) {
				t.Fatalf("code = %d (%s), want %d with %q", rec.Code, rec.Body, tt.code, tt.bodyWant)
			}
			if got := emails(t, st, "webhook:mandrill"); !slices.Equal(got, tt.emails) {
				t.Fatalf("suppressed %v, want %v", got, tt.emails)
			}
			if strings.Contains(rec.Body.String(), key) {
				t.Fatal("answer shows the key")
			}
		})
	}

	// Off: HEAD and GET still answer 200 (Mandrill checks the URL before its key exists);
	// POST answers 403 naming the variable.
	for _, m := range []string{http.MethodHead, http.MethodGet} {
		if code, _ := send(t, m, srv.URL+"/webhooks/mandrill", nil, nil); code != 200 {
			t.Errorf("%s = %d, want 200", m, code)
		}
	}
	code, body := send(t, http.MethodPost, srv.URL+"/webhooks/mandrill", nil, []byte(form.Encode()))
	if code != 403 || !strings.Contains(body, EnvMandrillKey) {
		t.Fatalf("POST without a key = %d %q", code, body)
	}
}

func TestMandrillWithoutPublicURLSignsRequestURL(t *testing.T) {
	const key = "k"
	srv, st := webhookServer(t, WebhookConfig{MandrillKey: providers.NewSecret(key)})
	form := url.Values{"mandrill_events": {`[{"event":"hard_bounce","msg":{"email":"x@example.com"}}]`}}
	u := srv.URL + "/webhooks/mandrill?site=news"
	code, body := send(t, http.MethodPost, u, http.Header{
		"Content-Type":         {"application/x-www-form-urlencoded"},
		"X-Mandrill-Signature": {mandrillSign(key, u, form)},
	}, []byte(form.Encode()))
	if code != 200 || len(st.list) != 1 || st.list[0].Email != "x@example.com" {
		t.Fatalf("POST = %d %q, list %+v", code, body, st.list)
	}
}

// --- SES through SNS ---

const (
	testTopic   = "arn:aws:sns:us-east-1:123456789012:herald-ses"
	testCertURL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
)

type snsSigner struct {
	key     *rsa.PrivateKey
	certPEM []byte
}

func newSNSSigner(t *testing.T) *snsSigner {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sns.amazonaws.com"},
		NotBefore:    hookNow.Add(-time.Hour),
		NotAfter:     hookNow.Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &snsSigner{key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// sign fills Signature in m (a decoded SNS message) as SNS documents it.
func (s *snsSigner) sign(t *testing.T, m map[string]string) {
	t.Helper()
	keys := []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
	if m["Type"] != "Notification" {
		keys = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	}
	var b strings.Builder
	for _, k := range keys {
		if v, ok := m[k]; ok {
			b.WriteString(k + "\n" + v + "\n")
		}
	}
	var sig []byte
	var err error
	if m["SignatureVersion"] == "2" {
		d := sha256.Sum256([]byte(b.String()))
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, d[:])
	} else {
		d := sha1.Sum([]byte(b.String()))
		sig, err = rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA1, d[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	m["Signature"] = base64.StdEncoding.EncodeToString(sig)
}

// fetcher serves the signer's certificate at testCertURL only, and records what it was asked.
type fetcher struct {
	mu   sync.Mutex
	pem  []byte
	urls []string
}

func (f *fetcher) fetch(_ context.Context, u string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.urls = append(f.urls, u)
	if u != testCertURL {
		return nil, errors.New("no such certificate")
	}
	return f.pem, nil
}

func snsEnvelope(t *testing.T, name string) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(fixture(t, name), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSESWebhook(t *testing.T) {
	signer := newSNSSigner(t)
	impostor := newSNSSigner(t)
	note := func(t *testing.T, ses string, edit func(map[string]string)) []byte {
		m := snsEnvelope(t, "sns_notification.json")
		m["Message"] = string(fixture(t, ses))
		if edit != nil {
			edit(m)
		}
		signer.sign(t, m)
		b, _ := json.Marshal(m)
		return b
	}
	after := func(t *testing.T, ses string, edit func(map[string]string)) []byte {
		var m map[string]string
		_ = json.Unmarshal(note(t, ses, nil), &m)
		edit(m)
		b, _ := json.Marshal(m)
		return b
	}
	hard := []string{"hard1@example.com", "hard2@example.com"}

	tests := []struct {
		name   string
		body   []byte
		code   int
		emails []string
	}{
		{"permanent bounce, SignatureVersion 1", note(t, "ses_bounce_permanent.json", nil), 200, hard},
		{"permanent bounce, SignatureVersion 2", note(t, "ses_bounce_permanent.json", func(m map[string]string) { m["SignatureVersion"] = "2" }), 200, hard},
		{"with a Subject", note(t, "ses_bounce_permanent.json", func(m map[string]string) { m["Subject"] = "Amazon SES Email Event Notification" }), 200, hard},
		{"transient bounce ignored", note(t, "ses_bounce_transient.json", nil), 200, nil},
		{"complaint", note(t, "ses_complaint.json", nil), 200, []string{"complainer@example.com"}},
		{"event publishing bounce", note(t, "ses_event_bounce.json", nil), 200, []string{"event-hard@example.com"}},
		{"delivery event ignored", note(t, "ses_event_delivery.json", nil), 200, nil},
		{"tampered message", after(t, "ses_bounce_permanent.json", func(m map[string]string) {
			m["Message"] = strings.Replace(m["Message"], "hard2@example.com", "victim@example.com", 1)
		}), 401, nil},
		{"subject added after signing", after(t, "ses_bounce_permanent.json", func(m map[string]string) { m["Subject"] = "x" }), 401, nil},
		{"signed by another key", after(t, "ses_bounce_permanent.json", func(m map[string]string) {
			impostor.sign(t, m)
		}), 401, nil},
		{"missing signature", after(t, "ses_bounce_permanent.json", func(m map[string]string) { delete(m, "Signature") }), 401, nil},
		{"unknown signature version", after(t, "ses_bounce_permanent.json", func(m map[string]string) { m["SignatureVersion"] = "3" }), 401, nil},
		{"certificate over http", note(t, "ses_bounce_permanent.json", func(m map[string]string) {
			m["SigningCertURL"] = strings.Replace(testCertURL, "https:", "http:", 1)
		}), 401, nil},
		{"certificate on another host", note(t, "ses_bounce_permanent.json", func(m map[string]string) {
			m["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem"
		}), 401, nil},
		{"certificate on a lookalike host", note(t, "ses_bounce_permanent.json", func(m map[string]string) {
			m["SigningCertURL"] = "https://evil-sns.us-east-1.amazonaws.com/cert.pem"
		}), 401, nil},
		{"topic not allowed", note(t, "ses_bounce_permanent.json", func(m map[string]string) {
			m["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:someone-else"
		}), 403, nil},
		{"certificate unavailable", note(t, "ses_bounce_permanent.json", func(m map[string]string) {
			m["SigningCertURL"] = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-other.pem"
		}), 503, nil},
		{"malformed body", []byte(`{"Type":"Notification",`), 400, nil},
		{"not an SNS message", []byte(`[1,2]`), 400, nil},
		{"message is not JSON", note(t, "ses_bounce_permanent.json", func(m map[string]string) { m["Message"] = "hello" }), 400, nil},
		{"bad recipient skipped, the other applied", note(t, "ses_bounce_permanent.json", func(m map[string]string) {
			m["Message"] = strings.Replace(m["Message"], "hard2@example.com", "not an address", 1)
		}), 200, []string{"hard1@example.com"}},
		{"not-spam complaint suppresses nothing", note(t, "ses_complaint.json", func(m map[string]string) {
			m["Message"] = strings.Replace(m["Message"], `"complaintFeedbackType":"abuse"`, `"complaintFeedbackType":"not-spam"`, 1)
		}), 200, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{}
			h, _ := New(st, secret, func() time.Time { return hookNow })
			f := &fetcher{pem: signer.certPEM}
			if err := h.EnableWebhooks(WebhookConfig{SNSTopicARNs: []string{testTopic}, FetchCert: f.fetch}); err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, "/x/webhooks/ses", bytes.NewReader(tt.body))
			req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("code = %d (%s), want %d", rec.Code, rec.Body, tt.code)
			}
			if got := emails(t, st, "webhook:ses"); !slices.Equal(got, tt.emails) {
				t.Fatalf("suppressed %v, want %v", got, tt.emails)
			}
			for _, u := range f.urls {
				if checkCertURL(u) != nil {
					t.Fatalf("fetched %s, which is no SNS certificate URL", u)
				}
			}
		})
	}
}

func TestSESCertificateCached(t *testing.T) {
	signer := newSNSSigner(t)
	f := &fetcher{pem: signer.certPEM}
	srv, st := webhookServer(t, WebhookConfig{SNSTopicARNs: []string{"arn:other", testTopic}, FetchCert: f.fetch})
	for i := range 3 {
		m := snsEnvelope(t, "sns_notification.json")
		m["Message"] = string(fixture(t, "ses_complaint.json"))
		m["MessageId"] = fmt.Sprint("id-", i)
		signer.sign(t, m)
		b, _ := json.Marshal(m)
		if code, body := send(t, http.MethodPost, srv.URL+"/webhooks/ses", nil, b); code != 200 {
			t.Fatalf("POST %d = %d %q", i, code, body)
		}
	}
	if len(f.urls) != 1 || len(st.list) != 3 {
		t.Fatalf("fetched %v for 3 messages; suppressed %d", f.urls, len(st.list))
	}
}

func TestSESSubscriptionConfirmationLoggedNotConfirmed(t *testing.T) {
	signer := newSNSSigner(t)
	f := &fetcher{pem: signer.certPEM}
	var mu sync.Mutex
	var logs []string
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(format, args...))
	}
	srv, st := webhookServer(t, WebhookConfig{SNSTopicARNs: []string{testTopic}, FetchCert: f.fetch, Logf: logf})
	m := snsEnvelope(t, "sns_subscription_confirmation.json")
	signer.sign(t, m)
	b, _ := json.Marshal(m)
	code, body := send(t, http.MethodPost, srv.URL+"/webhooks/ses", http.Header{"X-Amz-Sns-Message-Type": {"SubscriptionConfirmation"}}, b)
	if code != 200 {
		t.Fatalf("POST = %d %q", code, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logs) != 1 || !strings.Contains(logs[0], m["SubscribeURL"]) {
		t.Fatalf("logs = %q, want the SubscribeURL", logs)
	}
	if !slices.Equal(f.urls, []string{testCertURL}) {
		t.Fatalf("requests made: %v, want only the certificate (never the SubscribeURL)", f.urls)
	}
	if len(st.list) != 0 {
		t.Fatalf("suppressed %v", st.list)
	}

	// A confirmation that is not signed is not even logged.
	m["SubscribeURL"] = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=evil"
	b, _ = json.Marshal(m)
	if code, _ := send(t, http.MethodPost, srv.URL+"/webhooks/ses", nil, b); code != 401 || len(logs) != 1 {
		t.Fatalf("tampered confirmation: %d, logs %q", code, logs)
	}
}

// --- routing ---

func TestWebhookRouting(t *testing.T) {
	srv, st := webhookServer(t, WebhookConfig{})
	for _, tt := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"POST", "/webhooks/sendgrid", 403, EnvSendGridKey},
		{"POST", "/prefix/webhooks/sendgrid/", 403, EnvSendGridKey},
		{"POST", "/webhooks/mandrill", 403, EnvMandrillKey},
		{"POST", "/a/webhooks/ses", 403, EnvSNSTopicARN},
		{"HEAD", "/webhooks/ses", 200, ""},
		{"GET", "/webhooks/sendgrid", 200, "sendgrid webhook"},
		{"PUT", "/webhooks/sendgrid", 405, ""},
		{"POST", "/webhooks/sendgridx", 404, "not an unsubscribe link"},
		{"POST", "/webhooks/other", 404, "not an unsubscribe link"},
	} {
		code, body := send(t, tt.method, srv.URL+tt.path, nil, []byte("[]"))
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s = %d %q, want %d with %q", tt.method, tt.path, code, body, tt.code, tt.want)
		}
	}
	if len(st.list) != 0 {
		t.Fatalf("suppressed %v", st.list)
	}
}

// failingStore fails every write.
type failingStore struct{}

func (failingStore) Suppress(context.Context, []journal.Suppression) (int, error) {
	return 0, errors.New("disk full")
}

func TestWebhookStoreFailureIsNot200(t *testing.T) {
	h, _ := New(failingStore{}, secret, nil)
	_ = h.EnableWebhooks(WebhookConfig{MandrillKey: providers.NewSecret("k"), PublicURL: "https://h.example/webhooks/mandrill"})
	form := url.Values{"mandrill_events": {`[{"event":"spam","msg":{"email":"a@example.com"}}]`}}
	req := httptest.NewRequest(http.MethodPost, "/webhooks/mandrill", strings.NewReader(form.Encode()))
	req.Header.Set("X-Mandrill-Signature", mandrillSign("k", "https://h.example/webhooks/mandrill", form))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "disk full") {
		t.Fatalf("code = %d %q, want 500 without internals (the provider retries)", rec.Code, rec.Body)
	}
}

// TestSendGridSampleBatch: SendGrid's documented sample batch, with its dropped/Invalid
// event for "not an email address", is answered 200; that event is skipped and logged,
// every other event applied.
func TestSendGridSampleBatch(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	var mu sync.Mutex
	var logged []string
	srv, st := webhookServer(t, WebhookConfig{SendGridKey: base64.StdEncoding.EncodeToString(der), Logf: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, fmt.Sprintf(format, args...))
	}})
	body := fixture(t, "sendgrid_sample_batch.json")
	ts := strconv.FormatInt(hookNow.Unix(), 10)
	code, answer := send(t, http.MethodPost, srv.URL+"/webhooks/sendgrid", http.Header{
		"X-Twilio-Email-Event-Webhook-Signature": {sendgridSign(t, key, ts, body)},
		"X-Twilio-Email-Event-Webhook-Timestamp": {ts},
	}, body)
	if code != http.StatusOK {
		t.Fatalf("POST = %d %q, want 200", code, answer)
	}
	want := []string{"bounce@test.com", "dropped@test.com", "group_unsubscribe@test.com", "spamreport@test.com", "unsubscribe@test.com"}
	if got := emails(t, st, "webhook:sendgrid"); !slices.Equal(got, want) {
		t.Errorf("suppressed %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(logged) != 1 || !strings.Contains(logged[0], "event 6 (dropped)") || !strings.Contains(logged[0], "not an email address") {
		t.Errorf("logged %q, want one line naming the skipped event", logged)
	}
}
