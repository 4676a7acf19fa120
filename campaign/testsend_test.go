package campaign

import (
	"bytes"
	"fmt"
	"mime"
	"net/mail"
	"os"
	"strings"
	"testing"

	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

func TestTestSendLeavesTheJournalAlone(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, 3, smtpBlock(srv), "")

	// A first real run sends one recipient, so there is a journal to compare.
	if _, err := f.send(1, SendOptions{}); err != nil {
		t.Fatal(err)
	}
	before := f.counts()

	res, err := TestSend(t.Context(), f.load(), TestSendOptions{
		To: []string{"alice@acme.example", "bob@acme.example"}, Row: 2, Store: f.store(),
	}, testEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("results %+v", res)
	}
	got := received(srv)
	if got["alice@acme.example"] != 1 || got["bob@acme.example"] != 1 {
		t.Fatalf("test messages arrived as %v", got)
	}
	for _, m := range srv.Messages() {
		if m.To[0] != "alice@acme.example" {
			continue
		}
		msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
		if err != nil {
			t.Fatal(err)
		}
		subj, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if subj != "[TEST] Hi Name2" {
			t.Errorf("subject %q, want the row's with [TEST]", subj)
		}
		if to, _ := msg.Header.AddressList("To"); to[0].Address != "alice@acme.example" {
			t.Errorf("To %v", to)
		}
		lu := msg.Header.Get("List-Unsubscribe")
		if strings.Contains(lu, "r0002") {
			t.Errorf("the test message carries the row's unsubscribe token: %s", lu)
		}
	}
	if after := f.counts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("journal changed: %v → %v", before, after)
	}

	// The real send afterwards reaches everyone else.
	sum, err := f.send(-1, SendOptions{})
	if err != nil || sum.Sent != 2 || sum.Skipped.AlreadyDone != 1 {
		t.Fatalf("real send: %v %s", err, sum.JSON())
	}
	got = received(srv)
	for _, a := range []string{"r0001@example.org", "r0002@example.org", "r0003@example.org"} {
		if got[a] != 1 {
			t.Errorf("%s received %d", a, got[a])
		}
	}
}

func TestTestSendNoPrefixNoStore(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, 2, smtpBlock(srv), "")
	if _, err := TestSend(t.Context(), f.load(), TestSendOptions{To: []string{"a@acme.example"}, NoPrefix: true, Store: f.store()}, testEnv(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.store()); !os.IsNotExist(err) {
		t.Errorf("a test send created the store: %v", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || !bytes.Contains(msgs[0].Raw, []byte("Subject: Hi Name1\r\n")) {
		t.Errorf("messages: %d", len(msgs))
	}
	if _, err := TestSend(t.Context(), f.load(), TestSendOptions{To: []string{"a@acme.example"}, Row: 9}, testEnv(nil)); err == nil {
		t.Error("row 9 of 2 accepted")
	}
	if _, err := ParseTestAddresses("a@x.example, nope"); err == nil {
		t.Error("a bad --test address accepted")
	}
}
