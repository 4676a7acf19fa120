package sendgrid

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/providertest"
)

const testKey = "SG.tEsTkEy-0123456789.abcdefghijklmnopqrstuvwxyz"

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

func accept(w http.ResponseWriter, _ *http.Request, n int) bool {
	w.Header().Set("X-Message-Id", fmt.Sprintf("sg-msg-%d", n))
	w.WriteHeader(http.StatusAccepted)
	return true
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
			var answer func(w http.ResponseWriter, r *http.Request, n int) bool
			switch b {
			case providertest.Accept:
				answer = accept
			case providertest.TempFail:
				answer = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
					jsonAnswer(w, http.StatusServiceUnavailable, fixture(t, "error_500.json"))
					return false
				}
			case providertest.PermFail:
				answer = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
					jsonAnswer(w, http.StatusBadRequest, fixture(t, "error_400_to.json"))
					return false
				}
			case providertest.FatalFail:
				answer = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
					jsonAnswer(w, http.StatusUnauthorized, fixture(t, "error_401.json"))
					return false
				}
			case providertest.Hang:
				answer = func(_ http.ResponseWriter, r *http.Request, _ int) bool {
					<-r.Context().Done()
					return false
				}
			}
			f := newFake(t, answer)
			return newProvider(t, f.srv.URL, Config{}), f.received
		},
	})
}

func TestRequest(t *testing.T) {
	f := newFake(t, accept)
	p := newProvider(t, f.srv.URL+"/relay/", Config{})
	msg := providertest.Message("jane.doe@example.org", 7)
	msg.Campaign = "november-news"
	msg.ReplyTo = "help@example.com"
	msg.Headers = append(msg.Headers, providers.Header{Name: "X-Campaign", Value: "november"})
	r, err := p.Send(context.Background(), msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if r.MessageID != "sg-msg-1" {
		t.Errorf("receipt id = %q, want the X-Message-Id header sg-msg-1", r.MessageID)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("server saw %d requests, want 1", len(reqs))
	}
	q := reqs[0]
	if q.Method != http.MethodPost || q.Path != "/relay/v3/mail/send" {
		t.Errorf("request = %s %s, want POST /relay/v3/mail/send", q.Method, q.Path)
	}
	if got := q.Header.Get("Authorization"); got != "Bearer "+testKey {
		t.Errorf("Authorization = %q", got)
	}
	if got := q.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if strings.Contains(q.URL, testKey) {
		t.Errorf("the key is in the URL %q", q.URL)
	}

	var body struct {
		From    struct{ Email, Name string } `json:"from"`
		ReplyTo struct {
			Email string `json:"email"`
		} `json:"reply_to"`
		Personalizations []struct {
			To      []struct{ Email, Name string } `json:"to"`
			Subject string                         `json:"subject"`
		} `json:"personalizations"`
		Content    []struct{ Type, Value string } `json:"content"`
		Headers    map[string]string              `json:"headers"`
		CustomArgs map[string]string              `json:"custom_args"`
		Categories []string                       `json:"categories"`
	}
	if err := json.Unmarshal(q.Body, &body); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, q.Body)
	}
	if body.From.Email != "news@example.com" || body.From.Name != "Example News" {
		t.Errorf("from = %+v", body.From)
	}
	if body.ReplyTo.Email != "help@example.com" {
		t.Errorf("reply_to = %+v", body.ReplyTo)
	}
	if len(body.Personalizations) != 1 || len(body.Personalizations[0].To) != 1 {
		t.Fatalf("personalizations = %+v", body.Personalizations)
	}
	pz := body.Personalizations[0]
	if pz.To[0].Email != "jane.doe@example.org" || pz.To[0].Name != "Jane 7" {
		t.Errorf("to = %+v", pz.To[0])
	}
	if pz.Subject != msg.Subject {
		t.Errorf("subject = %q, want %q", pz.Subject, msg.Subject)
	}
	if len(body.Content) != 2 || body.Content[0].Type != "text/plain" || body.Content[1].Type != "text/html" {
		t.Fatalf("content = %+v, want text/plain then text/html", body.Content)
	}
	if body.Content[0].Value != msg.Text || body.Content[1].Value != msg.HTML {
		t.Errorf("content values differ from the message: %+v", body.Content)
	}
	wantHeaders := map[string]string{
		"List-Unsubscribe":      "<https://news.example.com/u/tok7>, <mailto:unsubscribe@example.com>",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		"Precedence":            "bulk",
		"X-Campaign":            "november",
	}
	for k, v := range wantHeaders {
		if body.Headers[k] != v {
			t.Errorf("headers[%s] = %q, want %q", k, body.Headers[k], v)
		}
	}
	if len(body.Headers) != len(wantHeaders) {
		t.Errorf("headers = %v, want exactly %v", body.Headers, wantHeaders)
	}
	if body.CustomArgs["campaign"] != "november-news" || len(body.CustomArgs) != 1 {
		t.Errorf("custom_args = %v, want only the campaign (no personal data)", body.CustomArgs)
	}
	if strings.Contains(string(q.Body), `"custom_args":{"campaign":"november-news"}`) == false || strings.Count(string(q.Body), "jane.doe@example.org") != 1 {
		t.Errorf("the recipient's address appears outside personalizations.to: %s", q.Body)
	}
	if !strings.Contains(string(q.Body), `"tracking_settings":{"subscription_tracking":{"enable":false}}`) {
		t.Errorf("subscription tracking is not turned off: %s", q.Body)
	}
	if len(body.Categories) != 1 || body.Categories[0] != "november-news" {
		t.Errorf("categories = %v", body.Categories)
	}
}

