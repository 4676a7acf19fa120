package ses

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
)

const (
	testKeyID  = "AKIDHERALDTEST"
	testSecret = "hush-hush-secret-key"
	testRegion = "eu-west-1"
)

// sendRequest is the JSON body of SES v2 SendEmail (POST /v2/email/outbound-emails).
type sendRequest struct {
	FromEmailAddress               string
	FeedbackForwardingEmailAddress string
	ConfigurationSetName           string
	Destination                    struct{ ToAddresses []string }
	Content                        struct {
		Raw *struct{ Data []byte } // a base64 blob, decoded by encoding/json
	}
	EmailTags []struct{ Name, Value string }

	auth string // the Authorization header
}

// answer writes the fake's answer to one request; it returns whether the message
// counts as accepted.
type answer func(w http.ResponseWriter, r *http.Request) bool

// fakeSES speaks the SES v2 REST/JSON shape the SDK expects: POST
// /v2/email/outbound-emails and GET /v2/email/account; errors carry their name in
// X-Amzn-ErrorType and a JSON body {"message": "..."}.
type fakeSES struct {
	srv  *httptest.Server
	stop chan struct{}

	mu      sync.Mutex
	discard bool // keep no request (benchmarks)
	// verified, when set, are the identities (addresses or domains) the account has
	// verified: a From or feedback address outside them is refused with MessageRejected,
	// as SES does, naming the identities that failed; sandbox adds the recipients.
	verified []string
	sandbox  bool
	send     answer
	account  answer
	attempts int
	accepted []sendRequest
	bodies   [][]byte // every raw request body, for leak checks
	nextID   int
}

func newFake(t testing.TB) *fakeSES {
	f := &fakeSES{stop: make(chan struct{})}
	f.send = f.accept
	f.account = accountJSON(`{"SendingEnabled": true, "EnforcementStatus": "HEALTHY", "ProductionAccessEnabled": true,
		"SendQuota": {"Max24HourSend": 50000, "MaxSendRate": 14, "SentLast24Hours": 1200}}`)
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() { close(f.stop) }) // runs first: releases hung handlers
	return f
}

func (f *fakeSES) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	if !f.discard {
		f.bodies = append(f.bodies, append([]byte(r.Header.Get("Authorization")+"\n"), body...))
	}
	send, account := f.send, f.account
	f.mu.Unlock()
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="+testKeyID+"/") {
		apiError(http.StatusForbidden, "MissingAuthenticationToken", "unsigned request")(w, r)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v2/email/outbound-emails":
		var req sendRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Content.Raw == nil {
			apiError(http.StatusBadRequest, "BadRequestException", fmt.Sprintf("bad request body: %v", err))(w, r)
			return
		}
		req.auth = r.Header.Get("Authorization")
		f.mu.Lock()
		f.attempts++
		f.mu.Unlock()
		if a := f.refuse(req); a != nil {
			a(w, r)
			return
		}
		if send(w, r) && !f.discarding() {
			f.mu.Lock()
			f.accepted = append(f.accepted, req)
			f.mu.Unlock()
		}
	case r.Method == http.MethodGet && r.URL.Path == "/v2/email/account":
		account(w, r)
	default:
		apiError(http.StatusNotFound, "", "no route "+r.Method+" "+r.URL.Path)(w, r)
	}
}

