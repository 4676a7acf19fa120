package providers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// This file holds what the HTTP API providers (SendGrid, Mandrill) share: their
// endpoint URL, their HTTP client, one JSON POST with its answer read whole, and the
// classification of a failed round trip. Every error starts with the provider's name.

const (
	// maxAnswer caps how much of an API answer is read (answers are small JSON objects).
	maxAnswer = 1 << 20
	// maxIdlePerHost lets every worker keep its own kept-alive connection when the
	// number of workers is not known.
	maxIdlePerHost = 64
)

// APIURL builds the URL of an API call from an endpoint base URL: endpoint must be an
// http or https URL with a host and without credentials, a query or a fragment; its path
// is kept as a prefix, and path is appended to it. provider starts every error and
// example is the base URL the error shows as a model.
func APIURL(provider, endpoint, example, path string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s: endpoint %q is not an http(s) base URL like %s", provider, endpoint, example)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%s: endpoint %q must not carry credentials, a query or a fragment", provider, u.Redacted())
	}
	return strings.TrimRight(u.String(), "/") + path, nil
}

// CheckTimeout refuses a negative request timeout; provider starts the error.
func CheckTimeout(provider string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%s: timeout %s is negative", provider, d)
	}
	return nil
}

// NewAPIClient returns an HTTP client for an API provider and the transport under it
// (for CloseIdleConnections). Each request, connection included, is bounded by timeout
// (0: none); the connection pool is sized to workers (see SizePool); redirects are not
// followed: a redirect means the endpoint is wrong, and following it could carry the
// key elsewhere, so the 3xx answer itself is returned for the provider to classify.
func NewAPIClient(timeout time.Duration, workers int) (*http.Client, *http.Transport) {
	var tr *http.Transport
	if d, ok := http.DefaultTransport.(*http.Transport); ok {
		tr = d.Clone()
	} else {
		tr = &http.Transport{Proxy: http.ProxyFromEnvironment}
	}
	SizePool(tr, workers)
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, tr
}

// SizePool fits tr's connection pool to workers, the most requests a provider makes at
// once: every worker keeps its own kept-alive connection to the API (Go's default
// transport keeps 2 idle connections per host and the AWS SDK's 10, so more workers
// than that re-dial after nearly every request), and no more connections than workers
// are opened (workers starting together would otherwise dial extra connections that
// are then kept idle for nothing). With workers 0 (not known) every worker up to 64
// keeps its connection and the number opened is not capped.
func SizePool(tr *http.Transport, workers int) {
	if workers <= 0 {
		workers = max(tr.MaxIdleConnsPerHost, maxIdlePerHost)
		tr.MaxIdleConnsPerHost = workers
	} else {
		tr.MaxIdleConnsPerHost = workers
		tr.MaxConnsPerHost = workers
	}
	if tr.MaxIdleConns != 0 { // 0: no limit
		tr.MaxIdleConns = max(tr.MaxIdleConns, workers)
	}
}

// TraceRequestWritten returns ctx with an HTTP client trace that sets wrote once a
// request has been completely written to the server: a failure after that point may
// come after the service accepted the message.
func TraceRequestWritten(ctx context.Context, wrote *atomic.Bool) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
	})
}

// Answer is an API's answer to one request.
type Answer struct {
	// Status is the HTTP status code.
	Status int
	// Header holds the answer's header fields.
	Header http.Header
	// Body is the answer's body, at most its first MiB; when Cut is set, what arrived
	// of it.
	Body []byte
	// Cut is set when the body could not be read to its end: an Unknown error (the
	// request was handled, only its answer was lost) for providers that cannot decide
	// without the whole body.
	Cut *Error
}

// PostJSON posts body as JSON to url through client, with the fields of header added
// (credentials), and reads the answer: at most 1 MiB of its body, the rest discarded up
// to as much again so that the connection can be reused. It fails only with an *Error
// of provider: Fatal when the request cannot be built, else the round trip's failure as
// classified by whether the request had been completely written (see the package
// documentation): not written, Temporary (marked Connection unless ctx was done);
// written, Unknown.
func PostJSON(ctx context.Context, client *http.Client, provider, url string, header http.Header, body []byte) (Answer, error) {
	var wrote atomic.Bool
	req, err := http.NewRequestWithContext(TraceRequestWritten(ctx, &wrote), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Answer{}, &Error{Provider: provider, Kind: Fatal, Message: "cannot build the request", Err: err}
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "herald")
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, transportError(ctx, provider, err, wrote.Load())
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		_ = resp.Body.Close()
	}()
	a := Answer{Status: resp.StatusCode, Header: resp.Header}
	a.Body, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		a.Cut = &Error{Provider: provider, Kind: Unknown, Code: resp.StatusCode,
			Message: "answer cut off (the message may have been accepted): " + errText(ctx, err), Err: err}
	}
	return a, nil
}

// transportError classifies a failed round trip: before the request was fully written
// nothing was handed over (temporary); after it, the service may have accepted the
// message (unknown, never resent automatically).
func transportError(ctx context.Context, provider string, err error, wrote bool) *Error {
	if wrote {
		return &Error{Provider: provider, Kind: Unknown,
			Message: "no answer after the request was sent (the message may have been accepted): " + errText(ctx, err), Err: err}
	}
	if ctx.Err() != nil {
		return &Error{Provider: provider, Kind: Temporary, Message: "not sent: " + errText(ctx, err), Err: err}
	}
	return &Error{Provider: provider, Kind: Temporary, Connection: true, Message: "cannot reach the API: " + errText(ctx, err), Err: err}
}

// errText is a short text for a failed exchange: the context's own error when it is
// done, else the cause inside the client's *url.Error (saying so for a timeout).
func errText(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return ctx.Err().Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return "request timed out: " + ue.Err.Error()
		}
		return ue.Err.Error()
	}
	return err.Error()
}

// OneLine keeps an API's text fit for a single log line: CR, LF and tab become spaces,
// the text is cut to 300 characters (marked with "…") and trimmed.
func OneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 300 {
		s = string(r[:300]) + "…"
	}
	return strings.TrimSpace(s)
}
