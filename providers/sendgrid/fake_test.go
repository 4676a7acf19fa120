package sendgrid

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	sgmail "github.com/sendgrid/sendgrid-go/helpers/mail"

	"github.com/heraldmail/herald/providers/providertest"
)

// request is what the fake server saw of one request.
type request struct {
	Method string
	URL    string
	Path   string
	Header http.Header
	Body   []byte
}

// fake is an httptest server that checks requests the way SendGrid's v3 Mail Send
// reference says the API does, answers with the documented error bodies (testdata), and
// keeps what SendGrid itself would later do with an accepted request:
//   - a name (to, from, reply_to) holding ',' or ';' is accepted with 202 and then
//     dropped as "Invalid": it lands in dropped, never in got;
//   - an account has subscription tracking on unless the request turns it off: SendGrid
//     then replaces List-Unsubscribe with its own;
//   - reserved header names, non-ASCII header values, long or non-ASCII categories, a
//     missing subject or content, or an invalid address are refused with 400;
//   - a From that is not among verified (when set) is refused with 403 (Sender Identity).
//
// answer, when set, runs after those checks and decides the answer itself (errors
// forced by a test).
type fake struct {
	srv      *httptest.Server
	verified []string // verified sender addresses or @domains; empty: any
	mu       sync.Mutex
	reqs     []request
	got      []providertest.Received
	dropped  []string
	answer   func(w http.ResponseWriter, r *http.Request, n int) bool // true: accepted
}

func newFake(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int) bool) *fake {
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
	n := len(f.reqs)
	f.mu.Unlock()
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer SG.") {
		jsonAnswer(w, http.StatusUnauthorized, readFixture("error_401.json"))
		return
	}
	var m sgmail.SGMailV3
	if err := json.Unmarshal(body, &m); err != nil {
		jsonAnswer(w, http.StatusBadRequest, apiError("The request body is not valid JSON.", ""))
		return
	}
	if status, answer := f.check(&m); status != 0 {
		jsonAnswer(w, status, answer)
		return
	}
	if f.answer != nil && !f.answer(w, r, n) {
		return
	}
	if f.answer == nil {
		accept(w, r, n)
	}
	if reason := droppedReason(&m); reason != "" {
		f.mu.Lock()
		f.dropped = append(f.dropped, reason)
		f.mu.Unlock()
		return
	}
	rec, err := received(&m)
	if err != nil {
		panic(err) // the checks above let only one personalization with one recipient through
	}
	f.mu.Lock()
	f.got = append(f.got, rec)
	f.mu.Unlock()
}

// apiError is a SendGrid error body with one error.
func apiError(msg, field string) []byte {
	var fp *string
	if field != "" {
		fp = &field
	}
	b, _ := json.Marshal(map[string]any{"errors": []map[string]any{{"message": msg, "field": fp, "help": nil}}})
	return b
}

