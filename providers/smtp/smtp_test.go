package smtp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/providertest"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

var errEOF = io.EOF

func tpErr(code int, msg string) error { return &textproto.Error{Code: code, Msg: msg} }

// warnings collects what a provider warns about.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) warnf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, fmt.Sprintf(format, args...))
}

func (w *warnings) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.msgs, "\n")
}

// newProvider builds a provider for srv with tls: none unless edit changes it.
func newProvider(t testing.TB, srv *smtptest.Server, edit func(*Config), opts ...Option) *Provider {
	t.Helper()
	cfg := Config{Host: srv.Host(), Port: srv.Port(), TLS: TLSNone, Timeout: "5s"}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(cfg, append([]Option{WithLocalName("client.test")}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func smtpErr(code int, enh gosmtp.EnhancedCode, text string) *gosmtp.SMTPError {
	return &gosmtp.SMTPError{Code: code, EnhancedCode: enh, Message: text}
}

var noEnh = gosmtp.NoEnhancedCode

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Harness{
		Start: func(t *testing.T, b providertest.Behaviour) (providers.Provider, func() []providertest.Received) {
			var o smtptest.Options
			pass := ""
			switch b {
			case providertest.TempFail:
				o.Rcpt = func(string, int) *gosmtp.SMTPError {
					return smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "try again later")
				}
			case providertest.PermFail:
				o.Rcpt = func(string, int) *gosmtp.SMTPError {
					return smtpErr(550, gosmtp.EnhancedCode{5, 7, 1}, "policy rejection")
				}
			case providertest.FatalFail:
				o.Username, o.Password = "herald", "right-password"
				pass = "wrong-password"
			case providertest.Hang:
				o.HangData = true
			}
			srv := smtptest.Start(t, o)
			p := newProvider(t, srv, func(c *Config) {
				if pass != "" {
					c.Username, c.PasswordEnv, c.Password = "herald", "SMTP_PASS", providers.NewSecret(pass)
				}
			})
			return p, func() []providertest.Received {
				var out []providertest.Received
				for _, m := range srv.Messages() {
					r, err := providertest.ParseRaw(m.To[0], m.Raw)
					if err != nil {
						t.Fatalf("parse received message: %v", err)
					}
					out = append(out, r)
				}
				return out
			}
		},
	})
}

func TestClassifiesReplies(t *testing.T) {
	for _, c := range []struct {
		name     string
		reply    *gosmtp.SMTPError
		kind     providers.Kind
		bounce   bool
		enhanced string
		sessions int
	}{
		{"451 temporary", smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "later"), providers.Temporary, false, "4.3.0", 1},
		{"452 temporary", smtpErr(452, gosmtp.EnhancedCode{4, 2, 2}, "mailbox full"), providers.Temporary, false, "4.2.2", 1},
		{"421 redials once then temporary", smtpErr(421, gosmtp.EnhancedCode{4, 7, 0}, "closing"), providers.Temporary, false, "4.7.0", 2},
		{"550 5.1.1 bounce", smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user"), providers.Permanent, true, "5.1.1", 1},
		{"550 without enhanced bounce", smtpErr(550, noEnh, "no such user"), providers.Permanent, true, "", 1},
		{"551 without enhanced bounce", smtpErr(551, noEnh, "user not local"), providers.Permanent, true, "", 1},
		{"553 without enhanced bounce", smtpErr(553, noEnh, "bad mailbox name"), providers.Permanent, true, "", 1},
		{"553 5.1.3 bounce", smtpErr(553, gosmtp.EnhancedCode{5, 1, 3}, "bad syntax"), providers.Permanent, true, "5.1.3", 1},
		{"552 5.2.2 not bounce", smtpErr(552, gosmtp.EnhancedCode{5, 2, 2}, "mailbox full"), providers.Permanent, false, "5.2.2", 1},
		{"554 5.7.1 not bounce", smtpErr(554, gosmtp.EnhancedCode{5, 7, 1}, "spam"), providers.Permanent, false, "5.7.1", 1},
		{"550 5.7.1 not bounce", smtpErr(550, gosmtp.EnhancedCode{5, 7, 1}, "relay denied"), providers.Permanent, false, "5.7.1", 1},
		{"554 without enhanced not bounce", smtpErr(554, noEnh, "rejected"), providers.Permanent, false, "", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.Options{Rcpt: func(string, int) *gosmtp.SMTPError { return c.reply }})
			p := newProvider(t, srv, nil)
			_, err := p.Send(context.Background(), providertest.Message("x@example.org", 1))
			pe := providers.AsError(err)
			if pe == nil {
				t.Fatalf("Send = %v, want a *providers.Error", err)
			}
			if pe.Kind != c.kind || pe.Bounce != c.bounce || pe.Code != c.reply.Code || pe.Enhanced != c.enhanced {
				t.Errorf("got kind=%s bounce=%v code=%d enhanced=%q, want %s %v %d %q (%v)",
					pe.Kind, pe.Bounce, pe.Code, pe.Enhanced, c.kind, c.bounce, c.reply.Code, c.enhanced, err)
			}
			if !strings.Contains(pe.Message, c.reply.Message) {
				t.Errorf("Message %q lacks the server's text %q", pe.Message, c.reply.Message)
			}
			if n := srv.Sessions(); n != c.sessions {
				t.Errorf("sessions = %d, want %d", n, c.sessions)
			}
		})
	}
}

