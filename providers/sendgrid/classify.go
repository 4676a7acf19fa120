package sendgrid

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldmail/herald/providers"
)

const (
	// minRetryAfter is the wait after a 429 whose reset time is missing or already past.
	minRetryAfter = time.Second
	// maxRetryAfter caps a reset time far in the future (a broken header).
	maxRetryAfter = 24 * time.Hour
)

// apiErrors is SendGrid's error body: {"errors":[{"message","field","help"}]}.
type apiErrors struct {
	Errors []struct {
		Message string  `json:"message"`
		Field   *string `json:"field"`
		Help    any     `json:"help"`
	} `json:"errors"`
}

// classify turns an HTTP answer into a receipt or a *providers.Error; now is the time the
// answer arrived (for X-RateLimit-Reset).
func classify(status int, h http.Header, body []byte, now time.Time) (providers.Receipt, error) {
	if status >= 200 && status < 300 {
		return providers.Receipt{MessageID: h.Get("X-Message-Id")}, nil
	}
	e := &providers.Error{Provider: Name, Code: status}
	msg, field := firstError(body)
	if msg == "" {
		msg = http.StatusText(status)
	}
	if field != "" {
		msg += " (field " + field + ")"
	}
	e.Message = msg
	switch {
	case status == http.StatusTooManyRequests:
		e.Kind = providers.Temporary
		e.SlowDown = true
		e.RetryAfter = retryAfter(h, now)
	case status == http.StatusRequestTimeout:
		e.Kind = providers.Temporary
	case status >= 500:
		e.Kind = providers.Temporary
		e.Connection = status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = providers.Fatal
		e.Message = "the API key was refused (wrong, revoked, or without the Mail Send permission): " + e.Message
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed || (status >= 300 && status < 400):
		e.Kind = providers.Fatal
		e.Message = "the endpoint is not the SendGrid API (check `endpoint`): " + e.Message
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
		e.Kind = providers.Permanent
		e.Bounce = recipientField(field)
	case status >= 400:
		e.Kind = providers.Permanent
	default:
		// 1xx cannot reach here through net/http; anything else is not understood.
		e.Kind = providers.Unknown
		e.Message = "unexpected answer (the message may have been accepted): " + e.Message
	}
	return providers.Receipt{}, e
}

// firstError returns the first error's message and field from a SendGrid error body, or
// empty strings when the body is not one.
func firstError(body []byte) (msg, field string) {
	var ae apiErrors
	if json.Unmarshal(body, &ae) != nil || len(ae.Errors) == 0 {
		return "", ""
	}
	if f := ae.Errors[0].Field; f != nil {
		field = *f
	}
	return providers.OneLine(ae.Errors[0].Message), providers.OneLine(field)
}

// recipientField reports whether a 400's field names the recipient address
// (personalizations.0.to.0.email): the address itself was refused.
func recipientField(field string) bool {
	return strings.HasPrefix(field, "personalizations.") && strings.Contains(field, ".to.") && strings.HasSuffix(field, ".email")
}

// retryAfter reads X-RateLimit-Reset (epoch seconds), falling back to Retry-After
// (seconds), and returns how long to wait from now, within [1s, 24h].
func retryAfter(h http.Header, now time.Time) time.Duration {
	d := minRetryAfter
	if v, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64); err == nil {
		d = time.Unix(v, 0).Sub(now)
	} else if v, err := strconv.ParseInt(strings.TrimSpace(h.Get("Retry-After")), 10, 64); err == nil {
		d = time.Duration(v) * time.Second
	}
	return min(max(d, minRetryAfter), maxRetryAfter)
}
