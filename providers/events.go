package providers

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
)

// Suppress is what one of a provider's events (delivered to herald's webhook: a bounce,
// a complaint, an unsubscribe) asks for: stop mailing Email, for Reason. Each provider
// package turns its own event format into these (SendGrid's, Mandrill's and SES's
// ParseEvents); the webhook server verifies requests and records the result.
type Suppress struct {
	Email  string
	Reason string
}

// Skipped is an event of a batch that could not be used (no or an unparsable address, a
// malformed entry). The rest of the batch is used: one bad event must not make the
// provider retry, and so never apply, every good one beside it.
type Skipped struct {
	// Index is the event's position in its batch, from 0.
	Index int
	// Event is the event's type as the provider named it ("bounce", "hard_bounce", …).
	Event string
	// Err says why it was skipped.
	Err error
}

func (s Skipped) Error() string {
	if s.Event == "" {
		return fmt.Sprintf("event %d: %v", s.Index, s.Err)
	}
	return fmt.Sprintf("event %d (%s): %v", s.Index, OneLine(s.Event), s.Err)
}

// EventAddress returns the bare address of an event's recipient ("a@b" or "Name <a@b>").
func EventAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("no email address")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("%q is not an email address", OneLine(s))
	}
	return a.Address, nil
}

// EventText keeps a provider's text (a bounce reason) to one short line: whitespace runs
// become one space, and the text is cut to 200 bytes (on a character boundary).
func EventText(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return s
}