func TestAuthFailureIsFatalAndHidesPassword(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Username: "u", Password: "good"})
	p := newProvider(t, srv, func(c *Config) {
		c.Username, c.PasswordEnv, c.Password = "u", "P", providers.NewSecret("s3cr3t-value")
	})
	_, err := p.Send(context.Background(), providertest.Message("x@example.org", 1))
	pe := providers.AsError(err)
	if pe == nil || pe.Kind != providers.Fatal || pe.Code != 535 {
		t.Fatalf("Send with a wrong password = %v, want fatal 535", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(fmt.Sprintf("%+v %#v", p, p.cfg), "s3cr3t") {
		t.Errorf("the password leaks: %v", err)
	}
}

// TestAuthEchoIsRedacted: a relay that answers a failed AUTH with the exchange itself
// (the base64 blob of AUTH PLAIN and the decoded credentials) must not bring the password
// or any of its encoded forms into the error.
func TestAuthEchoIsRedacted(t *testing.T) {
	const user, pass = "herald-user", "Tr0ub4dor&3-horse"
	srv := smtptest.Start(t, smtptest.Options{Username: user, Password: "the-right-one",
		AuthFailed: func(u, p string) *gosmtp.SMTPError {
			blob := base64.StdEncoding.EncodeToString([]byte("\x00" + u + "\x00" + p))
			return &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8},
				Message: "Authentication failed for " + blob + " (|" + u + "|" + p + ")"}
		}})
	p := newProvider(t, srv, func(c *Config) {
		c.Username, c.PasswordEnv, c.Password = user, "P", providers.NewSecret(pass)
	})
	_, err := p.Send(context.Background(), providertest.Message("x@example.org", 1))
	pe := providers.AsError(err)
	if pe == nil || pe.Kind != providers.Fatal || pe.Code != 535 || pe.Enhanced != "5.7.8" {
		t.Fatalf("Send = %v, want fatal 535 5.7.8", err)
	}
	forms := []string{pass,
		base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass)),
		base64.StdEncoding.EncodeToString([]byte(user + "\x00" + pass)),
		base64.StdEncoding.EncodeToString([]byte(pass)),
		base64.RawStdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass)),
	}
	var texts []string
	for e := error(err); e != nil; e = errors.Unwrap(e) {
		texts = append(texts, e.Error(), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e))
	}
	for _, s := range texts {
		for _, f := range forms {
			if strings.Contains(s, f) {
				t.Errorf("error text %q holds %q", s, f)
			}
		}
	}
	if !strings.Contains(err.Error(), "Authentication failed for [redacted]") {
		t.Errorf("error = %q, want the relay's text with the secret replaced", err)
	}
}