func TestBodyRejectsBadMessages(t *testing.T) {
	noBody := providertest.Message("a@example.org", 1)
	noBody.Text, noBody.HTML = "", ""
	noTo := providertest.Message("a@example.org", 1)
	noTo.To = ""
	for name, m := range map[string]*providers.Message{"nil": nil, "no body": noBody, "no recipient": noTo} {
		t.Run(name, func(t *testing.T) {
			_, err := Body(m)
			if providers.KindOf(err) != providers.Permanent || !strings.HasPrefix(fmt.Sprint(err), "sendgrid: ") {
				t.Errorf("Body = %v, want a permanent sendgrid error", err)
			}
		})
	}
	// A From that is not a parsable header falls back to the bare address.
	m := providertest.Message("a@example.org", 1)
	m.From = "not an address"
	b, err := Body(m)
	if err != nil || !strings.Contains(string(b), `"from":{"email":"news@example.com"}`) {
		t.Errorf("Body = %s, %v; want from = the bare FromAddress", b, err)
	}
}

func TestClassify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	type want struct {
		kind                       providers.Kind
		retryAfter                 time.Duration
		slowDown, bounce, connLost bool
		msg                        string
	}
	cases := []struct {
		name   string
		status int
		header http.Header
		body   string // fixture name or literal
		want   want
	}{
		{"429 with reset", 429, hdr("X-RateLimit-Reset", strconv.FormatInt(now.Unix()+42, 10)), "error_429.json", want{kind: providers.Temporary, retryAfter: 42 * time.Second, slowDown: true, msg: "too many requests"}},
		{"429 reset past", 429, hdr("X-RateLimit-Reset", strconv.FormatInt(now.Unix()-5, 10)), "error_429.json", want{kind: providers.Temporary, retryAfter: time.Second, slowDown: true}},
		{"429 reset far", 429, hdr("X-RateLimit-Reset", "99999999999"), "", want{kind: providers.Temporary, retryAfter: 24 * time.Hour, slowDown: true}},
		{"429 no reset", 429, nil, "", want{kind: providers.Temporary, retryAfter: time.Second, slowDown: true, msg: "Too Many Requests"}},
		{"429 bad reset, retry-after", 429, hdr("X-RateLimit-Reset", "soon", "Retry-After", "7"), "", want{kind: providers.Temporary, retryAfter: 7 * time.Second, slowDown: true}},
		{"500", 500, nil, "error_500.json", want{kind: providers.Temporary, msg: "An internal server error occurred."}},
		{"502 html", 502, nil, "<html>bad gateway</html>", want{kind: providers.Temporary, connLost: true, msg: "Bad Gateway"}},
		{"503", 503, nil, "error_500.json", want{kind: providers.Temporary, connLost: true}},
		{"504", 504, nil, "", want{kind: providers.Temporary, connLost: true}},
		{"408", 408, nil, "", want{kind: providers.Temporary}},
		{"400 from", 400, nil, "error_400_from.json", want{kind: providers.Fatal, msg: "The from email does not contain a valid address. (field from.email)"}},
		{"400 from identity", 400, nil, "error_400_from_identity.json", want{kind: providers.Fatal, msg: "verified Sender Identity"}},
		{"400 reserved header", 400, nil, "error_400_headers.json", want{kind: providers.Fatal, msg: "(field headers)"}},
		{"400 categories", 400, nil, "error_400_categories.json", want{kind: providers.Fatal, msg: "(field categories)"}},
		{"400 reply_to", 400, nil, `{"errors":[{"message":"The reply_to email does not contain a valid address.","field":"reply_to.email"}]}`, want{kind: providers.Fatal}},
		{"400 tracking settings", 400, nil, `{"errors":[{"message":"bad","field":"tracking_settings.subscription_tracking.enable"}]}`, want{kind: providers.Fatal}},
		{"400 personalization subject", 400, nil, `{"errors":[{"message":"The subject is required.","field":"personalizations.0.subject"}]}`, want{kind: providers.Fatal}},
		{"400 recipient name", 400, nil, `{"errors":[{"message":"bad name","field":"personalizations.0.to.0.name"}]}`, want{kind: providers.Permanent}},
		{"400 recipient list", 400, nil, `{"errors":[{"message":"Each email address in the personalization block should be unique","field":"personalizations.0.to"}]}`, want{kind: providers.Permanent}},
		{"400 no field", 400, nil, `{"errors":[{"message":"Bad Request","field":null}]}`, want{kind: providers.Permanent}},
		{"400 toast field", 400, nil, `{"errors":[{"message":"x","field":"personalizations.0.toast"}]}`, want{kind: providers.Fatal}},
		{"400 recipient", 400, nil, "error_400_to.json", want{kind: providers.Permanent, bounce: true, msg: "Does not contain a valid address. (field personalizations.0.to.0.email)"}},
		{"400 not json", 400, nil, "oops", want{kind: providers.Permanent, msg: "Bad Request"}},
		{"413", 413, nil, "error_413.json", want{kind: providers.Permanent, msg: "too large"}},
		{"422", 422, nil, "", want{kind: providers.Permanent}},
		{"401", 401, nil, "error_401.json", want{kind: providers.Fatal, msg: "invalid, expired, or revoked"}},
		{"403", 403, nil, "error_403.json", want{kind: providers.Fatal, msg: "verified Sender Identity"}},
		{"404", 404, nil, "", want{kind: providers.Fatal, msg: "endpoint"}},
		{"405", 405, nil, "", want{kind: providers.Fatal}},
		{"301", 301, hdr("Location", "https://elsewhere.example"), "", want{kind: providers.Fatal, msg: "endpoint"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(c.body)
			if strings.HasSuffix(c.body, ".json") && !strings.HasPrefix(c.body, "{") {
				body = fixture(t, c.body)
			}
			h := c.header
			if h == nil {
				h = http.Header{}
			}
			r, err := classify(c.status, h, body, now)
			pe := providers.AsError(err)
			if pe == nil {
				t.Fatalf("classify = %+v, %v; want a *providers.Error", r, err)
			}
			got := want{pe.Kind, pe.RetryAfter, pe.SlowDown, pe.Bounce, pe.Connection, ""}
			w := c.want
			w.msg = ""
			if got != w {
				t.Errorf("got %+v, want %+v (%v)", got, w, err)
			}
			if pe.Code != c.status {
				t.Errorf("Code = %d, want %d", pe.Code, c.status)
			}
			if !strings.Contains(pe.Message, c.want.msg) {
				t.Errorf("Message = %q, want it to contain %q", pe.Message, c.want.msg)
			}
			if !strings.HasPrefix(err.Error(), "sendgrid: "+c.want.kind.String()) {
				t.Errorf("Error() = %q", err)
			}
		})
	}
	t.Run("202", func(t *testing.T) {
		r, err := classify(202, hdr("X-Message-Id", "abc123"), nil, now)
		if err != nil || r.MessageID != "abc123" {
			t.Errorf("classify(202) = %+v, %v", r, err)
		}
	})
}

