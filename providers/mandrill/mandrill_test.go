package mandrill

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/providertest"
)

const testKey = "md-TeStKeY0123456789abcdef"

// request is what the fake server saw of one request.
type request struct {
	Method string
	URL    string
	Path   string
	Header http.Header
	Body   []byte
}

// sendRaw is the documented request body, read back by the fake.
type sendRaw struct {
	Key              string   `json:"key"`
	RawMessage       string   `json:"raw_message"`
	FromEmail        string   `json:"from_email"`
	FromName         string   `json:"from_name"`
	To               []string `json:"to"`
	Async            *bool    `json:"async"`
	ReturnPathDomain string   `json:"return_path_domain"`
}

// fake is an httptest server following Mandrill's documented shapes. Before the test's
// answer it refuses what Mandrill refuses or mishandles: no key (Invalid_Key), no
// raw_message (ValidationError), a from_email that is not the address of the message's
// From header (Mandrill's sender checks, domain verification and DKIM signing key off
// from_email: "invalid-sender"), a from_email or return_path_domain outside the
// account's verified sending domains ("unsigned").
type fake struct {
	srv     *httptest.Server
	domains []string // verified sending domains; empty: example.com
	mu      sync.Mutex
	reqs    []request
	got     []providertest.Received
	answer  func(w http.ResponseWriter, r *http.Request, req sendRaw) bool // true: accepted
}

func newFake(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, req sendRaw) bool) *fake {
	t.Helper()
	f := &fake{answer: answer}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, request{Method: r.Method, URL: r.URL.String(), Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	f.mu.Unlock()
	var req sendRaw
	if err := json.Unmarshal(body, &req); err != nil || len(req.To) != 1 {
		jsonAnswer(w, 500, []byte(`{"status":"error","code":-2,"name":"ValidationError","message":"bad request body"}`))
		return
	}
	if req.Key == "" {
		jsonAnswer(w, 500, readFixture("error_invalid_key.json"))
		return
	}
	if req.RawMessage == "" {
		jsonAnswer(w, 500, readFixture("error_validation.json"))
		return
	}
	if reason := f.senderProblem(req); reason != "" {
		b, _ := json.Marshal([]map[string]any{{"email": req.To[0], "status": "rejected", "reject_reason": reason, "queued_reason": nil, "_id": "rej-" + req.To[0]}})
		jsonAnswer(w, http.StatusOK, b)
		return
	}
	if f.answer == nil {
		f.answer = accept
	}
	if !f.answer(w, r, req) {
		return
	}
	rec, err := providertest.ParseRaw(req.To[0], []byte(req.RawMessage))
	if err != nil {
		return
	}
	f.mu.Lock()
	f.got = append(f.got, rec)
	f.mu.Unlock()
}

// senderProblem returns the reject_reason Mandrill gives a request whose sender is not
// right, or "".
func (f *fake) senderProblem(req sendRaw) string {
	m, err := mail.ReadMessage(strings.NewReader(req.RawMessage))
	if err != nil {
		return "invalid-sender"
	}
	from, err := mail.ParseAddress(m.Header.Get("From"))
	if err != nil {
		return "invalid-sender"
	}
	fromEmail := req.FromEmail
	if fromEmail == "" {
		fromEmail = from.Address
	}
	if !strings.EqualFold(fromEmail, from.Address) {
		return "invalid-sender"
	}
	domains := f.domains
	if len(domains) == 0 {
		domains = []string{"example.com"}
	}
	verified := func(d string) bool {
		for _, v := range domains {
			if strings.EqualFold(d, v) {
				return true
			}
		}
		return false
	}
	if !verified(fromEmail[strings.LastIndexByte(fromEmail, '@')+1:]) {
		return "unsigned"
	}
	if req.ReturnPathDomain != "" && !verified(req.ReturnPathDomain) {
		return "unsigned"
	}
	return ""
}

func readFixture(name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		panic(err)
	}
	return b
}

func (f *fake) received() []providertest.Received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]providertest.Received(nil), f.got...)
}

