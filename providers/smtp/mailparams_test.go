package smtp

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/heraldmail/herald/providers"
)

// scripted is a minimal SMTP server that offers exactly the extensions it is given and
// records every MAIL FROM line as sent.
type scripted struct {
	ln    net.Listener
	ext   []string
	mu    sync.Mutex
	mails []string
	wg    sync.WaitGroup
}

func startScripted(t *testing.T, ext ...string) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{ln: ln, ext: ext}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

func (s *scripted) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(line string) { w.WriteString(line + "\r\n") }
	say("220 scripted ESMTP")
	w.Flush()
	inData := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if inData {
			if line == "." {
				inData = false
				say("250 2.0.0 Ok: queued as Q1")
				w.Flush()
			}
			continue
		}
		verb := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			lines := append([]string{"scripted"}, s.ext...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				say("250" + sep + l)
			}
		case strings.HasPrefix(verb, "MAIL FROM:"):
			s.mu.Lock()
			s.mails = append(s.mails, line)
			s.mu.Unlock()
			say("250 2.1.0 Ok")
		case strings.HasPrefix(verb, "RCPT TO:"):
			say("250 2.1.5 Ok")
		case verb == "DATA":
			say("354 go ahead")
			inData = true
		case verb == "RSET", verb == "NOOP":
			say("250 Ok")
		case verb == "QUIT":
			say("221 bye")
			w.Flush()
			return
		default:
			say("502 5.5.2 unknown")
		}
		// Under PIPELINING the answers to MAIL, RCPT and DATA are flushed together
		// when the client waits; flushing each is allowed too.
		w.Flush()
	}
}

func (s *scripted) lastMail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mails) == 0 {
		return ""
	}
	return s.mails[len(s.mails)-1]
}

// TestMailFromDeclaresOnlyWhatTheMessageNeeds: BODY=8BITMIME only for 8-bit bytes,
// SMTPUTF8 only for a non-ASCII envelope or header, over both the pipelined and the
// one-command-at-a-time paths. Before, every message declared both.
func TestMailFromDeclaresOnlyWhatTheMessageNeeds(t *testing.T) {
	ascii := "From: a@acme.example\r\nTo: b@example.com\r\nSubject: hi\r\nContent-Transfer-Encoding: 7bit\r\n\r\nplain text\r\n"
	eightBit := "From: a@acme.example\r\nTo: b@example.com\r\nSubject: hi\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n"
	utf8Header := "From: a@acme.example\r\nTo: jörg@example.com\r\nSubject: hi\r\n\r\nplain\r\n"
	cases := []struct {
		name, raw, to string
		want          string // the parameters after the path
	}{
		{"7-bit message", ascii, "b@example.com", ""},
		{"8-bit body", eightBit, "b@example.com", " BODY=8BITMIME"},
		{"UTF-8 recipient", ascii, "jörg@example.com", " SMTPUTF8"},
		{"UTF-8 header and body", utf8Header, "b@example.com", " BODY=8BITMIME SMTPUTF8"},
	}
	for _, pipelining := range []bool{true, false} {
		ext := []string{"8BITMIME", "SMTPUTF8"}
		if pipelining {
			ext = append(ext, "PIPELINING")
		}
		srv := startScripted(t, ext...)
		addr := srv.ln.Addr().(*net.TCPAddr)
		p, err := New(Config{Host: "127.0.0.1", Port: addr.Port, TLS: TLSNone, Timeout: "5s"}, WithLocalName("client.test"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		for _, tc := range cases {
			msg := &providers.Message{FromAddress: "a@acme.example", To: tc.to, Raw: []byte(tc.raw), MessageID: "<m@acme.example>"}
			if _, err := p.Send(context.Background(), msg); err != nil {
				t.Fatalf("pipelining=%v %s: %v", pipelining, tc.name, err)
			}
			want := "MAIL FROM:<a@acme.example>" + tc.want
			if got := srv.lastMail(); got != want {
				t.Errorf("pipelining=%v %s: sent %q, want %q", pipelining, tc.name, got, want)
			}
		}
	}
}

// TestMailFromWithoutSMTPUTF8: a recipient address that needs SMTPUTF8 from a relay
// without it is that recipient's permanent failure; an 8-bit body to a relay without
// 8BITMIME goes undeclared.
func TestMailFromWithoutSMTPUTF8(t *testing.T) {
	srv := startScripted(t, "PIPELINING")
	addr := srv.ln.Addr().(*net.TCPAddr)
	p, err := New(Config{Host: "127.0.0.1", Port: addr.Port, TLS: TLSNone, Timeout: "5s"}, WithLocalName("client.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	raw := "From: a@acme.example\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nGrüße\r\n"
	_, err = p.Send(context.Background(), &providers.Message{FromAddress: "a@acme.example", To: "jörg@example.com", Raw: []byte(raw)})
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Kind != providers.Permanent || !strings.Contains(pe.Message, "SMTPUTF8") {
		t.Fatalf("UTF-8 recipient without SMTPUTF8: got %v, want a permanent error naming SMTPUTF8", err)
	}
	if _, err := p.Send(context.Background(), &providers.Message{FromAddress: "a@acme.example", To: "b@example.com", Raw: []byte(raw)}); err != nil {
		t.Fatalf("8-bit body without 8BITMIME: %v", err)
	}
	if got := srv.lastMail(); got != "MAIL FROM:<a@acme.example>" {
		t.Errorf("sent %q, want no parameters", got)
	}
}
