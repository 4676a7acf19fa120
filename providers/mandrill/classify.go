package mandrill

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldmail/herald/providers"
)

// result is one recipient's entry of a send answer.
type result struct {
	Email        string `json:"email"`
	Status       string `json:"status"`
	RejectReason string `json:"reject_reason"`
	QueuedReason string `json:"queued_reason"`
	ID           string `json:"_id"`
}

// apiError is Mandrill's error object.
type apiError struct {
	Status  string `json:"status"`
	Code    int    `json:"code"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// classify turns an HTTP answer into a receipt or a *providers.Error. The body's shape
// and names decide first; the status only where the body says nothing Mandrill defines.
func classify(status int, h http.Header, body []byte, to string) (providers.Receipt, error) {
	e := &providers.Error{Provider: Name, Code: status}
	if status == http.StatusTooManyRequests {
		e.Kind, e.SlowDown, e.RetryAfter = providers.Temporary, true, retryAfter(h)
		e.Message = "too many requests"
		if ae, ok := parseError(body); ok && ae.Message != "" {
			e.Enhanced, e.Message = providers.OneLine(ae.Name), providers.OneLine(ae.Message)
		}
		return providers.Receipt{}, e
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var results []result
		if err := json.Unmarshal(trimmed, &results); err == nil && len(results) > 0 {
			return classifyResult(pick(results, to), e)
		}
	}
	if ae, ok := parseError(body); ok {
		return providers.Receipt{}, classifyError(ae, e)
	}
	switch {
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed || (status >= 300 && status < 400):
		e.Kind = providers.Fatal
		e.Message = "the endpoint is not the Mandrill API (check `endpoint`): " + http.StatusText(status)
	case status >= 200 && status < 300:
		e.Kind = providers.Temporary
		e.Message = "the answer is neither a send result nor an error object: " + snippet(body)
	default:
		e.Kind = providers.Temporary
		e.Message = strings.TrimSpace(http.StatusText(status) + ": " + snippet(body))
	}
	return providers.Receipt{}, e
}

// pick returns the result for the recipient to, else the first one.
func pick(results []result, to string) result {
	for _, r := range results {
		if strings.EqualFold(r.Email, to) {
			return r
		}
	}
	return results[0]
}

func classifyResult(r result, e *providers.Error) (providers.Receipt, error) {
	e.Code = 0 // the HTTP status says nothing once there is a result
	switch r.Status {
	case "sent", "queued", "scheduled":
		reason := r.QueuedReason
		if reason == "" {
			reason = r.RejectReason
		}
		if accountStopped(reason) {
			e.Kind, e.Enhanced = providers.Fatal, reason
			e.Message = "the account cannot send (" + reason + "); message " + providers.OneLine(r.ID) + " is held " + r.Status + " by Mandrill"
			return providers.Receipt{}, e
		}
		return providers.Receipt{MessageID: r.ID}, nil
	case "rejected", "invalid":
		reason := r.RejectReason
		if reason == "" {
			reason = r.Status
		}
		e.Enhanced = providers.OneLine(reason)
		e.Message = providers.OneLine(r.Email) + " " + r.Status + ": " + providers.OneLine(reason)
		switch reason {
		case "unsigned", "invalid-sender", "test-mode-limit":
			e.Kind = providers.Fatal
		default:
			e.Kind = providers.Permanent
			e.Bounce = r.Status == "invalid" || suppressReason(reason)
		}
		return providers.Receipt{}, e
	}
	e.Kind = providers.Unknown
	e.Message = "unexpected send status " + strconv.Quote(providers.OneLine(r.Status)) + " (the message may have been accepted)"
	return providers.Receipt{}, e
}

// accountStopped reports a queued_reason that means the account cannot send now.
func accountStopped(reason string) bool {
	switch reason {
	case "sending-paused", "sending-suspended", "account-suspended", "monthly-limit-reached", "free-trial-sends-exhausted":
		return true
	}
	return false
}

// suppressReason reports a reject_reason that means Mandrill will keep refusing the
// address: suppress it in herald too.
func suppressReason(reason string) bool {
	switch reason {
	case "hard-bounce", "invalid", "unsub", "spam", "custom":
		return true
	}
	return false
}

func classifyError(ae apiError, e *providers.Error) error {
	e.Enhanced = providers.OneLine(ae.Name)
	e.Message = providers.OneLine(ae.Message)
	if e.Message == "" {
		e.Message = "error without a message"
	}
	switch ae.Name {
	case "Invalid_Key":
		e.Kind = providers.Fatal
		e.Message = "the API key was refused: " + e.Message
	case "PaymentRequired", "Unknown_Subaccount":
		e.Kind = providers.Fatal
	case "ValidationError":
		e.Kind = providers.Permanent
	default: // GeneralError and names Mandrill may add
		e.Kind = providers.Temporary
	}
	return e
}

// parseError reads an error object {"status":"error","name":…}.
func parseError(body []byte) (apiError, bool) {
	var ae apiError
	if json.Unmarshal(body, &ae) != nil || ae.Status != "error" || ae.Name == "" {
		return apiError{}, false
	}
	return ae, true
}

// retryAfter reads Retry-After in seconds (0: not said).
func retryAfter(h http.Header) time.Duration {
	v, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After")))
	if err != nil || v <= 0 {
		return 0
	}
	return min(time.Duration(v)*time.Second, 24*time.Hour)
}

// snippet quotes the start of an unexpected body for an error message.
func snippet(body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return "empty body"
	}
	s := providers.OneLine(string(body))
	if r := []rune(s); len(r) > 120 {
		s = string(r[:120]) + "…"
	}
	return strconv.Quote(s)
}