func (f *fake) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonAnswer(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// accept answers the documented result array with an id derived from the recipient.
func accept(w http.ResponseWriter, _ *http.Request, req sendRaw) bool {
	b, _ := json.Marshal([]map[string]any{{"email": req.To[0], "status": "sent", "reject_reason": nil, "queued_reason": nil, "_id": "id-" + req.To[0]}})
	jsonAnswer(w, http.StatusOK, b)
	return true
}

func answerWith(t *testing.T, status int, name string) func(http.ResponseWriter, *http.Request, sendRaw) bool {
	return func(w http.ResponseWriter, _ *http.Request, _ sendRaw) bool {
		jsonAnswer(w, status, fixture(t, name))
		return false
	}
}

func newProvider(t *testing.T, endpoint string, c Config) *Provider {
	t.Helper()
	c.Endpoint = endpoint
	p, err := New(c, providers.NewSecret(testKey))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Harness{
		Start: func(t *testing.T, b providertest.Behaviour) (providers.Provider, func() []providertest.Received) {
			answer := map[providertest.Behaviour]func(http.ResponseWriter, *http.Request, sendRaw) bool{
				providertest.Accept:    accept,
				providertest.TempFail:  answerWith(t, 500, "error_general.json"),
				providertest.PermFail:  answerWith(t, 200, "rejected_invalid.json"),
				providertest.FatalFail: answerWith(t, 500, "error_invalid_key.json"),
				providertest.Hang: func(_ http.ResponseWriter, r *http.Request, _ sendRaw) bool {
					<-r.Context().Done()
					return false
				},
			}[b]
			f := newFake(t, answer)
			return newProvider(t, f.srv.URL, Config{}), f.received
		},
	})
}

func TestRequest(t *testing.T) {
	f := newFake(t, accept)
	p := newProvider(t, f.srv.URL+"/prefix/", Config{})
	msg := providertest.Message("jane.doe@example.org", 3)
	msg.ReturnPath = "bounces@example.com"
	r, err := p.Send(context.Background(), msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if r.MessageID != "id-jane.doe@example.org" {
		t.Errorf("receipt id = %q, want the result's _id", r.MessageID)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(reqs))
	}
	q := reqs[0]
	if q.Method != http.MethodPost || q.Path != "/prefix/api/1.0/messages/send-raw.json" {
		t.Errorf("request = %s %s", q.Method, q.Path)
	}
	if ct := q.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if strings.Contains(q.URL, testKey) {
		t.Errorf("the key is in the URL %q", q.URL)
	}
	for k, vs := range q.Header {
		for _, v := range vs {
			if strings.Contains(v, testKey) {
				t.Errorf("the key is in header %s", k)
			}
		}
	}
	var body sendRaw
	if err := json.Unmarshal(q.Body, &body); err != nil {
		t.Fatalf("body: %v", err)
	}
	if body.Key != testKey {
		t.Errorf("key = %q, want the API key in the body", body.Key)
	}
	if body.RawMessage != string(msg.Raw) {
		t.Errorf("raw_message differs from the rendered message")
	}
	if body.FromEmail != "news@example.com" || body.FromName != "Example News" {
		t.Errorf("from_email, from_name = %q, %q; want the From header's address and name", body.FromEmail, body.FromName)
	}
	if body.ReturnPathDomain != "example.com" {
		t.Errorf("return_path_domain = %q, want the return path's domain", body.ReturnPathDomain)
	}
	if len(body.To) != 1 || body.To[0] != "jane.doe@example.org" {
		t.Errorf("to = %v", body.To)
	}
	if body.Async == nil || *body.Async {
		t.Errorf("async = %v, want false", body.Async)
	}
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(q.Body, &keys)
	if len(keys) != 7 {
		t.Errorf("body has keys %v, want exactly key, raw_message, from_email, from_name, to, async, return_path_domain", keys)
	}
	rec, err := providertest.ParseRaw(body.To[0], []byte(body.RawMessage))
	if err != nil {
		t.Fatalf("ParseRaw: %v", err)
	}
	if rec.Subject != msg.Subject || !strings.Contains(rec.HTML, "Hello Jane 3") || !strings.Contains(rec.Text, "Hello Jane 3") {
		t.Errorf("parsed message = %+v", rec)
	}
	if lu := rec.Headers.Get("List-Unsubscribe"); lu != "<https://news.example.com/u/tok3>, <mailto:unsubscribe@example.com>" {
		t.Errorf("List-Unsubscribe = %q", lu)
	}
}

