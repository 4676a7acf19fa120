package ses

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/heraldmail/herald/providers"
)

// notification is the part of an SES notification (the Message of an SNS delivery, from
// a notification topic or an event destination) herald reads.
type notification struct {
	NotificationType string `json:"notificationType"`
	EventType        string `json:"eventType"`
	Bounce           struct {
		BounceType        string `json:"bounceType"`
		BounceSubType     string `json:"bounceSubType"`
		BouncedRecipients []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"bouncedRecipients"`
	} `json:"bounce"`
	Complaint struct {
		ComplaintFeedbackType string `json:"complaintFeedbackType"`
		ComplainedRecipients  []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
	} `json:"complaint"`
}

// ParseNotification reads an SES notification (already authenticated) and returns the
// suppressions it calls for: every recipient of a Permanent bounce ("hard bounce:
// Permanent/<subtype>") and every recipient of a complaint ("complaint: <feedback
// type>"), except a complaint whose feedback type is "not-spam" (the recipient's mail
// provider reports that the message is not spam: no reason to stop mailing them). Other
// notifications are ignored. A recipient whose address does not parse is skipped and
// reported in skipped (its Index is its place among the notification's recipients);
// the error is only for a message that is not an SES notification.
func ParseNotification(message []byte) (list []providers.Suppress, skipped []providers.Skipped, err error) {
	var n notification
	if err := json.Unmarshal(message, &n); err != nil {
		return nil, nil, fmt.Errorf("the SNS Message is not an SES notification: %v", err)
	}
	kind := n.NotificationType
	if kind == "" {
		kind = n.EventType
	}
	var addrs []string
	var reason string
	switch kind {
	case "Bounce":
		if n.Bounce.BounceType != "Permanent" {
			return nil, nil, nil
		}
		reason = "hard bounce: Permanent/" + providers.EventText(n.Bounce.BounceSubType)
		for _, r := range n.Bounce.BouncedRecipients {
			addrs = append(addrs, r.EmailAddress)
		}
	case "Complaint":
		t := strings.TrimSpace(n.Complaint.ComplaintFeedbackType)
		if strings.EqualFold(t, "not-spam") {
			return nil, nil, nil
		}
		reason = "complaint"
		if t != "" {
			reason += ": " + providers.EventText(t)
		}
		for _, r := range n.Complaint.ComplainedRecipients {
			addrs = append(addrs, r.EmailAddress)
		}
	default:
		return nil, nil, nil
	}
	for i, a := range addrs {
		addr, err := providers.EventAddress(a)
		if err != nil {
			skipped = append(skipped, providers.Skipped{Index: i, Event: kind, Err: err})
			continue
		}
		list = append(list, providers.Suppress{Email: addr, Reason: reason})
	}
	return list, skipped, nil
}
