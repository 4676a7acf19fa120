package mandrill

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/heraldmail/herald/providers"
)

// event is the part of a Mandrill webhook event herald reads.
type event struct {
	Event string `json:"event"`
	Msg   struct {
		Email             string `json:"email"`
		BounceDescription string `json:"bounce_description"`
		// Reject describes why Mandrill rejected the message (a "reject" event): an
		// object with a reason when Mandrill gives one, else null.
		Reject       json.RawMessage `json:"reject"`
		RejectReason string          `json:"reject_reason"`
	} `json:"msg"`
}

// rejectReason returns the reason of a reject event, "" when it gives none.
func (e *event) rejectReason() string {
	if e.Msg.RejectReason != "" {
		return e.Msg.RejectReason
	}
	var r struct {
		Reason string `json:"reason"`
	}
	if len(e.Msg.Reject) > 0 && json.Unmarshal(e.Msg.Reject, &r) == nil {
		return r.Reason
	}
	return ""
}

// ParseEvents reads the mandrill_events field of a Mandrill webhook request (a JSON
// array of events, already authenticated) and returns the suppressions its events call
// for: hard_bounce ("hard bounce: <description>"), spam ("complaint"), unsub
// ("unsubscribed") and reject ("rejected"). A reject for a reason on the sender's side
// (unsigned, invalid-sender, test-mode-limit, rule, soft-bounce, or any reason but the
// recipient's hard-bounce, invalid, spam, unsub or custom) says nothing against the
// address and suppresses nothing. Other events are ignored. An event that cannot be
// used (not an object, an address that does not parse) is skipped and reported in
// skipped; the error is only for a field that is not a JSON array.
func ParseEvents(events []byte) (list []providers.Suppress, skipped []providers.Skipped, err error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(events, &raw); err != nil {
		return nil, nil, fmt.Errorf("mandrill_events is not a JSON array of events: %v", err)
	}
	for i, r := range raw {
		var e event
		if err := json.Unmarshal(r, &e); err != nil {
			skipped = append(skipped, providers.Skipped{Index: i, Err: errors.New("not an event object")})
			continue
		}
		var reason string
		switch e.Event {
		case "hard_bounce":
			reason = "hard bounce"
			if d := e.Msg.BounceDescription; d != "" {
				reason += ": " + providers.EventText(d)
			}
		case "spam":
			reason = "complaint"
		case "unsub":
			reason = "unsubscribed"
		case "reject":
			rr := strings.ToLower(strings.TrimSpace(e.rejectReason()))
			if rr != "" && !suppressReason(rr) {
				continue // the sender's problem, not the address's
			}
			reason = "rejected"
			if rr != "" {
				reason += ": " + providers.EventText(rr)
			}
		default:
			continue
		}
		addr, err := providers.EventAddress(e.Msg.Email)
		if err != nil {
			skipped = append(skipped, providers.Skipped{Index: i, Event: e.Event, Err: err})
			continue
		}
		list = append(list, providers.Suppress{Email: addr, Reason: reason})
	}
	return list, skipped, nil
}