func TestBodyRejectsBadMessages(t *testing.T) {
	noRaw := providertest.Message("a@example.org", 1)
	noRaw.Raw = nil
	noTo := providertest.Message("a@example.org", 1)
	noTo.To = ""
	latin1 := providertest.Message("a@example.org", 1)
	latin1.Raw = append(latin1.Raw, 0xe9, '\r', '\n')
	for name, m := range map[string]*providers.Message{"nil": nil, "no raw": noRaw, "no recipient": noTo, "not utf-8": latin1} {
		t.Run(name, func(t *testing.T) {
			_, err := body(providers.NewSecret(testKey), m)
			if providers.KindOf(err) != providers.Permanent || !strings.HasPrefix(fmt.Sprint(err), "mandrill: ") {
				t.Errorf("body = %v, want a permanent mandrill error", err)
			}
		})
	}
	// From falls back to the From address without a return path.
	b, err := body(providers.NewSecret(testKey), providertest.Message("a@example.org", 1))
	if err != nil || !strings.Contains(string(b), `"from_email":"news@example.com"`) {
		t.Errorf("body = %s, %v", b, err)
	}
}

func TestClassify(t *testing.T) {
	result := func(status, reject, queued string) string {
		b, _ := json.Marshal([]map[string]any{{"email": "jane.doe@example.org", "status": status, "reject_reason": reject, "queued_reason": queued, "_id": "the-id"}})
		return string(b)
	}
	type want struct {
		kind                     providers.Kind
		enhanced                 string
		bounce, slowDown, connUp bool
	}
	cases := []struct {
		name   string
		status int
		header http.Header
		body   string // a fixture name or a literal
		id     string // the receipt id when sent
		want   want
	}{
		{"sent", 200, nil, "sent.json", "c3b6a6d1e5f14b5a9e0c8d3f2a1b0c9d", want{}},
		{"queued", 200, nil, "queued.json", "q1b6a6d1e5f14b5a9e0c8d3f2a1b0c9d", want{}},
		{"queued hourly quota", 200, nil, "queued_hourly_quota.json", "q2b6a6d1e5f14b5a9e0c8d3f2a1b0c9d", want{}},
		{"scheduled", 200, nil, "scheduled.json", "s1b6a6d1e5f14b5a9e0c8d3f2a1b0c9d", want{}},
		{"queued attachments", 200, nil, result("queued", "", "attachments"), "the-id", want{}},
		{"queued sending-paused", 200, nil, "queued_sending_paused.json", "", want{kind: providers.Fatal, enhanced: "sending-paused"}},
		{"queued account-suspended", 200, nil, result("queued", "", "account-suspended"), "", want{kind: providers.Fatal, enhanced: "account-suspended"}},
		{"queued sending-suspended", 200, nil, result("queued", "", "sending-suspended"), "", want{kind: providers.Fatal, enhanced: "sending-suspended"}},
		{"queued monthly-limit-reached", 200, nil, result("queued", "", "monthly-limit-reached"), "", want{kind: providers.Fatal, enhanced: "monthly-limit-reached"}},
		{"queued free-trial-sends-exhausted", 200, nil, result("queued", "", "free-trial-sends-exhausted"), "", want{kind: providers.Fatal, enhanced: "free-trial-sends-exhausted"}},
		{"queued paused in reject_reason", 200, nil, result("queued", "sending-paused", ""), "", want{kind: providers.Fatal, enhanced: "sending-paused"}},
		{"rejected hard-bounce", 200, nil, "rejected_hard_bounce.json", "", want{kind: providers.Permanent, enhanced: "hard-bounce", bounce: true}},
		{"rejected invalid", 200, nil, "rejected_invalid.json", "", want{kind: providers.Permanent, enhanced: "invalid", bounce: true}},
		{"rejected unsub", 200, nil, result("rejected", "unsub", ""), "", want{kind: providers.Permanent, enhanced: "unsub", bounce: true}},
		{"rejected spam", 200, nil, result("rejected", "spam", ""), "", want{kind: providers.Permanent, enhanced: "spam", bounce: true}},
		{"rejected custom", 200, nil, result("rejected", "custom", ""), "", want{kind: providers.Permanent, enhanced: "custom", bounce: true}},
		{"rejected soft-bounce", 200, nil, result("rejected", "soft-bounce", ""), "", want{kind: providers.Permanent, enhanced: "soft-bounce"}},
		{"rejected rule", 200, nil, result("rejected", "rule", ""), "", want{kind: providers.Permanent, enhanced: "rule"}},
		{"rejected new reason", 200, nil, result("rejected", "something-new", ""), "", want{kind: providers.Permanent, enhanced: "something-new"}},
		{"rejected unsigned", 200, nil, "rejected_unsigned.json", "", want{kind: providers.Fatal, enhanced: "unsigned"}},
		{"rejected invalid-sender", 200, nil, result("rejected", "invalid-sender", ""), "", want{kind: providers.Fatal, enhanced: "invalid-sender"}},
		{"rejected test-mode-limit", 200, nil, result("rejected", "test-mode-limit", ""), "", want{kind: providers.Fatal, enhanced: "test-mode-limit"}},
		{"status invalid", 200, nil, "invalid.json", "", want{kind: providers.Permanent, enhanced: "invalid", bounce: true}},
		{"status unknown", 200, nil, result("bounced-ish", "", ""), "", want{kind: providers.Unknown}},
		{"Invalid_Key 500", 500, nil, "error_invalid_key.json", "", want{kind: providers.Fatal, enhanced: "Invalid_Key"}},
		{"Invalid_Key 200", 200, nil, "error_invalid_key.json", "", want{kind: providers.Fatal, enhanced: "Invalid_Key"}},
		{"PaymentRequired", 500, nil, "error_payment_required.json", "", want{kind: providers.Fatal, enhanced: "PaymentRequired"}},
		{"Unknown_Subaccount", 500, nil, "error_unknown_subaccount.json", "", want{kind: providers.Fatal, enhanced: "Unknown_Subaccount"}},
		{"ValidationError", 500, nil, "error_validation.json", "", want{kind: providers.Permanent, enhanced: "ValidationError"}},
		{"GeneralError", 500, nil, "error_general.json", "", want{kind: providers.Temporary, enhanced: "GeneralError"}},
		{"unknown error name", 500, nil, `{"status":"error","code":-99,"name":"Brand_New","message":"x"}`, "", want{kind: providers.Temporary, enhanced: "Brand_New"}},
		{"502 html", 502, nil, "<html>Bad Gateway</html>", "", want{kind: providers.Temporary}},
		{"503 empty", 503, nil, "", "", want{kind: providers.Temporary}},
		{"429", 429, http.Header{"Retry-After": {"12"}}, "", "", want{kind: providers.Temporary, slowDown: true}},
		{"429 with error object", 429, nil, `{"status":"error","code":-1,"name":"Rate_Limit","message":"slow down"}`, "", want{kind: providers.Temporary, enhanced: "Rate_Limit", slowDown: true}},
		{"200 unparseable", 200, nil, "<html>captive portal</html>", "", want{kind: providers.Temporary}},
		{"200 empty array", 200, nil, "[]", "", want{kind: providers.Temporary}},
		{"200 object not error", 200, nil, `{"hello":"world"}`, "", want{kind: providers.Temporary}},
		{"404", 404, nil, "not found", "", want{kind: providers.Fatal}},
		{"302", 302, nil, "", "", want{kind: providers.Fatal}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(c.body)
			if strings.HasSuffix(c.body, ".json") {
				body = fixture(t, c.body)
			}
			h := c.header
			if h == nil {
				h = http.Header{}
			}
			r, err := classify(c.status, h, body, "jane.doe@example.org")
			if c.id != "" {
				if err != nil || r.MessageID != c.id {
					t.Fatalf("classify = %+v, %v; want sent with id %q", r, err, c.id)
				}
				return
			}
			pe := providers.AsError(err)
			if pe == nil {
				t.Fatalf("classify = %+v, %v; want a *providers.Error", r, err)
			}
			got := want{pe.Kind, pe.Enhanced, pe.Bounce, pe.SlowDown, pe.Connection}
			if got != c.want {
				t.Errorf("got %+v, want %+v (%v)", got, c.want, err)
			}
			if !strings.HasPrefix(err.Error(), "mandrill: "+c.want.kind.String()) || pe.Message == "" {
				t.Errorf("Error() = %q", err)
			}
		})
	}
	t.Run("retry-after", func(t *testing.T) {
		_, err := classify(429, http.Header{"Retry-After": {"12"}}, nil, "a@example.org")
		if pe := providers.AsError(err); pe == nil || pe.RetryAfter != 12*time.Second || pe.Code != 429 {
			t.Errorf("429 = %#v, want RetryAfter 12s", pe)
		}
	})
	t.Run("picks the recipient", func(t *testing.T) {
		body := `[{"email":"other@example.org","status":"rejected","reject_reason":"spam","_id":"1"},{"email":"Jane.Doe@example.org","status":"sent","_id":"2"}]`
		r, err := classify(200, http.Header{}, []byte(body), "jane.doe@example.org")
		if err != nil || r.MessageID != "2" {
			t.Errorf("classify = %+v, %v; want the recipient's own result", r, err)
		}
	})
	t.Run("paused error names the held id", func(t *testing.T) {
		_, err := classify(200, http.Header{}, fixture(t, "queued_sending_paused.json"), "jane.doe@example.org")
		if err == nil || !strings.Contains(err.Error(), "q3b6a6d1e5f14b5a9e0c8d3f2a1b0c9d") {
			t.Errorf("error %v does not name the held message", err)
		}
	})
}

