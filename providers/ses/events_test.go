package ses

import (
	"strings"
	"testing"
)

func TestParseNotification(t *testing.T) {
	for _, c := range []struct {
		name, msg string
		want      string
		skipped   int
	}{
		{"permanent bounce", `{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"a@example.com"},{"emailAddress":"not an address"},{"emailAddress":"b@example.com"}]}}`,
			"a@example.com=hard bounce: Permanent/General|b@example.com=hard bounce: Permanent/General", 1},
		{"transient bounce", `{"notificationType":"Bounce","bounce":{"bounceType":"Transient","bouncedRecipients":[{"emailAddress":"a@example.com"}]}}`, "", 0},
		{"abuse complaint (event publishing)", `{"eventType":"Complaint","complaint":{"complaintFeedbackType":"abuse","complainedRecipients":[{"emailAddress":"c@example.com"}]}}`, "c@example.com=complaint: abuse", 0},
		{"complaint without a type", `{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"c@example.com"}]}}`, "c@example.com=complaint", 0},
		{"not-spam complaint", `{"notificationType":"Complaint","complaint":{"complaintFeedbackType":"not-spam","complainedRecipients":[{"emailAddress":"c@example.com"}]}}`, "", 0},
		{"delivery", `{"notificationType":"Delivery"}`, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			list, skipped, err := ParseNotification([]byte(c.msg))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range list {
				got = append(got, s.Email+"="+s.Reason)
			}
			if strings.Join(got, "|") != c.want || len(skipped) != c.skipped {
				t.Errorf("got %q, %d skipped; want %q, %d", strings.Join(got, "|"), len(skipped), c.want, c.skipped)
			}
		})
	}
	if _, _, err := ParseNotification([]byte("hello")); err == nil {
		t.Error("a message that is not JSON was accepted")
	}
}
