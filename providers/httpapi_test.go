package providers

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestAPIURL(t *testing.T) {
	const path = "/v1/send"
	cases := []struct {
		endpoint string
		want     string // the URL, or the text the error must contain
		ok       bool
	}{
		{"https://api.example.com", "https://api.example.com/v1/send", true},
		{"https://api.example.com/", "https://api.example.com/v1/send", true},
		{"http://127.0.0.1:8080/relay/", "http://127.0.0.1:8080/relay/v1/send", true},
		{"http://127.0.0.1:8080/a/b//", "http://127.0.0.1:8080/a/b/v1/send", true},
		{"api.example.com", "not an http(s) base URL like https://api.example.com", false},
		{"ftp://api.example.com", "not an http(s) base URL", false},
		{"https://", "not an http(s) base URL", false},
		{"https://api.example.com/\x7f", "not an http(s) base URL", false},
		{"https://api.example.com/?k=1", "must not carry credentials, a query or a fragment", false},
		{"https://api.example.com/#top", "must not carry credentials, a query or a fragment", false},
		{"https://user:hunter2@api.example.com", "must not carry credentials", false},
	}
	for _, c := range cases {
		t.Run(c.endpoint, func(t *testing.T) {
			got, err := APIURL("acme", c.endpoint, "https://api.example.com", path)
			if c.ok {
				if err != nil || got != c.want {
					t.Fatalf("APIURL = %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), "acme: ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("APIURL = %q, %v; want an acme error containing %q", got, err, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the endpoint's password: %v", err)
			}
		})
	}
}

func TestCheckTimeout(t *testing.T) {
	for _, c := range []struct {
		d  time.Duration
		ok bool
	}{{0, true}, {time.Nanosecond, true}, {30 * time.Second, true}, {-time.Nanosecond, false}, {-3 * time.Second, false}} {
		err := CheckTimeout("acme", c.d)
		if c.ok != (err == nil) {
			t.Errorf("CheckTimeout(%s) = %v", c.d, err)
		}
		if err != nil && err.Error() != "acme: timeout "+c.d.String()+" is negative" {
			t.Errorf("CheckTimeout(%s) = %q", c.d, err)
		}
	}
}

func TestNewAPIClient(t *testing.T) {
	c, tr := NewAPIClient(5*time.Second, 0)
	if c.Timeout != 5*time.Second || c.Transport != tr || tr.MaxIdleConnsPerHost != maxIdlePerHost {
		t.Fatalf("client timeout %s, transport %p (want %p), idle per host %d", c.Timeout, c.Transport, tr, tr.MaxIdleConnsPerHost)
	}
	if tr == http.DefaultTransport {
		t.Error("the client shares the default transport")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			t.Error("the client followed a redirect")
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	defer tr.CloseIdleConnections()
	resp, err := c.Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("status = %d, want the 307 itself", resp.StatusCode)
	}
}

func TestTransportError(t *testing.T) {
	cause := errors.New("connection reset by peer")
	urlErr := &url.Error{Op: "Post", URL: "http://x", Err: cause}
	timeout := &url.Error{Op: "Post", URL: "http://x", Err: timeoutErr{}}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	type want struct {
		kind       Kind
		connection bool
		msg        string
	}
	cases := []struct {
		name  string
		ctx   context.Context
		err   error
		wrote bool
		want  want
	}{
		{"refused before writing", live, urlErr, false, want{Temporary, true, "cannot reach the API: connection reset by peer"}},
		{"timeout before writing", live, timeout, false, want{Temporary, true, "cannot reach the API: request timed out: i/o timeout"}},
		{"cancelled before writing", done, urlErr, false, want{Temporary, false, "not sent: context canceled"}},
		{"dropped after writing", live, urlErr, true, want{Unknown, false, "no answer after the request was sent (the message may have been accepted): connection reset by peer"}},
		{"timeout after writing", live, timeout, true, want{Unknown, false, "(the message may have been accepted): request timed out: i/o timeout"}},
		{"cancelled after writing", done, urlErr, true, want{Unknown, false, "(the message may have been accepted): context canceled"}},
		{"plain error", live, cause, false, want{Temporary, true, "cannot reach the API: connection reset by peer"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := transportError(c.ctx, "acme", c.err, c.wrote)
			got := want{e.Kind, e.Connection, ""}
			if w := (want{c.want.kind, c.want.connection, ""}); got != w {
				t.Errorf("got %+v, want %+v (%v)", got, w, e)
			}
			if !strings.HasSuffix(e.Message, c.want.msg) {
				t.Errorf("Message = %q, want it to end with %q", e.Message, c.want.msg)
			}
			if !strings.HasPrefix(e.Error(), "acme: "+c.want.kind.String()+": ") || !errors.Is(e, c.err) {
				t.Errorf("Error() = %q, Err = %v", e, e.Err)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

func TestTraceRequestWritten(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	var wrote atomic.Bool
	req, _ := http.NewRequestWithContext(TraceRequestWritten(context.Background(), &wrote), http.MethodGet, srv.URL, nil)
	if wrote.Load() {
		t.Fatal("wrote before sending")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if !wrote.Load() {
		t.Error("wrote not set after a request went out")
	}
}

// fakeAPI answers every request with answer after recording it (its body read whole).
func fakeAPI(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (srv *httptest.Server, seen func() []*http.Request) {
	t.Helper()
	var mu sync.Mutex
	var reqs []*http.Request
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		q := r.Clone(context.Background())
		q.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		reqs = append(reqs, q)
		mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []*http.Request {
		mu.Lock()
		defer mu.Unlock()
		return append([]*http.Request(nil), reqs...)
	}
}

func TestPostJSON(t *testing.T) {
	client, tr := NewAPIClient(2*time.Second, 0)
	t.Cleanup(tr.CloseIdleConnections)
	ctx := context.Background()

	t.Run("request and answer", func(t *testing.T) {
		srv, seen := fakeAPI(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Message-Id", "id-1")
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"ok":true}`))
		})
		a, err := PostJSON(ctx, client, "acme", srv.URL+"/v1/send", http.Header{"Authorization": {"Bearer k"}}, []byte(`{"to":"a"}`))
		if err != nil || a.Cut != nil {
			t.Fatalf("PostJSON = %+v, %v", a, err)
		}
		if a.Status != http.StatusAccepted || a.Header.Get("X-Message-Id") != "id-1" || string(a.Body) != `{"ok":true}` {
			t.Errorf("answer = %d %v %q", a.Status, a.Header, a.Body)
		}
		reqs := seen()
		if len(reqs) != 1 {
			t.Fatalf("server saw %d requests", len(reqs))
		}
		q := reqs[0]
		body, _ := io.ReadAll(q.Body)
		if q.Method != http.MethodPost || q.URL.Path != "/v1/send" || string(body) != `{"to":"a"}` {
			t.Errorf("request = %s %s %q", q.Method, q.URL.Path, body)
		}
		for k, v := range map[string]string{"Authorization": "Bearer k", "Content-Type": "application/json", "Accept": "application/json", "User-Agent": "herald"} {
			if got := q.Header.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("header %s = %q, want %q", k, got, v)
			}
		}
	})

	t.Run("capped body", func(t *testing.T) {
		srv, _ := fakeAPI(t, func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(strings.Repeat("x", maxAnswer+10)))
		})
		a, err := PostJSON(ctx, client, "acme", srv.URL, nil, nil)
		if err != nil || a.Cut != nil || len(a.Body) != maxAnswer {
			t.Fatalf("PostJSON = %d bytes, cut %v, %v; want %d bytes", len(a.Body), a.Cut, err, maxAnswer)
		}
	})

	t.Run("answer cut off", func(t *testing.T) {
		srv, _ := fakeAPI(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "500")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`[{"status":"se`))
			w.(http.Flusher).Flush()
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = conn.Close()
			}
		})
		a, err := PostJSON(ctx, client, "acme", srv.URL, nil, nil)
		if err != nil || a.Cut == nil {
			t.Fatalf("PostJSON = %+v, %v; want an answer marked cut", a, err)
		}
		if a.Cut.Kind != Unknown || a.Cut.Code != http.StatusOK || a.Cut.Provider != "acme" || string(a.Body) != `[{"status":"se` {
			t.Errorf("cut = %#v, body %q", a.Cut, a.Body)
		}
	})

	t.Run("refused", func(t *testing.T) {
		closed := httptest.NewServer(http.NotFoundHandler())
		closed.Close() // nothing listens at its address any more
		_, err := PostJSON(ctx, client, "acme", closed.URL, nil, nil)
		if pe := AsError(err); pe == nil || pe.Kind != Temporary || !pe.Connection || pe.Provider != "acme" {
			t.Fatalf("PostJSON = %v, want a temporary connection error", err)
		}
	})

	t.Run("dropped after the request", func(t *testing.T) {
		srv, _ := fakeAPI(t, func(w http.ResponseWriter, _ *http.Request) {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = conn.Close()
			}
		})
		_, err := PostJSON(ctx, client, "acme", srv.URL, nil, []byte("{}"))
		if KindOf(err) != Unknown {
			t.Fatalf("PostJSON = %v, want unknown", err)
		}
	})

	t.Run("cancelled before sending", func(t *testing.T) {
		srv, seen := fakeAPI(t, func(http.ResponseWriter, *http.Request) {})
		done, cancel := context.WithCancel(ctx)
		cancel()
		_, err := PostJSON(done, client, "acme", srv.URL, nil, nil)
		if pe := AsError(err); pe == nil || pe.Kind != Temporary || pe.Connection {
			t.Fatalf("PostJSON = %v, want temporary, not a connection failure", err)
		}
		if n := len(seen()); n != 0 {
			t.Errorf("server saw %d requests", n)
		}
	})

	t.Run("bad url", func(t *testing.T) {
		_, err := PostJSON(ctx, client, "acme", "http://[::1", nil, nil)
		if pe := AsError(err); pe == nil || pe.Kind != Fatal || !strings.HasPrefix(pe.Error(), "acme: fatal: cannot build the request") {
			t.Fatalf("PostJSON = %v, want fatal", err)
		}
	})
}

func TestOneLine(t *testing.T) {
	long := strings.Repeat("é", 310)
	cases := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"  two\r\nlines\tand tab \n", "two  lines and tab"},
		{long, strings.Repeat("é", 300) + "…"},
		{strings.Repeat("a", 300), strings.Repeat("a", 300)},
		{strings.Repeat("a", 301), strings.Repeat("a", 300) + "…"},
	}
	for _, c := range cases {
		if got := OneLine(c.in); got != c.want {
			t.Errorf("OneLine(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSizePool(t *testing.T) {
	for _, c := range []struct {
		workers, idle, idlePerHost, connsPerHost int
	}{
		{0, 100, maxIdlePerHost, 0}, // not known: every worker up to 64 keeps its connection
		{8, 100, 8, 8},
		{256, 256, 256, 256}, // more than the transport's idle connections in all
	} {
		tr := &http.Transport{MaxIdleConns: 100, MaxIdleConnsPerHost: 2}
		SizePool(tr, c.workers)
		if tr.MaxIdleConns != c.idle || tr.MaxIdleConnsPerHost != c.idlePerHost || tr.MaxConnsPerHost != c.connsPerHost {
			t.Errorf("SizePool(%d): idle %d, idle per host %d, per host %d; want %d, %d, %d", c.workers,
				tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost, c.idle, c.idlePerHost, c.connsPerHost)
		}
	}
	tr := &http.Transport{} // no limit on idle connections in all stays none
	SizePool(tr, 8)
	if tr.MaxIdleConns != 0 {
		t.Errorf("SizePool set a limit of %d idle connections where there was none", tr.MaxIdleConns)
	}
}
