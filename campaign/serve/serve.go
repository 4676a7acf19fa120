// Package serve is herald's HTTP endpoint for unsubscribe links: RFC 8058 one-click POSTs
// from mail clients and a confirmation page for people who click the link.
//
// A GET never changes anything (mail scanners follow links): it shows a page with a
// button. A POST to the same URL (the button, or a mail client's one-click request with
// the body "List-Unsubscribe=One-Click") adds the address to the store's suppression list
// and answers 200 without a redirect. The token is found wherever herald put it in the
// URL, under any path prefix, so the endpoint works behind a reverse proxy.
//
// A path ending in /webhooks/sendgrid, /webhooks/mandrill or /webhooks/ses is that
// provider's event webhook (see EnableWebhooks): authenticated bounces, complaints and
// unsubscribes it reports are added to the suppression list.
package serve

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/unsubscribe"
)

// Limits bound every phase of a request, so that slow or idle clients (a slowloris, a
// trickled body, a keep-alive connection left open) cannot hold the server.
type Limits struct {
	// ReadHeaderTimeout bounds reading the request line and headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading the whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of the headers to the end of the
	// response.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for its next request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a request's body: a larger declared length is answered 413
	// before it is read, and a larger body is cut off where it passes the bound.
	MaxBodyBytes int64
}

// DefaultLimits are the bounds of `herald serve`: generous for a mail client's
// one-click POST and a provider's webhook batch (up to 16 MiB), short for anyone
// holding a connection open.
func DefaultLimits() Limits {
	return Limits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		MaxBodyBytes:      maxWebhookBody,
	}
}

// NewServer returns an HTTP server for h with every phase bounded by l (zero fields:
// the DefaultLimits).
func NewServer(h http.Handler, l Limits) *http.Server {
	d := DefaultLimits()
	for _, f := range []struct{ v, def *time.Duration }{
		{&l.ReadHeaderTimeout, &d.ReadHeaderTimeout}, {&l.ReadTimeout, &d.ReadTimeout},
		{&l.WriteTimeout, &d.WriteTimeout}, {&l.IdleTimeout, &d.IdleTimeout},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = d.MaxBodyBytes
	}
	return &http.Server{
		Handler:           limitBody(h, l.MaxBodyBytes),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
}

// limitBody refuses a declared body over n bytes with 413 and cuts off a longer one.
func limitBody(h http.Handler, n int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			w.Header().Set("Connection", "close")
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		h.ServeHTTP(w, r)
	})
}

// Suppressor is the part of the store the endpoint writes to.
type Suppressor interface {
	Suppress(ctx context.Context, list []journal.Suppression) (int, error)
}

// Handler serves unsubscribe links.
type Handler struct {
	store  Suppressor
	signer *unsubscribe.Signer
	now    func() time.Time
	hooks  *webhooks
}

// New returns a handler that verifies tokens with secret and suppresses into store.
func New(store Suppressor, secret []byte, now func() time.Time) (*Handler, error) {
	s, err := unsubscribe.NewSigner(secret)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Handler{store: store, signer: s, now: now}, nil
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{{ .Title }}</title>
<style>body{font-family:sans-serif;max-width:32em;margin:4em auto;padding:0 1em}button{font-size:1.1em;padding:.5em 1.2em}</style>
</head><body><h1>{{ .Title }}</h1><p>{{ .Text }}</p>
{{ if .Button }}<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>{{ end }}
</body></html>
`))

type view struct {
	Title, Text string
	Button      bool
}

func (h *Handler) render(w http.ResponseWriter, code int, v view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Robots-Tag", "noindex")
	w.WriteHeader(code)
	_ = page.Execute(w, v)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if provider, ok := webhookPath(r.URL.Path); ok {
		h.serveWebhook(w, r, provider)
		return
	}
	tok, ok := unsubscribe.Find(r.URL)
	if !ok {
		h.render(w, http.StatusNotFound, view{Title: "Not found", Text: "This is not an unsubscribe link."})
		return
	}
	campaign, addr, err := h.signer.Verify(tok)
	if err != nil {
		h.render(w, http.StatusBadRequest, view{Title: "Invalid link", Text: "This unsubscribe link is invalid or has been changed. Please use the link from the message you received."})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.render(w, http.StatusOK, view{Title: "Unsubscribe", Text: "Unsubscribe " + addr + " from these emails?", Button: true})
	case http.MethodPost:
		_, err := h.store.Suppress(r.Context(), []journal.Suppression{{
			Email: addr, Reason: "unsubscribed", Source: "unsubscribe:" + campaign, At: h.now(),
		}})
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, context.Canceled) {
				code = http.StatusServiceUnavailable
			}
			h.render(w, code, view{Title: "Please try again", Text: "Your request could not be recorded just now."})
			return
		}
		h.render(w, http.StatusOK, view{Title: "Unsubscribed", Text: addr + " will receive no more of these emails."})
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		h.render(w, http.StatusMethodNotAllowed, view{Title: "Method not allowed", Text: "Use the link or the button."})
	}
}