// refuse returns SES's answer to a request it refuses before sending, or nil: an
// address that is not ASCII (SES takes Punycode domains only) and, when verified is
// set, identities the account has not verified.
func (f *fakeSES) refuse(req sendRequest) answer {
	addrs := append([]string{req.FromEmailAddress, req.FeedbackForwardingEmailAddress}, req.Destination.ToAddresses...)
	for _, a := range addrs {
		for i := 0; i < len(a); i++ {
			if a[i] >= 0x80 {
				return apiError(http.StatusBadRequest, "BadRequestException", "Domain contains illegal character")
			}
		}
	}
	f.mu.Lock()
	verified, sandbox := f.verified, f.sandbox
	f.mu.Unlock()
	if len(verified) == 0 {
		return nil
	}
	ok := func(a string) bool {
		for _, v := range verified {
			if strings.EqualFold(a, v) || strings.HasSuffix(strings.ToLower(a), "@"+strings.ToLower(v)) {
				return true
			}
		}
		return false
	}
	var failed []string
	check := []string{req.FromEmailAddress, req.FeedbackForwardingEmailAddress}
	if sandbox {
		check = append(check, req.Destination.ToAddresses...)
	}
	for _, a := range check {
		if a != "" && !ok(a) {
			failed = append(failed, a)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return apiError(http.StatusBadRequest, "MessageRejected",
		"Email address is not verified. The following identities failed the check in region "+strings.ToUpper(testRegion)+": "+strings.Join(failed, ", "))
}

func (f *fakeSES) discarding() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.discard }

func (f *fakeSES) setVerified(sandbox bool, ids ...string) {
	f.mu.Lock()
	f.verified, f.sandbox = ids, sandbox
	f.mu.Unlock()
}

func (f *fakeSES) setSend(a answer) { f.mu.Lock(); f.send = a; f.mu.Unlock() }

func (f *fakeSES) setAccount(a answer) { f.mu.Lock(); f.account = a; f.mu.Unlock() }

func (f *fakeSES) got() []sendRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sendRequest(nil), f.accepted...)
}

func (f *fakeSES) sendAttempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}

func (f *fakeSES) allBodies() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, x := range f.bodies {
		b.Write(x)
	}
	return b.String()
}

// accept answers SendEmail with a fresh message id.
func (f *fakeSES) accept(w http.ResponseWriter, _ *http.Request) bool {
	f.mu.Lock()
	f.nextID++
	id := f.nextID
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"MessageId": "0102018f-%d"}`, id)
	return true
}

// apiError answers with status, the error name in X-Amzn-ErrorType (when set) and
// {"message": msg}.
func apiError(status int, typ, msg string) answer {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		if typ != "" {
			w.Header().Set("X-Amzn-ErrorType", typ)
		}
		w.Header().Set("X-Amzn-RequestId", "req-1")
		w.WriteHeader(status)
		b, _ := json.Marshal(map[string]string{"message": msg})
		w.Write(b)
		return false
	}
}

// raw answers with status, the given headers (name, value pairs) and body.
func raw(status int, body string, headers ...string) answer {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
		return false
	}
}

func accountJSON(body string) answer {
	return raw(http.StatusOK, body, "Content-Type", "application/json")
}

// hang never answers until the request or the test ends.
func (f *fakeSES) hang(_ http.ResponseWriter, r *http.Request) bool {
	select {
	case <-r.Context().Done():
	case <-f.stop:
	}
	return false
}

// dropAfterRead reads the request and closes the connection without answering.
func dropAfterRead(w http.ResponseWriter, _ *http.Request) bool {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
	return false
}

// staticCreds are test credentials; no real AWS account is involved.
func staticCreds() func(*config.LoadOptions) error {
	return config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(testKeyID, testSecret, ""))
}

// client returns an SES v2 client pointed at the fake (or at endpoint).
func testClient(t testing.TB, endpoint string, extra ...func(*config.LoadOptions) error) *sesv2.Client {
	t.Helper()
	opts := append([]func(*config.LoadOptions) error{staticCreds()}, extra...)
	c, err := NewClient(context.Background(), Config{Region: testRegion, Endpoint: endpoint}, opts...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// open builds a provider on the fake with cfg (Endpoint and Region filled in).
func (f *fakeSES) open(t testing.TB, cfg Config) (*Provider, []string) {
	t.Helper()
	cfg.Endpoint, cfg.Region = f.srv.URL, testRegion
	var warnings []string
	p, err := New(context.Background(), testClient(t, f.srv.URL), cfg, func(format string, args ...any) {
		warnings = append(warnings, fmt.Sprintf(format, args...))
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p, warnings
}