func TestClassifyTable(t *testing.T) {
	for _, c := range []struct {
		name   string
		st     stage
		err    error
		kind   providers.Kind
		conn   bool
		bounce bool
	}{
		{"535 on AUTH", stageAuth, tpErr(535, "5.7.8 bad credentials"), providers.Fatal, false, false},
		{"534 on AUTH", stageAuth, tpErr(534, "5.7.9 weak mechanism"), providers.Fatal, false, false},
		{"530 on AUTH", stageAuth, tpErr(530, "5.7.0 auth required"), providers.Fatal, false, false},
		{"454 on AUTH", stageAuth, tpErr(454, "4.7.0 try later"), providers.Temporary, false, false},
		{"530 on MAIL", stageMail, tpErr(530, "5.7.0 Authentication required"), providers.Fatal, false, false},
		{"553 on MAIL (sender refused)", stageMail, tpErr(553, "5.7.1 sender not owned"), providers.Fatal, false, false},
		{"451 on MAIL", stageMail, tpErr(451, "4.3.0 later"), providers.Temporary, false, false},
		{"554 greeting", stageGreeting, tpErr(554, "no SMTP service here"), providers.Fatal, false, false},
		{"421 greeting", stageGreeting, tpErr(421, "4.3.2 busy"), providers.Temporary, true, false},
		{"454 STARTTLS", stageTLS, tpErr(454, "4.7.0 TLS not available"), providers.Temporary, false, false},
		{"certificate", stageTLS, x509.UnknownAuthorityError{}, providers.Fatal, false, false},
		{"TLS protocol error", stageTLS, errors.New("tls: first record does not look like a TLS handshake"), providers.Fatal, false, false},
		{"EOF during STARTTLS", stageTLS, errEOF, providers.Temporary, true, false},
		{"refused", stageDial, &net.OpError{Op: "dial", Err: errors.New("connection refused")}, providers.Temporary, true, false},
		{"no such host", stageDial, &net.DNSError{Err: "no such host", Name: "nx.invalid", IsNotFound: true}, providers.Fatal, false, false},
		{"EOF on RCPT", stageRcpt, fmt.Errorf("read: %w", errEOF), providers.Temporary, true, false},
		{"write error in body", stageBody, &net.OpError{Op: "write", Err: errors.New("broken pipe")}, providers.Temporary, true, false},
		{"EOF after the dot", stageAnswer, errEOF, providers.Unknown, true, false},
		{"timeout after the dot", stageAnswer, &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, providers.Unknown, true, false},
		{"5.1.1 after the dot", stageAnswer, tpErr(550, "5.1.1 unknown"), providers.Permanent, false, true},
		{"4xx after the dot", stageAnswer, tpErr(452, "4.3.1 queue full"), providers.Temporary, false, false},
		{"enhanced class mismatch ignored", stageRcpt, tpErr(550, "4.1.1 odd"), providers.Permanent, false, true},
		{"5.1.x multi-line", stageRcpt, tpErr(550, "5.1.1 no such\n5.1.1 user"), providers.Permanent, false, true},
		{"5xx to RSET redials", stageReset, tpErr(502, "5.5.1 unknown"), providers.Temporary, true, false},
		{"unexpected 250", stageData, tpErr(250, "ok"), providers.Temporary, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			pe := classify(c.st, c.err)
			if pe.Kind != c.kind || pe.Connection != c.conn || pe.Bounce != c.bounce {
				t.Errorf("classify(%s, %v) = kind %s conn %v bounce %v, want %s %v %v", c.st, c.err, pe.Kind, pe.Connection, pe.Bounce, c.kind, c.conn, c.bounce)
			}
			if !strings.HasPrefix(pe.Error(), "smtp: ") {
				t.Errorf("error %q does not start with the provider", pe)
			}
			if !errors.Is(pe, c.err) {
				t.Errorf("the cause is not kept")
			}
		})
	}
}