// check applies the documented request rules; it returns 0 when the request passes.
func (f *fake) check(m *sgmail.SGMailV3) (int, []byte) {
	if len(m.Personalizations) != 1 || len(m.Personalizations[0].To) != 1 {
		return http.StatusBadRequest, apiError("herald sends one personalization with one recipient.", "personalizations")
	}
	to := m.Personalizations[0].To[0]
	if a, err := mail.ParseAddress(to.Address); err != nil || a.Address != to.Address {
		return http.StatusBadRequest, readFixture("error_400_to.json")
	}
	if m.From == nil || m.From.Address == "" {
		return http.StatusBadRequest, apiError("The from object must be provided for every email send.", "from")
	}
	if _, err := mail.ParseAddress(m.From.Address); err != nil {
		return http.StatusBadRequest, readFixture("error_400_from.json")
	}
	if !f.isVerified(m.From.Address) {
		return http.StatusForbidden, readFixture("error_403.json")
	}
	if m.Personalizations[0].Subject == "" && m.Subject == "" {
		return http.StatusBadRequest, apiError("The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.", "subject")
	}
	if len(m.Content) == 0 {
		return http.StatusBadRequest, apiError("Unless a valid template_id is provided, the content parameter is required.", "content")
	}
	if len(m.Content) > 1 && m.Content[0].Type != "text/plain" {
		return http.StatusBadRequest, apiError("If present, text/plain content must be first, followed by text/html, followed by any other content.", "content")
	}
	for k, v := range m.Headers {
		if Reserved(k) {
			return http.StatusBadRequest, readFixture("error_400_headers.json")
		}
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 || v[i] < 0x20 {
				return http.StatusBadRequest, apiError("Header values must be properly encoded (they are sent as they are).", "headers")
			}
		}
	}
	if len(m.Categories) > 10 {
		return http.StatusBadRequest, apiError("Too many categories.", "categories")
	}
	for _, c := range m.Categories {
		if len(c) > 255 || strings.ContainsFunc(c, func(r rune) bool { return r >= 0x80 }) {
			return http.StatusBadRequest, readFixture("error_400_categories.json")
		}
	}
	args, _ := json.Marshal(m.CustomArgs)
	if len(args) >= 10000 {
		return http.StatusBadRequest, apiError("The total size of custom arguments must be less than 10000 bytes.", "custom_args")
	}
	return 0, nil
}

func (f *fake) isVerified(addr string) bool {
	if len(f.verified) == 0 {
		return true
	}
	addr = strings.ToLower(addr)
	for _, v := range f.verified {
		if addr == v || (strings.HasPrefix(v, "@") && strings.HasSuffix(addr, v)) {
			return true
		}
	}
	return false
}

// droppedReason is why SendGrid drops an accepted request later ("" if it does not).
func droppedReason(m *sgmail.SGMailV3) string {
	names := []string{m.Personalizations[0].To[0].Name}
	if m.From != nil {
		names = append(names, m.From.Name)
	}
	if m.ReplyTo != nil {
		names = append(names, m.ReplyTo.Name)
	}
	for _, n := range names {
		if strings.ContainsAny(n, ",;") {
			return "Invalid: name " + n
		}
	}
	return ""
}

// received decodes a mail send body the way SendGrid would build the message: with the
// account's subscription tracking (on unless the request turns it off) replacing the
// List-Unsubscribe header.
func received(m *sgmail.SGMailV3) (providertest.Received, error) {
	if len(m.Personalizations) != 1 || len(m.Personalizations[0].To) != 1 {
		return providertest.Received{}, fmt.Errorf("want one personalization with one recipient")
	}
	r := providertest.Received{To: m.Personalizations[0].To[0].Address, Subject: m.Personalizations[0].Subject, Headers: mail.Header{}}
	for _, c := range m.Content {
		switch c.Type {
		case "text/plain":
			r.Text += c.Value
		case "text/html":
			r.HTML += c.Value
		}
	}
	dec := new(mime.WordDecoder)
	for k, v := range m.Headers {
		if d, err := dec.DecodeHeader(v); err == nil {
			v = d
		}
		r.Headers[textproto.CanonicalMIMEHeaderKey(k)] = []string{v}
	}
	st := m.TrackingSettings
	if st == nil || st.SubscriptionTracking == nil || st.SubscriptionTracking.Enable == nil || *st.SubscriptionTracking.Enable {
		r.Headers["List-Unsubscribe"] = []string{"<https://u.sendgrid.example/wf/unsubscribe?upn=account-setting>"}
		r.Text += "\nUnsubscribe from all emails: https://u.sendgrid.example/wf/unsubscribe"
	}
	return r, nil
}

func (f *fake) received() []providertest.Received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]providertest.Received(nil), f.got...)
}

func (f *fake) droppedLater() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.dropped...)
}

func (f *fake) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

func readFixture(name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		panic(err)
	}
	return b
}