func TestTransportFailures(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		p := newProvider(t, "http://"+addr, Config{})
		_, err = p.Send(context.Background(), providertest.Message("a@example.org", 1))
		if pe := providers.AsError(err); pe == nil || pe.Kind != providers.Temporary || !pe.Connection {
			t.Fatalf("Send = %v, want temporary connection error", err)
		}
	})
	t.Run("dropped after request", func(t *testing.T) {
		f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ sendRaw) bool {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = conn.Close()
			}
			return false
		})
		p := newProvider(t, f.srv.URL, Config{})
		_, err := p.Send(context.Background(), providertest.Message("a@example.org", 1))
		if providers.KindOf(err) != providers.Unknown {
			t.Fatalf("Send = %v, want unknown (the request was handed over)", err)
		}
	})
	t.Run("timeout after request", func(t *testing.T) {
		f := newFake(t, func(_ http.ResponseWriter, r *http.Request, _ sendRaw) bool {
			<-r.Context().Done()
			return false
		})
		p := newProvider(t, f.srv.URL, Config{Timeout: 100 * time.Millisecond})
		_, err := p.Send(context.Background(), providertest.Message("a@example.org", 1))
		if providers.KindOf(err) != providers.Unknown || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("Send = %v, want unknown with a timeout", err)
		}
	})
	t.Run("answer cut off", func(t *testing.T) {
		f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ sendRaw) bool {
			w.Header().Set("Content-Length", "500")
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`[{"email":"a@example.org","status":"se`))
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = conn.Close()
			}
			return false
		})
		p := newProvider(t, f.srv.URL, Config{})
		_, err := p.Send(context.Background(), providertest.Message("a@example.org", 1))
		if providers.KindOf(err) != providers.Unknown {
			t.Fatalf("Send = %v, want unknown", err)
		}
	})
	t.Run("cancelled before sending", func(t *testing.T) {
		f := newFake(t, accept)
		p := newProvider(t, f.srv.URL, Config{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := p.Send(ctx, providertest.Message("a@example.org", 1))
		if pe := providers.AsError(err); pe == nil || pe.Kind != providers.Temporary || pe.Connection {
			t.Fatalf("Send = %v, want temporary (not a connection failure)", err)
		}
		if n := len(f.requests()); n != 0 {
			t.Errorf("server saw %d requests", n)
		}
	})
}

// TestKeyNeverLeaks drives every error path, including a server that echoes the request
// body back, and looks for the key in errors and in the formatted provider.
func TestKeyNeverLeaks(t *testing.T) {
	var errs []error
	echo := func(status int, name string) func(http.ResponseWriter, *http.Request, sendRaw) bool {
		return func(w http.ResponseWriter, _ *http.Request, req sendRaw) bool {
			b, _ := json.Marshal(map[string]any{"status": "error", "code": -1, "name": name + " " + req.Key, "message": "you sent key " + req.Key})
			jsonAnswer(w, status, b)
			return false
		}
	}
	echoResult := func(w http.ResponseWriter, _ *http.Request, req sendRaw) bool {
		b, _ := json.Marshal([]map[string]any{{"email": req.Key, "status": "rejected", "reject_reason": req.Key, "_id": req.Key}})
		jsonAnswer(w, 200, b)
		return false
	}
	echoRaw := func(status int) func(http.ResponseWriter, *http.Request, sendRaw) bool {
		return func(w http.ResponseWriter, r *http.Request, req sendRaw) bool {
			jsonAnswer(w, status, []byte("echo: "+req.Key))
			return false
		}
	}
	for _, answer := range []func(http.ResponseWriter, *http.Request, sendRaw) bool{
		echo(500, "Invalid_Key"), echo(500, "GeneralError"), echo(429, "x"), echoResult,
		echoRaw(200), echoRaw(502), echoRaw(404), answerWith(t, 500, "error_validation.json"),
	} {
		f := newFake(t, answer)
		p := newProvider(t, f.srv.URL, Config{})
		_, err := p.Send(context.Background(), providertest.Message("a@example.org", 1))
		errs = append(errs, err)
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			if s := fmt.Sprintf(verb, p); strings.Contains(s, "TeStKeY") {
				t.Errorf("fmt.Sprintf(%q, provider) = %q leaks the key", verb, s)
			}
		}
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	_ = ln.Close()
	p := newProvider(t, "http://"+addr, Config{})
	_, err := p.Send(context.Background(), providertest.Message("a@example.org", 1))
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatalf("an error path returned no error")
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", providers.AsError(err))} {
			if strings.Contains(s, "TeStKeY") {
				t.Errorf("error leaks the key: %s", s)
			}
		}
	}
}

