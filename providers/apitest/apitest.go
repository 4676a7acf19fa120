// Package apitest holds fake API servers that answer every request at once with the
// documented success shape of SES v2, SendGrid or Mandrill, and count the connections
// their clients open. They are for tests and benchmarks of the send path outside the
// provider packages (the provider packages test their error handling against their own,
// stricter fakes).
package apitest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/providertest"
)

// Paths of the calls the fakes answer.
const (
	SESSendPath      = "/v2/email/outbound-emails"
	SESAccountPath   = "/v2/email/account"
	SendGridSendPath = "/v3/mail/send"
	MandrillSendPath = "/api/1.0/messages/send-raw.json"
)

// Server is a running fake. Its URL is the base URL (endpoint) to point a provider at.
type Server struct {
	URL    string
	srv    *httptest.Server
	conns  atomic.Int64
	closed atomic.Int64
	sent   atomic.Int64
	stop   chan struct{}

	mu    sync.Mutex
	group int           // Rendezvous: send requests answered in groups of this many
	seen  int           // send requests of the current group so far
	full  chan struct{} // closed when the current group is full
}

// Rendezvous makes the server hold every send request until k of them have arrived,
// then answer those k together: k workers sending a multiple of k messages then always
// have k requests in flight at once, each needing its own connection. 0 turns it off.
func (s *Server) Rendezvous(k int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.group, s.seen, s.full = k, 0, make(chan struct{})
}

// meet waits for the request's group to fill (or the server to stop).
func (s *Server) meet() {
	s.mu.Lock()
	if s.group <= 1 {
		s.mu.Unlock()
		return
	}
	full := s.full
	if s.seen++; s.seen == s.group {
		close(full)
		s.seen, s.full = 0, make(chan struct{})
	}
	s.mu.Unlock()
	select {
	case <-full:
	case <-s.stop:
	}
}

// Conns returns how many connections clients have opened to the server so far.
func (s *Server) Conns() int { return int(s.conns.Load()) }

// Closed returns how many of those connections have been closed so far.
func (s *Server) Closed() int { return int(s.closed.Load()) }

// Sent returns how many send requests the server has accepted so far.
func (s *Server) Sent() int { return int(s.sent.Load()) }

// Close stops the server; it is also called by the test's cleanup.
func (s *Server) Close() { s.srv.Close() }

func start(tb testing.TB, h func(s *Server, w http.ResponseWriter, r *http.Request)) *Server {
	tb.Helper()
	s := &Server{stop: make(chan struct{})}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(s, w, r)
	}))
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.closed.Add(1)
		}
	}
	s.srv.Start()
	s.URL = s.srv.URL
	tb.Cleanup(s.srv.Close)
	tb.Cleanup(func() { close(s.stop) }) // runs first: releases held requests
	return s
}

func (s *Server) id() string { return strconv.FormatInt(s.sent.Add(1), 10) }

func notFound(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "no route "+r.Method+" "+r.URL.Path, http.StatusNotFound)
}

// SES starts a fake SES v2 endpoint: GetAccount answers a healthy production account
// with an unlimited quota and no rate limit, SendEmail a fresh message id. The request
// signature is not checked (as with the aws-ses-v2-local emulator).
func SES(tb testing.TB) *Server {
	return start(tb, func(s *Server, w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == SESSendPath:
			s.meet()
			_, _ = io.WriteString(w, `{"MessageId":"fake-`+s.id()+`"}`)
		case r.Method == http.MethodGet && r.URL.Path == SESAccountPath:
			_, _ = io.WriteString(w, `{"SendingEnabled":true,"EnforcementStatus":"HEALTHY","ProductionAccessEnabled":true,`+
				`"SendQuota":{"Max24HourSend":-1,"MaxSendRate":0,"SentLast24Hours":0}}`)
		default:
			notFound(w, r)
		}
	})
}

