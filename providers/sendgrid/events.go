package sendgrid

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/heraldmail/herald/providers"
)

// event is the part of a SendGrid event webhook event herald reads.
type event struct {
	Email  string `json:"email"`
	Event  string `json:"event"`
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// ParseEvents reads the body of a SendGrid event webhook request (a JSON array of
// events, already authenticated) and returns the suppressions its events call for:
//   - bounce of type bounce (a blocked bounce is the receiving server's policy, not the
//     address): "bounce";
//   - dropped for "Bounced Address" or "Invalid": "dropped";
//   - spamreport: "complaint"; unsubscribe and group_unsubscribe: "unsubscribed".
//
// SendGrid's reason, when there is one, follows the kind ("bounce: 550 …"). Other events
// are ignored. An event that cannot be used (not an object, an address that does not
// parse, as in SendGrid's own sample batches) is skipped and reported in skipped; the
// error is only for a body that is not a JSON array.
func ParseEvents(body []byte) (list []providers.Suppress, skipped []providers.Skipped, err error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, nil, fmt.Errorf("body is not a JSON array of events: %v", err)
	}
	for i, r := range raw {
		var e event
		if err := json.Unmarshal(r, &e); err != nil {
			skipped = append(skipped, providers.Skipped{Index: i, Err: errors.New("not an event object")})
			continue
		}
		var reason string
		switch e.Event {
		case "bounce":
			if e.Type == "bounce" {
				reason = "bounce"
			}
		case "dropped":
			if r := strings.ToLower(strings.TrimSpace(e.Reason)); r == "bounced address" || r == "invalid" {
				reason = "dropped"
			}
		case "spamreport":
			reason = "complaint"
		case "unsubscribe", "group_unsubscribe":
			reason = "unsubscribed"
		}
		if reason == "" {
			continue
		}
		addr, err := providers.EventAddress(e.Email)
		if err != nil {
			skipped = append(skipped, providers.Skipped{Index: i, Event: e.Event, Err: err})
			continue
		}
		if e.Reason != "" {
			reason += ": " + providers.EventText(e.Reason)
		}
		list = append(list, providers.Suppress{Email: addr, Reason: reason})
	}
	return list, skipped, nil
}
