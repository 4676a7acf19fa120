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
	msg, field, fields := firstError(body)
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
	case status == http.StatusBadRequest && campaignWide(fields):
		// The request was refused for what every message of the campaign carries (the
		// sender, the headers, the categories, the settings): stop rather than fail
		// every recipient in turn.
		e.Kind = providers.Fatal
		e.Message = "SendGrid refused the campaign, not the recipient: " + e.Message
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
// empty strings when the body is not one; fields are the fields every error names.
func firstError(body []byte) (msg, field string, fields []string) {
	var ae apiErrors
	if json.Unmarshal(body, &ae) != nil || len(ae.Errors) == 0 {
		return "", "", nil
	}
	for _, e := range ae.Errors {
		f := ""
		if e.Field != nil {
			f = *e.Field
		}
		fields = append(fields, f)
	}
	return providers.OneLine(ae.Errors[0].Message), providers.OneLine(fields[0]), fields
}

// recipientField reports whether a 400's field names the recipient address
// (personalizations.0.to.0.email): the address itself was refused.
func recipientField(field string) bool {
	return toField(field) && strings.HasSuffix(field, ".email")
}

// toField reports whether field lies in a personalization's to (the recipient's
// address or name): personalizations.0.to, personalizations.0.to.0.email, ….
func toField(field string) bool {
	rest, ok := strings.CutPrefix(field, "personalizations.")
	if !ok {
		return false
	}
	_, rest, ok = strings.Cut(rest, ".")
	return ok && (rest == "to" || strings.HasPrefix(rest, "to."))
}

// campaignWide reports whether a 400's errors are about the campaign rather than the
// recipient: at least one error names a field, and none names a field of the
// personalization's to. A field outside to (from, reply_to, headers, categories,
// custom_args, tracking_settings, mail_settings, content, subject, …) holds what every
// message of the run carries or is rendered from the same template: the next recipient
// would be refused the same way. An error about the recipient's own to decides for a
// per-recipient answer even when others come with it. A 400 without any field says
// nothing of whom it is about: it stays permanent for the message (the run's backstop
// stops a run that gets the same answer again and again).
func campaignWide(fields []string) bool {
	named := false
	for _, f := range fields {
		if f == "" {
			continue
		}
		if toField(f) {
			return false
		}
		named = true
	}
	return named
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