func TestRateLimitedSend(t *testing.T) {
	reset := time.Now().Add(30 * time.Second).Unix()
	f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		w.Header().Set("X-RateLimit-Limit", "600")
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
		jsonAnswer(w, http.StatusTooManyRequests, fixture(t, "error_429.json"))
		return false
	})
	p := newProvider(t, f.srv.URL, Config{})
	p.now = func() time.Time { return time.Unix(reset-30, 0) }
	_, err := p.Send(context.Background(), providertest.Message("a@example.org", 1))
	pe := providers.AsError(err)
	if pe == nil || pe.Kind != providers.Temporary || !pe.SlowDown || pe.RetryAfter != 30*time.Second || pe.Code != 429 {
		t.Fatalf("Send = %#v, want temporary 429 SlowDown RetryAfter=30s", pe)
	}
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
		f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) bool {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
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
		f := newFake(t, func(_ http.ResponseWriter, r *http.Request, _ int) bool {
			<-r.Context().Done()
			return false
		})
		p := newProvider(t, f.srv.URL, Config{Timeout: 100 * time.Millisecond})
		start := time.Now()
		_, err := p.Send(context.Background(), providertest.Message("a@example.org", 1))
		if providers.KindOf(err) != providers.Unknown || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("Send = %v, want unknown with a timeout", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("timeout of 100ms took %s", d)
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

// TestKeyNeverLeaks drives every error path and the provider's formatting and looks for
// the key.
func TestKeyNeverLeaks(t *testing.T) {
	var errs []error
	for _, status := range []int{400, 401, 403, 404, 413, 429, 500, 503, 301} {
		f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ int) bool {
			// A hostile or confused server echoes the request back.
			w.Header().Set("Location", "http://elsewhere.example/"+r.Header.Get("Authorization"))
			jsonAnswer(w, status, []byte(`{"errors":[{"message":"echo `+r.Header.Get("Authorization")+`","field":"`+r.Header.Get("Authorization")+`"}]}`))
			return false
		})
		p := newProvider(t, f.srv.URL, Config{})
		_, err := p.Send(context.Background(), providertest.Message("a@example.org", 1))
		errs = append(errs, err)
		for _, q := range f.requests() {
			if strings.Contains(q.URL, testKey) {
				t.Errorf("key in URL %q", q.URL)
			}
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			if s := fmt.Sprintf(verb, p); strings.Contains(s, testKey) || strings.Contains(s, "tEsTkEy") {
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
	_, err = New(Config{}, providers.NewSecret(testKey+"\n"))
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil {
			t.Fatalf("an error path returned no error")
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", providers.AsError(err))} {
			if strings.Contains(s, "tEsTkEy") {
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
	if reg.Kind != "sendgrid" || reg.Check == nil || reg.Open == nil {
		t.Fatalf("Registration = %+v", reg)
	}
	env := map[string]string{"SG_KEY": testKey}
	cases := []struct {
		name    string
		doc     string
		secrets bool
		wantErr string
	}{
		{"minimal", "api_key_env: SG_KEY", true, ""},
		{"all keys", "api_key_env: SG_KEY\nendpoint: http://127.0.0.1:9/\ntimeout: 5s", true, ""},
		{"missing key env", "endpoint: https://api.sendgrid.com", false, "api_key_env is required"},
		{"unset variable, no secrets", "api_key_env: NOPE", false, ""},
		{"unset variable", "api_key_env: NOPE", true, "NOPE"},
		{"unknown key", "api_key_env: SG_KEY\napi_key: SG.inline", false, "api_key"},
		{"key pasted into api_key_env", "api_key_env: SG.AbC123xyz.pasted", false, "does not look like an environment variable name"},
		{"bad endpoint", "api_key_env: SG_KEY\nendpoint: api.sendgrid.com", false, "endpoint"},
		{"endpoint with query", "api_key_env: SG_KEY\nendpoint: https://x.example/?k=1", false, "query"},
		{"negative timeout", "api_key_env: SG_KEY\ntimeout: -1s", false, "negative"},
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
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.HasPrefix(err.Error(), "sendgrid: ") {
				t.Fatalf("Check = %v, want a sendgrid error mentioning %q", err, c.wantErr)
			}
		})
	}
	t.Run("open", func(t *testing.T) {
		p, err := reg.Open(context.Background(), spec("api_key_env: SG_KEY\ntimeout: 5s", env))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer p.Close()
		sp := p.(*Provider)
		if sp.url != DefaultEndpoint+"/v3/mail/send" || sp.client.Timeout != 5*time.Second || sp.key.Reveal() != testKey {
			t.Errorf("opened %v with timeout %s", sp, sp.client.Timeout)
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

func BenchmarkBody(b *testing.B) {
	msg := providertest.Message("jane.doe@example.org", 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Body(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Message-Id", "x")
		w.WriteHeader(http.StatusAccepted)
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

// TestFakeReplaysDocumentedExample: the request example of SendGrid's Mail Send reference
// is accepted by the fake, and herald's own request passes the same checks.
func TestFakeReplaysDocumentedExample(t *testing.T) {
	f := newFake(t, nil)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v3/mail/send", strings.NewReader(string(fixture(t, "request_example.json"))))
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("documented example answered %s", resp.Status)
	}
	got := f.received()
	if len(got) != 1 || got[0].To != "john@example.com" || got[0].Subject != "Hello, World!" {
		t.Errorf("received %+v", got)
	}
	// The documented example leaves subscription tracking to the account: the account's
	// own List-Unsubscribe replaces any other.
	if lu := got[0].Headers.Get("List-Unsubscribe"); !strings.Contains(lu, "sendgrid.example") {
		t.Errorf("List-Unsubscribe = %q, want the account's subscription tracking link", lu)
	}
}

// TestNamesWithCommasAreDelivered: SendGrid accepts a name holding ',' or ';' with 202
// and drops the mail later; herald removes those characters so the mail goes.
func TestNamesWithCommasAreDelivered(t *testing.T) {
	f := newFake(t, nil)
	p := newProvider(t, f.srv.URL, Config{})
	msg := providertest.Message("ann.smith@example.org", 1)
	msg.ToName = "Smith, Ann; PhD"
	msg.From = `"News, Weekly; Acme" <news@example.com>`
	msg.ReplyTo = "help@example.com"
	if _, err := p.Send(context.Background(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if d := f.droppedLater(); len(d) != 0 {
		t.Fatalf("SendGrid would drop the message: %v", d)
	}
	if n := len(f.received()); n != 1 {
		t.Fatalf("received %d messages, want 1", n)
	}
	var body struct {
		From             struct{ Name string } `json:"from"`
		Personalizations []struct {
			To []struct{ Name string } `json:"to"`
		} `json:"personalizations"`
	}
	if err := json.Unmarshal(f.requests()[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if got := body.Personalizations[0].To[0].Name; got != "Smith Ann PhD" {
		t.Errorf("to.name = %q, want %q", got, "Smith Ann PhD")
	}
	if body.From.Name != "News Weekly Acme" {
		t.Errorf("from.name = %q", body.From.Name)
	}
}

func TestDisplayName(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"Ann Smith":       "Ann Smith",
		"Smith, Ann":      "Smith Ann",
		";,":              "",
		"a;b,c":           "a b c",
		" Dupont ,  Zoé ": "Dupont Zoé",
	} {
		if got := DisplayName(in); got != want {
			t.Errorf("DisplayName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHeraldsUnsubscribeStands: with subscription tracking on in the account, SendGrid
// would replace herald's List-Unsubscribe unless the request turns tracking off.
func TestHeraldsUnsubscribeStands(t *testing.T) {
	f := newFake(t, nil)
	p := newProvider(t, f.srv.URL, Config{})
	if _, err := p.Send(context.Background(), providertest.Message("a@example.org", 3)); err != nil {
		t.Fatal(err)
	}
	got := f.received()
	if len(got) != 1 {
		t.Fatalf("received %d", len(got))
	}
	if lu := got[0].Headers.Get("List-Unsubscribe"); lu != "<https://news.example.com/u/tok3>, <mailto:unsubscribe@example.com>" {
		t.Errorf("List-Unsubscribe = %q, want herald's", lu)
	}
	if strings.Contains(got[0].Text, "sendgrid.example") {
		t.Errorf("SendGrid's own unsubscribe footer was added: %q", got[0].Text)
	}
}

func TestReservedHeaders(t *testing.T) {
	for _, name := range []string{"Received", "DKIM-Signature", "x-sg-id", "X-SG-EID", "Content-Type", "content-transfer-encoding", "To", "From", "Subject", "Reply-To", "CC", "bcc"} {
		if !Reserved(name) {
			t.Errorf("Reserved(%q) = false", name)
		}
	}
	for _, name := range []string{"X-Campaign", "List-Unsubscribe", "List-Unsubscribe-Post", "Precedence", "X-Sg-Idx"} {
		if Reserved(name) {
			t.Errorf("Reserved(%q) = true", name)
		}
	}
	// validate runs the registration's Check: the campaign's headers are refused there.
	err := Registration().Check(providers.Spec{Kind: Name, Decode: spec("api_key_env: SG_KEY", nil).Decode,
		Headers: map[string]string{"X-Campaign": "n", "X-SG-EID": "forged", "Received": "x"}}, false)
	if err == nil || !strings.HasPrefix(err.Error(), "sendgrid: headers: ") || !strings.Contains(err.Error(), "Received, X-SG-EID") {
		t.Errorf("Check with reserved headers = %v", err)
	}
	if err := Registration().Check(providers.Spec{Kind: Name, Decode: spec("api_key_env: SG_KEY", nil).Decode,
		Headers: map[string]string{"X-Campaign": "n"}}, false); err != nil {
		t.Errorf("Check with an ordinary header = %v", err)
	}
	// Reaching Send anyway, a reserved header stops the run: every message carries it.
	f := newFake(t, nil)
	p := newProvider(t, f.srv.URL, Config{})
	msg := providertest.Message("a@example.org", 1)
	msg.Headers = append(msg.Headers, providers.Header{Name: "DKIM-Signature", Value: "v=1"})
	if _, err := p.Send(context.Background(), msg); providers.KindOf(err) != providers.Fatal {
		t.Errorf("Send with a reserved header = %v, want fatal", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("the request was sent anyway (%d)", n)
	}
}

// TestNonASCIIHeaderEncoded: SendGrid sends header values as they are; herald encodes a
// non-ASCII value as an RFC 2047 encoded word.
func TestNonASCIIHeaderEncoded(t *testing.T) {
	f := newFake(t, nil)
	p := newProvider(t, f.srv.URL, Config{})
	msg := providertest.Message("a@example.org", 1)
	msg.Headers = append(msg.Headers, providers.Header{Name: "X-Edition", Value: "Café ☕ du matin"}, providers.Header{Name: "X-Plain", Value: "plain"})
	if _, err := p.Send(context.Background(), msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	body := string(f.requests()[0].Body)
	if !strings.Contains(body, `"X-Edition":"=?utf-8?q?`) || !strings.Contains(body, `"X-Plain":"plain"`) {
		t.Errorf("headers in %s", body)
	}
	got := f.received()
	if len(got) != 1 || got[0].Headers.Get("X-Edition") != "Café ☕ du matin" {
		t.Errorf("received %+v", got)
	}
}

func TestCategory(t *testing.T) {
	long := strings.Repeat("é", 300)
	for in, want := range map[string]string{
		"november-news":          "november-news",
		"été 2026":               "_t_ 2026",
		long:                     strings.Repeat("_", 255),
		"tab\there":              "tab_here",
		strings.Repeat("a", 256): strings.Repeat("a", 255),
	} {
		if got := Category(in); got != want {
			t.Errorf("Category(%.20q…) = %.20q…, want %.20q…", in, got, want)
		}
	}
	f := newFake(t, nil)
	p := newProvider(t, f.srv.URL, Config{})
	msg := providertest.Message("a@example.org", 1)
	msg.Campaign = long
	if _, err := p.Send(context.Background(), msg); err != nil {
		t.Fatalf("Send with a long non-ASCII campaign name: %v", err)
	}
}

// TestSenderRejectionIsFatal: an unverified sender is refused for every recipient; the
// run must stop rather than mark each one failed.
func TestSenderRejectionIsFatal(t *testing.T) {
	f := newFake(t, nil)
	f.verified = []string{"@verified.example"}
	p := newProvider(t, f.srv.URL, Config{})
	_, err := p.Send(context.Background(), providertest.Message("a@example.org", 1))
	if pe := providers.AsError(err); pe == nil || pe.Kind != providers.Fatal || pe.Bounce {
		t.Fatalf("Send from an unverified sender = %v, want fatal", err)
	}
	for _, fx := range []string{"error_400_from.json", "error_400_from_identity.json", "error_400_headers.json"} {
		f := newFake(t, func(w http.ResponseWriter, _ *http.Request, _ int) bool {
			jsonAnswer(w, http.StatusBadRequest, fixture(t, fx))
			return false
		})
		p := newProvider(t, f.srv.URL, Config{})
		if _, err := p.Send(context.Background(), providertest.Message("a@example.org", 1)); providers.KindOf(err) != providers.Fatal {
			t.Errorf("400 %s = %v, want fatal", fx, err)
		}
	}
}
