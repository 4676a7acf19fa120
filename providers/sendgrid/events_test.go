package sendgrid

import (
	"strings"
	"testing"
)

func TestParseEvents(t *testing.T) {
	body := `[
		{"email":"hard@example.com","event":"bounce","type":"bounce","reason":"550  unknown\nuser"},
		{"email":"blocked@example.com","event":"bounce","type":"blocked"},
		{"email":"not an email address","event":"dropped","reason":"Invalid"},
		{"email":"Ann <inv@example.com>","event":"dropped","reason":"Invalid"},
		{"email":"hdr@example.com","event":"dropped","reason":"Invalid SMTPAPI header"},
		{"email":"spam@example.com","event":"spamreport"},
		42,
		{"email":"","event":"unsubscribe"},
		{"email":"u@example.com","event":"group_unsubscribe"},
		{"email":"open@example.com","event":"open"}
	]`
	list, skipped, err := ParseEvents([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range list {
		got = append(got, s.Email+"="+s.Reason)
	}
	want := "hard@example.com=bounce: 550 unknown user|inv@example.com=dropped: Invalid|spam@example.com=complaint|u@example.com=unsubscribed"
	if strings.Join(got, "|") != want {
		t.Errorf("suppressions\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
	if len(skipped) != 3 || skipped[0].Index != 2 || skipped[1].Index != 6 || skipped[2].Index != 7 {
		t.Errorf("skipped %v, want events 2, 6 and 7", skipped)
	}
	if _, _, err := ParseEvents([]byte(`{"event":"bounce"}`)); err == nil {
		t.Error("a body that is not an array was accepted")
	}
}