// SendGrid starts a fake SendGrid v3 Mail Send endpoint: 202 with an X-Message-Id.
func SendGrid(tb testing.TB) *Server {
	return start(tb, func(s *Server, w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method != http.MethodPost || r.URL.Path != SendGridSendPath {
			notFound(w, r)
			return
		}
		s.meet()
		w.Header().Set("X-Message-Id", "fake-"+s.id())
		w.WriteHeader(http.StatusAccepted)
	})
}

// Mandrill starts a fake Mandrill messages/send-raw endpoint: one "sent" result for each
// address of the request's `to`.
func Mandrill(tb testing.TB) *Server {
	type result struct {
		Email  string `json:"email"`
		Status string `json:"status"`
		ID     string `json:"_id"`
	}
	return start(tb, func(s *Server, w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != MandrillSendPath {
			_, _ = io.Copy(io.Discard, r.Body)
			notFound(w, r)
			return
		}
		var req struct {
			To []string `json:"to"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"status":"error","code":-1,"name":"ValidationError","message":"bad JSON"}`)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		s.meet()
		out := make([]result, len(req.To))
		for i, to := range req.To {
			out[i] = result{Email: to, Status: "sent", ID: "fake-" + s.id()}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

// SendAll sends n messages (providertest.Message to n distinct recipients) through p
// from workers goroutines at once, as the pipeline's workers do, and fails tb on the
// first error.
func SendAll(tb testing.TB, p providers.Provider, workers, n int) {
	tb.Helper()
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := p.Send(context.Background(), providertest.Message(fmt.Sprintf("user%d@example.org", i), i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var failed error
loop:
	for i := range n {
		select {
		case next <- i:
		case failed = <-errs:
			break loop
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if failed == nil {
		failed = <-errs
	}
	if failed != nil {
		tb.Fatalf("send: %v", failed)
	}
}

// MaxConns is the most connections workers that keep one connection each may open
// while sending: workers, plus a tenth and two for the connections Go's transport drops
// on its own on a loaded machine (it discards a connection whose answer arrived before
// it saw its own write of the request complete, after waiting 50 ms). A pool smaller
// than the workers re-dials on nearly every request and opens far more.
func MaxConns(workers int) int { return workers + workers/10 + 2 }

// CheckConns fails tb when more than MaxConns(workers) connections were opened to s
// while sending n messages.
func CheckConns(tb testing.TB, s *Server, workers, n int) {
	tb.Helper()
	if s.Sent() != n {
		tb.Fatalf("the API accepted %d of %d messages", s.Sent(), n)
	}
	tb.Logf("%d workers sending %d messages opened %d connections (%d of them closed by now)", workers, n, s.Conns(), s.Closed())
	if got := s.Conns(); got > MaxConns(workers) {
		tb.Errorf("%d workers sending %d messages opened %d connections (%d of them closed by now), want at most %d",
			workers, n, got, s.Closed(), MaxConns(workers))
	}
}

// PoolSizedToWorkers opens a provider the way the pipeline does, through reg with the
// campaign's workers in its spec (spec makes the spec for the fake's URL), sends with
// every worker's request in flight at once, and fails t when the API saw more than
// MaxConns connections: every worker keeps one kept-alive connection and no more are
// opened, however many workers there are (more than a transport's default idle pool
// included).
func PoolSizedToWorkers(t *testing.T, server func(testing.TB) *Server, reg providers.Registration, spec func(url string) providers.Spec) {
	for _, c := range []struct{ workers, n int }{{8, 400}, {80, 800}} {
		t.Run(fmt.Sprintf("%d workers", c.workers), func(t *testing.T) {
			srv := server(t)
			s := spec(srv.URL)
			s.Workers = c.workers
			p, err := reg.Open(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			srv.Rendezvous(c.workers)
			SendAll(t, p, c.workers, c.n)
			CheckConns(t, srv, c.workers, c.n)
		})
	}
}
