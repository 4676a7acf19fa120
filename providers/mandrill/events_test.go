package mandrill

import (
	"strings"
	"testing"
)

func TestParseEvents(t *testing.T) {
	body := `[
		{"event":"hard_bounce","msg":{"email":"hard@example.com","bounce_description":"bad_mailbox"}},
		{"event":"soft_bounce","msg":{"email":"soft@example.com"}},
		{"event":"spam","msg":{"email":"not an address"}},
		{"event":"unsub","msg":{"email":"u@example.com"}},
		{"event":"reject","msg":{"email":"listed@example.com","reject":null}},
		{"event":"reject","msg":{"email":"unsigned@example.com","reject":{"reason":"unsigned"}}},
		{"event":"reject","msg":{"email":"testmode@example.com","reject_reason":"test-mode-limit"}},
		{"event":"reject","msg":{"email":"custom@example.com","reject":{"reason":"custom"}}},
		"junk"
	]`
	list, skipped, err := ParseEvents([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range list {
		got = append(got, s.Email+"="+s.Reason)
	}
	want := "hard@example.com=hard bounce: bad_mailbox|u@example.com=unsubscribed|listed@example.com=rejected|custom@example.com=rejected: custom"
	if strings.Join(got, "|") != want {
		t.Errorf("suppressions\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
	if len(skipped) != 2 || skipped[0].Index != 2 || skipped[1].Index != 8 {
		t.Errorf("skipped %v, want events 2 and 8", skipped)
	}
}