func spec(doc string, env map[string]string) providers.Spec {
	return providertest.Spec(Name, doc, env)
}

func TestRegistration(t *testing.T) {
	reg := Registration()
	if reg.Kind != "mandrill" || reg.Check == nil || reg.Open == nil {
		t.Fatalf("Registration = %+v", reg)
	}
	env := map[string]string{"MD_KEY": testKey}
	cases := []struct {
		name    string
		doc     string
		secrets bool
		wantErr string
	}{
		{"minimal", "api_key_env: MD_KEY", true, ""},
		{"all keys", "api_key_env: MD_KEY\nendpoint: http://127.0.0.1:9\ntimeout: 2m", true, ""},
		{"missing key env", "timeout: 5s", false, "api_key_env is required"},
		{"unset variable, no secrets", "api_key_env: NOPE", false, ""},
		{"unset variable", "api_key_env: NOPE", true, "NOPE"},
		{"unknown key", "api_key_env: MD_KEY\nkey: inline", false, "key"},
		{"key pasted into api_key_env", "api_key_env: md-AbC123xyz.pasted", false, "does not look like an environment variable name"},
		{"bad endpoint", "api_key_env: MD_KEY\nendpoint: ftp://mandrillapp.com", false, "endpoint"},
		{"endpoint with credentials", "api_key_env: MD_KEY\nendpoint: https://u:p@mandrillapp.com", false, "credentials"},
		{"negative timeout", "api_key_env: MD_KEY\ntimeout: -3s", false, "negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := reg.Check(spec(c.doc, env), c.secrets)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.HasPrefix(err.Error(), "mandrill: ") {
				t.Fatalf("Check = %v, want a mandrill error mentioning %q", err, c.wantErr)
			}
			if strings.Contains(err.Error(), ":p@") {
				t.Errorf("error shows the endpoint's password: %v", err)
			}
		})
	}
	t.Run("open", func(t *testing.T) {
		p, err := reg.Open(context.Background(), spec("api_key_env: MD_KEY", env))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer p.Close()
		mp := p.(*Provider)
		if mp.url != "https://mandrillapp.com/api/1.0/messages/send-raw.json" || mp.client.Timeout != DefaultTimeout || mp.key.Reveal() != testKey {
			t.Errorf("opened %v with timeout %s", mp, mp.client.Timeout)
		}
		if c := p.Capabilities(); c != (providers.Capabilities{}) {
			t.Errorf("Capabilities = %+v, want none", c)
		}
	})
	t.Run("open without key", func(t *testing.T) {
		if _, err := reg.Open(context.Background(), spec("api_key_env: NOPE", env)); err == nil {
			t.Fatal("Open succeeded without the key's variable")
		}
	})
}