func TestReplyOf(t *testing.T) {
	for _, c := range []struct {
		msg, enh, text string
		code           int
	}{
		{"5.1.1 <a@b>: no such user", "5.1.1", "<a@b>: no such user", 550},
		{"no such user", "", "no such user", 550},
		{"4.1.1 odd class", "", "4.1.1 odd class", 550},
		{"5.1 short", "", "5.1 short", 550},
		{"5.x.1 junk", "", "5.x.1 junk", 550},
		{"2.0.0 Ok: queued as 12", "2.0.0", "Ok: queued as 12", 250},
		{"", "", "", 451},
	} {
		code, enh, text := replyOf(tpErr(c.code, c.msg))
		if code != c.code || enh != c.enh || text != c.text {
			t.Errorf("replyOf(%d %q) = %d %q %q, want %d %q %q", c.code, c.msg, code, enh, text, c.code, c.enh, c.text)
		}
	}
	if code, _, _ := replyOf(errors.New("plain")); code != 0 {
		t.Errorf("replyOf(non-reply) code = %d", code)
	}
}

func TestReusesConnections(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	p := newProvider(t, srv, nil)
	for i := 0; i < 20; i++ {
		if _, err := p.Send(context.Background(), providertest.Message(fmt.Sprintf("s%d@example.org", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Sessions(); n != 1 {
		t.Errorf("20 sequential messages used %d sessions, want 1", n)
	}
	srv.Reset()
	p2 := newProvider(t, srv, nil)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := p2.Send(context.Background(), providertest.Message(fmt.Sprintf("c%d.%d@example.org", w, i), i)); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	if n := srv.Sessions(); n > 4 || n < 1 {
		t.Errorf("4 goroutines used %d sessions, want 1..4", n)
	}
	if n := srv.Accepted(); n != 80 {
		t.Errorf("accepted %d, want 80", n)
	}
}

func TestReceiptIsQueueID(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	p := newProvider(t, srv, nil)
	r, err := p.Send(context.Background(), providertest.Message("a@example.org", 1))
	if err != nil {
		t.Fatal(err)
	}
	if r.MessageID != "Q000001" {
		t.Errorf("receipt = %q, want the queue id Q000001", r.MessageID)
	}
	srv2 := smtptest.Start(t, smtptest.Options{Data: func(smtptest.Message) *gosmtp.SMTPError {
		return smtpErr(250, gosmtp.EnhancedCode{2, 0, 0}, "Thanks")
	}})
	p2 := newProvider(t, srv2, nil)
	msg := providertest.Message("a@example.org", 2)
	if r, err = p2.Send(context.Background(), msg); err != nil || r.MessageID != msg.MessageID {
		t.Errorf("receipt without queue id = %q, %v; want %q", r.MessageID, err, msg.MessageID)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestEnvelopeAndRawUnchanged(t *testing.T) {
	var transcript syncBuffer
	srv := smtptest.Start(t, smtptest.Options{Transcript: &transcript})
	p := newProvider(t, srv, nil)
	msg := providertest.Message("to@example.org", 1)
	msg.ReturnPath = "bounces@example.com"
	msg.Raw = append(msg.Raw, []byte(".leading dot line\r\n")...)
	if _, err := p.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	got := srv.Messages()[0]
	if got.From != "bounces@example.com" || len(got.To) != 1 || got.To[0] != "to@example.org" {
		t.Errorf("envelope = %q -> %q", got.From, got.To)
	}
	if string(got.Raw) != string(msg.Raw) {
		t.Errorf("raw message changed in transit:\n%q\nwant\n%q", got.Raw, msg.Raw)
	}
	for _, cmd := range []string{"EHLO client.test", "MAIL FROM:<bounces@example.com>", "RCPT TO:<to@example.org>"} {
		if !strings.Contains(transcript.String(), cmd) {
			t.Errorf("transcript lacks %q:\n%s", cmd, transcript.String())
		}
	}
}

func TestRsetAfterRcptFailureKeepsConnection(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(rcpt string, _ int) *gosmtp.SMTPError {
		if strings.HasPrefix(rcpt, "bad") {
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user")
		}
		return nil
	}})
	p := newProvider(t, srv, nil)
	for i, to := range []string{"good1@x.org", "bad@x.org", "good2@x.org", "bad2@x.org", "good3@x.org"} {
		_, err := p.Send(context.Background(), providertest.Message(to, i))
		if strings.HasPrefix(to, "bad") != (err != nil) {
			t.Errorf("Send(%s) = %v", to, err)
		}
	}
	if n := srv.Sessions(); n != 1 {
		t.Errorf("sessions = %d, want 1 (RSET keeps the connection usable)", n)
	}
	msgs := srv.Messages()
	if len(msgs) != 3 || msgs[1].From != "news@example.com" || msgs[2].To[0] != "good3@x.org" {
		t.Errorf("received %+v", msgs)
	}
}

func TestPerConnectionLimitRedials(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Mail: func(_ string, n int) *gosmtp.SMTPError {
		if n > 3 {
			return smtpErr(452, gosmtp.EnhancedCode{4, 5, 3}, "too many messages")
		}
		return nil
	}})
	p := newProvider(t, srv, nil)
	for i := 0; i < 10; i++ {
		if _, err := p.Send(context.Background(), providertest.Message(fmt.Sprintf("l%d@x.org", i), i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if n := srv.Sessions(); n != 4 {
		t.Errorf("sessions = %d, want 4 (3 messages each)", n)
	}
}

func TestServerRestartRedials(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	p := newProvider(t, srv, nil)
	if _, err := p.Send(context.Background(), providertest.Message("a@x.org", 1)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(context.Background(), providertest.Message("b@x.org", 2)); err != nil {
		t.Fatalf("Send after a restart: %v", err)
	}
	if n, a := srv.Sessions(), srv.Accepted(); n != 2 || a != 2 {
		t.Errorf("sessions=%d accepted=%d, want 2 and 2", n, a)
	}
}

func TestServerDownIsTemporaryConnection(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	p := newProvider(t, srv, nil)
	if _, err := p.Send(context.Background(), providertest.Message("a@x.org", 1)); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for i := 0; i < 2; i++ { // with a pooled (now dead) connection, then with none
		_, err := p.Send(context.Background(), providertest.Message("b@x.org", 2))
		pe := providers.AsError(err)
		if pe == nil || pe.Kind != providers.Temporary || !pe.Connection {
			t.Fatalf("Send %d to a stopped server = %v, want temporary connection error", i, err)
		}
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(context.Background(), providertest.Message("c@x.org", 3)); err != nil {
		t.Fatalf("Send after recovery: %v", err)
	}
}

func TestDropAfterDataIsUnknown(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{DropAfterData: true})
	p := newProvider(t, srv, nil)
	_, err := p.Send(context.Background(), providertest.Message("a@x.org", 1))
	if k := providers.KindOf(err); err == nil || k != providers.Unknown {
		t.Fatalf("Send = %v (%s), want unknown", err, k)
	}
	if n := srv.Sessions(); n != 1 {
		t.Errorf("sessions = %d: an unknown outcome must not be retried", n)
	}
}

func TestCancelAbortsHungGreeting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // accept and never say a word
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	addr := l.Addr().(*net.TCPAddr)
	p, err := New(Config{Host: "127.0.0.1", Port: addr.Port, TLS: TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = p.Send(ctx, providertest.Message("a@x.org", 1))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || providers.KindOf(err) != providers.Temporary {
		t.Errorf("Send = %v, want a temporary error wrapping the context's", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Send took %s after its context ended", d)
	}
}

func TestTimeoutOnSilentServer(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{DataDelay: 2 * time.Second})
	p := newProvider(t, srv, func(c *Config) { c.Timeout = "200ms" })
	_, err := p.Send(context.Background(), providertest.Message("a@x.org", 1))
	if k := providers.KindOf(err); err == nil || k != providers.Unknown {
		t.Errorf("Send to a server silent after DATA = %v (%s), want unknown", err, k)
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStartTLS(t *testing.T) {
	serverTLS, certPEM := smtptest.SelfSigned(t)
	caFile := writeFile(t, "ca.pem", certPEM)
	srv := smtptest.Start(t, smtptest.Options{TLS: serverTLS, Username: "u", Password: "pw"})
	auth := func(c *Config) { c.Username, c.PasswordEnv, c.Password = "u", "P", providers.NewSecret("pw") }

	t.Run("trusted via ca_file", func(t *testing.T) {
		p := newProvider(t, srv, func(c *Config) { auth(c); c.TLS = TLSStartTLS; c.CAFile = caFile })
		if _, err := p.Send(context.Background(), providertest.Message("a@x.org", 1)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("untrusted certificate is fatal", func(t *testing.T) {
		p := newProvider(t, srv, func(c *Config) { auth(c); c.TLS = TLSStartTLS })
		_, err := p.Send(context.Background(), providertest.Message("a@x.org", 1))
		if k := providers.KindOf(err); err == nil || k != providers.Fatal {
			t.Fatalf("Send = %v (%s), want fatal", err, k)
		}
	})
	t.Run("insecure_skip_verify works and warns", func(t *testing.T) {
		var w warnings
		p := newProvider(t, srv, func(c *Config) { auth(c); c.TLS = TLSStartTLS; c.InsecureSkipVerify = true }, WithWarnf(w.warnf))
		if _, err := p.Send(context.Background(), providertest.Message("a@x.org", 1)); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(w.all(), "insecure_skip_verify") {
			t.Errorf("no warning about insecure_skip_verify: %q", w.all())
		}
	})
	t.Run("not offered is fatal", func(t *testing.T) {
		plain := smtptest.Start(t, smtptest.Options{})
		p := newProvider(t, plain, func(c *Config) { c.TLS = TLSStartTLS; c.CAFile = caFile })
		_, err := p.Send(context.Background(), providertest.Message("a@x.org", 1))
		if k := providers.KindOf(err); err == nil || k != providers.Fatal || !strings.Contains(err.Error(), "STARTTLS") {
			t.Fatalf("Send = %v (%s), want fatal naming STARTTLS", err, k)
		}
		if plain.Accepted() != 0 {
			t.Errorf("a message went out unencrypted")
		}
	})
	t.Run("implicit TLS", func(t *testing.T) {
		tlsSrv := smtptest.Start(t, smtptest.Options{TLS: serverTLS, ImplicitTLS: true})
		p := newProvider(t, tlsSrv, func(c *Config) { c.TLS = TLSImplicit; c.CAFile = caFile })
		if _, err := p.Send(context.Background(), providertest.Message("a@x.org", 1)); err != nil {
			t.Fatal(err)
		}
		if tlsSrv.Accepted() != 1 {
			t.Errorf("accepted %d", tlsSrv.Accepted())
		}
	})
}

func TestAuthPlainWithoutTLSOnLoopback(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Username: "u", Password: "pw"})
	var w warnings
	p := newProvider(t, srv, func(c *Config) {
		c.Username, c.PasswordEnv, c.Password = "u", "P", providers.NewSecret("pw")
	}, WithWarnf(w.warnf))
	for i := 0; i < 3; i++ {
		if _, err := p.Send(context.Background(), providertest.Message("a@x.org", i)); err != nil {
			t.Fatal(err)
		}
	}
	if srv.Auths() != 1 {
		t.Errorf("auths = %d, want 1 (one connection, authenticated once)", srv.Auths())
	}
	if w.all() != "" {
		t.Errorf("warned on loopback: %q", w.all())
	}
	// The same settings for a remote host warn loudly, once, without the password.
	var w2 warnings
	if _, err := New(Config{Host: "mail.example.com", TLS: TLSNone, Username: "u", PasswordEnv: "P", Password: providers.NewSecret("pw-secret")}, WithWarnf(w2.warnf)); err != nil {
		t.Fatal(err)
	}
	if got := w2.all(); !strings.Contains(got, "UNENCRYPTED") || strings.Contains(got, "pw-secret") || strings.Count(got, "\n") != 0 {
		t.Errorf("warning = %q", got)
	}
}

func TestDKIMSignatureVerifies(t *testing.T) {
	for _, keyType := range []string{"rsa", "ed25519"} {
		t.Run(keyType, func(t *testing.T) {
			var der []byte
			var pub []byte
			var err error
			if keyType == "rsa" {
				k, _ := rsa.GenerateKey(rand.Reader, 2048)
				der = x509.MarshalPKCS1PrivateKey(k)
				pub, err = x509.MarshalPKIXPublicKey(&k.PublicKey)
			} else {
				pk, k, _ := ed25519.GenerateKey(rand.Reader)
				der, err = x509.MarshalPKCS8PrivateKey(k)
				pub = pk
			}
			if err != nil {
				t.Fatal(err)
			}
			blockType := map[string]string{"rsa": "RSA PRIVATE KEY", "ed25519": "PRIVATE KEY"}[keyType]
			keyFile := writeFile(t, "dkim.pem", pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}))
			srv := smtptest.Start(t, smtptest.Options{})
			p := newProvider(t, srv, func(c *Config) {
				c.DKIM = &DKIMConfig{Domain: "example.com", Selector: "herald", PrivateKeyFile: keyFile}
			})
			if _, err := p.Send(context.Background(), providertest.Message("a@x.org", 1)); err != nil {
				t.Fatal(err)
			}
			raw := srv.Messages()[0].Raw
			if !strings.HasPrefix(string(raw), "DKIM-Signature: ") {
				t.Fatalf("message does not start with the signature: %.80q", raw)
			}
			record := fmt.Sprintf("v=DKIM1; k=%s; p=%s", keyType, base64.StdEncoding.EncodeToString(pub))
			vs, err := dkim.VerifyWithOptions(strings.NewReader(string(raw)), &dkim.VerifyOptions{
				LookupTXT: func(domain string) ([]string, error) {
					if domain != "herald._domainkey.example.com" {
						return nil, fmt.Errorf("unexpected lookup %s", domain)
					}
					return []string{record}, nil
				},
			})
			if err != nil || len(vs) != 1 {
				t.Fatalf("verify: %v (%d signatures)", err, len(vs))
			}
			if vs[0].Err != nil || vs[0].Domain != "example.com" {
				t.Errorf("signature does not verify: %v", vs[0].Err)
			}
			for _, h := range []string{"from", "subject", "list-unsubscribe", "list-unsubscribe-post"} {
				found := false
				for _, k := range vs[0].HeaderKeys {
					found = found || strings.EqualFold(k, h)
				}
				if !found {
					t.Errorf("signature does not cover %s (h=%v)", h, vs[0].HeaderKeys)
				}
			}
			// A changed body no longer verifies: the check can fail.
			tampered := strings.Replace(string(raw), "Hello Jane 1", "Hello Mallory", 1)
			vs, _ = dkim.VerifyWithOptions(strings.NewReader(tampered), &dkim.VerifyOptions{
				LookupTXT: func(string) ([]string, error) { return []string{record}, nil },
			})
			if len(vs) != 1 || vs[0].Err == nil {
				t.Errorf("a tampered message verified")
			}
		})
	}
}

func decodeSpec(base, block string, env map[string]string, warn func(string, ...any)) providers.Spec {
	s := providertest.Spec(Kind, block, env)
	s.BaseDir, s.Warnf = base, warn
	return s
}

func TestCheck(t *testing.T) {
	base := t.TempDir()
	_, certPEM := smtptest.SelfSigned(t)
	if err := os.WriteFile(filepath.Join(base, "ca.pem"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	k, _ := rsa.GenerateKey(rand.Reader, 1024)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(filepath.Join(base, "dkim.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "junk.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SMTP_PASS": "pw"}
	for _, c := range []struct {
		name, block string
		secrets     bool
		wantErr     string
	}{
		{"minimal", "host: mail.example.com\n", true, ""},
		{"full", "host: mail.example.com\nport: 465\ntls: tls\nusername: u\npassword_env: SMTP_PASS\nca_file: ca.pem\ntimeout: 10s\ndkim: {domain: example.com, selector: s1, private_key_file: dkim.pem}\n", true, ""},
		{"no host", "port: 25\n", false, "host is required"},
		{"port zero ok (default)", "host: h\nport: 0\n", false, ""},
		{"port too big", "host: h\nport: 70000\n", false, "port 70000"},
		{"negative port", "host: h\nport: -1\n", false, "port -1"},
		{"bad tls", "host: h\ntls: ssl\n", false, `tls "ssl"`},
		{"bad timeout", "host: h\ntimeout: 30\n", false, "timeout"},
		{"missing ca_file", "host: h\nca_file: nope.pem\n", false, "ca_file"},
		{"ca_file without certificate", "host: h\nca_file: junk.pem\n", false, "no PEM certificate"},
		{"dkim key unreadable", "host: h\ndkim: {domain: d, selector: s, private_key_file: nope.pem}\n", false, "private_key_file"},
		{"dkim key junk", "host: h\ndkim: {domain: d, selector: s, private_key_file: junk.pem}\n", false, "no PEM block"},
		{"dkim incomplete", "host: h\ndkim: {domain: d}\n", false, "dkim needs"},
		{"username without password_env", "host: h\nusername: u\n", false, "password_env"},
		{"env var missing", "host: h\nusername: u\npassword_env: OTHER\n", true, "OTHER"},
		{"env var not checked without secrets", "host: h\nusername: u\npassword_env: OTHER\n", false, ""},
		{"unknown key", "host: h\npassword: hunter2\n", false, "password"},
		{"password pasted into password_env", "host: h\nusername: u\npassword_env: hunter2!x\n", false, "does not look like an environment variable name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Registration().Check(decodeSpec(base, c.block, env, nil), c.secrets)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.HasPrefix(err.Error(), "smtp: ") {
				t.Fatalf("Check = %v, want an smtp: error mentioning %q", err, c.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Check echoes the secret: %v", err)
			}
		})
	}
}

func TestOpenReadsPasswordFromEnv(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Username: "u", Password: "from-env"})
	block := fmt.Sprintf("host: %s\nport: %d\ntls: none\nusername: u\npassword_env: SMTP_PASS\n", srv.Host(), srv.Port())
	prov, err := Registration().Open(context.Background(), decodeSpec(t.TempDir(), block, map[string]string{"SMTP_PASS": "from-env"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer prov.Close()
	if prov.Name() != "smtp" || prov.Capabilities() != (providers.Capabilities{}) {
		t.Errorf("name %q capabilities %+v", prov.Name(), prov.Capabilities())
	}
	if _, err := prov.Send(context.Background(), providertest.Message("a@x.org", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := Registration().Open(context.Background(), decodeSpec(t.TempDir(), block, nil, nil)); err == nil || !strings.Contains(err.Error(), "SMTP_PASS") {
		t.Errorf("Open without the variable = %v", err)
	}
}

func TestSendAfterClose(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	p := newProvider(t, srv, nil)
	p.Close()
	if _, err := p.Send(context.Background(), providertest.Message("a@x.org", 1)); providers.KindOf(err) != providers.Fatal {
		t.Errorf("Send after Close = %v, want fatal", err)
	}
}

func BenchmarkSend(b *testing.B) {
	srv := smtptest.Start(b, smtptest.Options{Discard: true})
	p := newProvider(b, srv, nil)
	msg := providertest.Message("bench@example.org", 1)
	body := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?-=+*/\r\n", 10240/76+1)
	msg.Raw = append(msg.Raw[:len(msg.Raw):len(msg.Raw)], body[:10240-len(msg.Raw)]...)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg.Raw)))
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan struct{}, 64)
	b.ResetTimer()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if _, err := p.Send(context.Background(), msg); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if n := srv.Sessions(); n > 8 {
		b.Errorf("%d sessions for 8 senders", n)
	}
}

func TestAppendStuffed(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{".a\r\n..b\r\nc.\r\n", "..a\r\n...b\r\nc.\r\n"},
		{"a\nb", "a\r\nb\r\n"},
		{"a\r\n.", "a\r\n..\r\n"},
		{".\r\n", "..\r\n"},
	} {
		if got := string(appendStuffed(nil, []byte(c.in))); got != c.want {
			t.Errorf("appendStuffed(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestDotLinesArriveIntact(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	p, err := New(Config{Host: srv.Host(), Port: srv.Port(), TLS: TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	msg := providertest.Message("dots@example.org", 1)
	raw := string(msg.Raw)
	raw = strings.Replace(raw, "Hello Jane 1\r\n", "Hello Jane 1\r\n.\r\n..two\r\n.one\r\n", 1)
	msg.Raw = []byte(raw)
	if _, err := p.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	got := srv.Messages()
	if len(got) != 1 || string(got[0].Raw) != raw {
		t.Fatalf("message changed on the way:\n%q\nwant\n%q", got[0].Raw, raw)
	}
}
