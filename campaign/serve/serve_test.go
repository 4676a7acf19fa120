package serve

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/unsubscribe"
)

type fakeStore struct {
	mu   sync.Mutex
	list []journal.Suppression
}

func (f *fakeStore) Suppress(_ context.Context, l []journal.Suppression) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, l...)
	return len(l), nil
}

var secret = []byte("0123456789abcdef0123456789abcdef")

func setup(t *testing.T) (*httptest.Server, *fakeStore, string) {
	t.Helper()
	st := &fakeStore{}
	h, err := New(st, secret, func() time.Time { return time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) })
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s, _ := unsubscribe.NewSigner(secret)
	return srv, st, s.Token("november-news", "Jane@Example.org")
}

func do(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGetShowsPageAndChangesNothing(t *testing.T) {
	srv, st, tok := setup(t)
	code, body := do(t, http.MethodGet, srv.URL+"/unsubscribe/"+tok, "")
	if code != 200 || !strings.Contains(body, "<form method=\"post\"") || !strings.Contains(body, "Jane@Example.org") {
		t.Fatalf("GET = %d %q", code, body)
	}
	if len(st.list) != 0 {
		t.Fatalf("GET suppressed %v", st.list)
	}
}

func TestOneClickPostSuppresses(t *testing.T) {
	srv, st, tok := setup(t)
	// RFC 8058: the mail client POSTs List-Unsubscribe=One-Click to the header's URL,
	// here behind a reverse proxy that added a prefix.
	code, _ := do(t, http.MethodPost, srv.URL+"/news/lists/unsubscribe/"+tok, "List-Unsubscribe=One-Click")
	if code != 200 {
		t.Fatalf("POST = %d, want 200 without a redirect", code)
	}
	if len(st.list) != 1 || st.list[0].Email != "Jane@Example.org" || st.list[0].Source != "unsubscribe:november-news" {
		t.Fatalf("suppressed %+v", st.list)
	}
}

func TestTokenInQuery(t *testing.T) {
	srv, st, tok := setup(t)
	code, _ := do(t, http.MethodPost, srv.URL+"/u?t="+url.QueryEscape(tok), "")
	if code != 200 || len(st.list) != 1 {
		t.Fatalf("POST with the token in the query = %d, %v", code, st.list)
	}
}

func TestChangedTokenRejected(t *testing.T) {
	srv, st, tok := setup(t)
	other, _ := unsubscribe.NewSigner([]byte("another-secret-another-secret-xx"))
	for _, bad := range []string{
		tok[:len(tok)/2] + map[bool]string{true: "A", false: "B"}[tok[len(tok)/2] != 'A'] + tok[len(tok)/2+1:],
		tok[:len(tok)-2],
		other.Token("november-news", "jane@example.org"),
	} {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			if code, _ := do(t, m, srv.URL+"/unsubscribe/"+bad, ""); code != http.StatusBadRequest {
				t.Errorf("%s %s = %d, want 400", m, bad, code)
			}
		}
	}
	if code, _ := do(t, http.MethodGet, srv.URL+"/unsubscribe/", ""); code != http.StatusNotFound {
		t.Errorf("no token: %d, want 404", code)
	}
	if code, _ := do(t, http.MethodDelete, srv.URL+"/unsubscribe/"+tok, ""); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d, want 405", code)
	}
	if len(st.list) != 0 {
		t.Fatalf("a bad request suppressed %v", st.list)
	}
}
