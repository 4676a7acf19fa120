package serve

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// shortLimits are small enough for tests to see every bound act.
var shortLimits = Limits{
	ReadHeaderTimeout: 500 * time.Millisecond,
	ReadTimeout:       time.Second,
	WriteTimeout:      2 * time.Second,
	IdleTimeout:       500 * time.Millisecond,
	MaxHeaderBytes:    8 << 10,
	MaxBodyBytes:      4 << 10,
}

// waitClosed is how long a test waits for the server to close a connection it must
// close; far longer than any bound of shortLimits, so that only a missing bound fails.
const waitClosed = 20 * time.Second

// startLimited serves h with the limits l on a loopback port.
func startLimited(t *testing.T, h http.Handler, l Limits) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = NewServer(h, l)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// readsBody answers 200 after reading the whole body, or 413 past the bound.
var readsBody = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, err := io.ReadAll(r.Body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "ok")
})

// closedByServer reads from c until the server closes it (whatever it answered first)
// and fails the test if that does not happen within waitClosed.
func closedByServer(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(waitClosed))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return fmt.Errorf("connection still open after %s", waitClosed)
	}
	return nil
}

// A few hundred slow clients trickling their headers do not keep the server from
// answering a normal request, and each of them is cut off (issue 13 item 9).
func TestServerSlowloris(t *testing.T) {
	h, err := New(&fakeStore{}, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := startLimited(t, h, shortLimits)
	const slow = 300
	var wg sync.WaitGroup
	errs := make(chan error, slow)
	for i := 0; i < slow; i++ {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			go func() { // trickle a header line now and then, never ending the headers
				_, _ = io.WriteString(c, "GET /unsubscribe/x HTTP/1.1\r\nHost: a\r\n")
				t := time.NewTicker(100 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-done:
						return
					case <-t.C:
						if _, err := io.WriteString(c, "X-Slow: 1\r\n"); err != nil {
							return
						}
					}
				}
			}()
			errs <- closedByServer(c)
			close(done)
		}()
	}
	// A normal request is answered meanwhile.
	client := &http.Client{Timeout: waitClosed}
	resp, err := client.Get(ts.URL + "/not-a-token")
	if err != nil {
		t.Fatalf("normal request during the slowloris: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("normal request: %d, want 404", resp.StatusCode)
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if err != nil {
			n++
		}
	}
	if n > 0 {
		t.Fatalf("%d of %d slow clients were never cut off", n, slow)
	}
}

// A body trickled a byte at a time is cut off by the read timeout.
func TestServerTrickledBodyCutOff(t *testing.T) {
	ts := startLimited(t, readsBody, shortLimits)
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /webhooks/sendgrid HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if _, err := io.WriteString(c, "x"); err != nil {
					return
				}
			}
		}
	}()
	if err := closedByServer(c); err != nil {
		t.Fatal(err)
	}
}

// A keep-alive connection left idle is closed by the idle timeout.
func TestServerIdleConnectionClosed(t *testing.T) {
	ts := startLimited(t, readsBody, shortLimits)
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitClosed))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF (closed by the server)", err)
	}
}

// Oversized headers get 431; a declared body over the bound gets 413 unread, and an
// undeclared (chunked) one is cut off where it passes the bound.
func TestServerSizeLimits(t *testing.T) {
	ts := startLimited(t, readsBody, shortLimits)
	req, _ := http.NewRequest("GET", ts.URL, nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB header: %d, want 431", resp.StatusCode)
	}
	resp, err = http.Post(ts.URL, "application/json", strings.NewReader(strings.Repeat("a", 5<<10)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("5 KiB declared body: %d, want 413", resp.StatusCode)
	}
	resp, err = http.Post(ts.URL, "application/json", io.MultiReader(strings.NewReader(strings.Repeat("a", 5<<10))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("5 KiB chunked body: %d, want 413", resp.StatusCode)
	}
}

func TestNewServerDefaults(t *testing.T) {
	srv := NewServer(http.NotFoundHandler(), Limits{IdleTimeout: time.Second})
	d := DefaultLimits()
	if srv.ReadHeaderTimeout != d.ReadHeaderTimeout || srv.ReadTimeout != d.ReadTimeout ||
		srv.WriteTimeout != d.WriteTimeout || srv.IdleTimeout != time.Second || srv.MaxHeaderBytes != d.MaxHeaderBytes {
		t.Fatalf("server %+v: zero fields must take the defaults, set ones stay", srv)
	}
	if d.ReadTimeout <= 0 || d.WriteTimeout <= 0 || d.IdleTimeout <= 0 || d.MaxBodyBytes <= 0 {
		t.Fatalf("a default limit is unbounded: %+v", d)
	}
}