func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"email":"jane.doe@example.org","status":"sent","reject_reason":null,"_id":"abc"}]`))
	}))
	defer srv.Close()
	p, err := New(Config{Endpoint: srv.URL}, providers.NewSecret(testKey))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	msg := providertest.Message("jane.doe@example.org", 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Send(context.Background(), msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestFakeReplaysDocumentedExample: the send-raw request example of Mandrill's API
// reference (with a key filled in) is accepted by the fake, and the documented answer
// reads as sent.
func TestFakeReplaysDocumentedExample(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ sendRaw) bool {
		jsonAnswer(w, http.StatusOK, fixture(t, "doc_send_raw_response.json"))
		return true
	})
	f.domains = []string{"example.com"}
	var doc map[string]any
	if err := json.Unmarshal(fixture(t, "doc_send_raw_request.json"), &doc); err != nil {
		t.Fatal(err)
	}
	doc["key"] = testKey
	b, _ := json.Marshal(doc)
	resp, err := http.Post(f.srv.URL+sendRawPath, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(f.received()) != 1 {
		t.Fatalf("the documented request was refused: %s", answer)
	}
	r, err := classify(resp.StatusCode, resp.Header, answer, "recipient.email@example.com")
	if err != nil || r.MessageID != "abc123abc123abc123abc123abc123" {
		t.Errorf("documented answer = %+v, %v", r, err)
	}
}

// TestReturnPathDomain: the bounce address's domain travels as return_path_domain;
// from_email stays the From address, which Mandrill's sender checks need.
func TestReturnPathDomain(t *testing.T) {
	f := newFake(t, accept)
	f.domains = []string{"example.com", "bounce.example.net"}
	p := newProvider(t, f.srv.URL, Config{})
	msg := providertest.Message("jane.doe@example.org", 1)
	msg.ReturnPath = "bounces@bounce.example.net"
	if _, err := p.Send(context.Background(), msg); err != nil {
		t.Fatalf("Send with a return path: %v", err)
	}
	msg.ReturnPath = ""
	if _, err := p.Send(context.Background(), msg); err != nil {
		t.Fatalf("Send without a return path: %v", err)
	}
	reqs := f.requests()
	var with, without sendRaw
	_ = json.Unmarshal(reqs[0].Body, &with)
	_ = json.Unmarshal(reqs[1].Body, &without)
	if with.FromEmail != "news@example.com" || with.ReturnPathDomain != "bounce.example.net" {
		t.Errorf("with a return path: from_email %q, return_path_domain %q", with.FromEmail, with.ReturnPathDomain)
	}
	if without.FromEmail != "news@example.com" || strings.Contains(string(reqs[1].Body), "return_path_domain") {
		t.Errorf("without a return path: %s", reqs[1].Body)
	}
	if n := len(f.received()); n != 2 {
		t.Errorf("received %d, want 2", n)
	}
}

// TestSenderRejectionIsFatal: a sending domain Mandrill has not verified, or a sender it
// refuses, stops the run instead of failing every recipient.
func TestSenderRejectionIsFatal(t *testing.T) {
	f := newFake(t, accept)
	f.domains = []string{"other.example"}
	p := newProvider(t, f.srv.URL, Config{})
	_, err := p.Send(context.Background(), providertest.Message("jane.doe@example.org", 1))
	if pe := providers.AsError(err); pe == nil || pe.Kind != providers.Fatal || pe.Bounce || pe.Enhanced != "unsigned" {
		t.Errorf("Send from an unverified domain = %v, want fatal unsigned", err)
	}
	for _, fx := range []string{"rejected_invalid_sender.json", "rejected_unsigned.json", "error_payment_required.json"} {
		f := newFake(t, answerWith(t, 200, fx))
		p := newProvider(t, f.srv.URL, Config{})
		if _, err := p.Send(context.Background(), providertest.Message("jane.doe@example.org", 1)); providers.KindOf(err) != providers.Fatal {
			t.Errorf("%s: Send = %v, want fatal", fx, err)
		}
	}
}
