// Package smtptest runs an in-process SMTP server for herald's tests: it records what it
// receives, answers each recipient as a test tells it to, can be slow, hang, drop the
// connection after the data, require AUTH PLAIN, offer STARTTLS or speak implicit TLS,
// and can be stopped and restarted on the same address to simulate an outage.
//
//	srv := smtptest.Start(t, smtptest.Options{
//		Rcpt: func(rcpt string, attempt int) *smtp.SMTPError {
//			if attempt == 1 {
//				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
//			}
//			return nil
//		},
//	})
//	host, port := srv.Host(), srv.Port()
//
// Every Server is closed by the test's Cleanup.
package smtptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options says how a Server behaves. The zero value accepts every message.
type Options struct {
	// Rcpt answers RCPT TO for rcpt; attempt counts the RCPTs for that address
	// (case-insensitively) over the server's whole life, starting at 1. Nil or a nil
	// answer accepts.
	Rcpt func(rcpt string, attempt int) *smtp.SMTPError
	// Mail answers MAIL FROM; n counts the MAIL commands of the session, starting at 1
	// (so a per-connection message limit is `n > 10`). Nil or a nil answer accepts.
	Mail func(from string, n int) *smtp.SMTPError
	// Data answers the end of DATA for a received message. Nil or a nil answer accepts
	// with "250 2.0.0 OK: queued as Q<number>".
	Data func(m Message) *smtp.SMTPError
	// DataDelay is how long the server waits before answering the end of DATA.
	DataDelay time.Duration
	// HangData makes DATA wait, unanswered, until the server is stopped or closed.
	HangData bool
	// DropAfterData makes the server read the whole message and then close the
	// connection without answering.
	DropAfterData bool
	// Username and Password, when Username is set, make the server offer AUTH PLAIN
	// (also without TLS), answer wrong credentials with 535 5.7.8 and refuse MAIL
	// before authentication with 530 5.7.0.
	Username, Password string
	// AuthFailed, when set, is the answer to wrong credentials instead of 535 5.7.8
	// (relays that echo the exchange in it can be imitated); it receives what the
	// client sent.
	AuthFailed func(user, pass string) *smtp.SMTPError
	// TLS, when set, makes the server offer STARTTLS with this configuration.
	TLS *tls.Config
	// ImplicitTLS makes the server speak TLS from the first byte (needs TLS).
	ImplicitTLS bool
	// Transcript, when set, receives the whole dialogue of every session (both ways).
	Transcript io.Writer
	// Discard counts accepted messages without keeping them (for benchmarks):
	// Messages stays empty.
	Discard bool
}

// Message is one message the server accepted.
type Message struct {
	// From is the envelope sender, To the envelope recipients.
	From string
	To   []string
	// Raw is the message data as received (dot-unstuffed, CRLF line endings).
	Raw []byte
	// Session is the number of the session (connection) it arrived on, from 1.
	Session int
}

// Server is a running in-process SMTP server. Its methods are safe for concurrent use.
type Server struct {
	opts Options
	addr string

	mu       sync.Mutex
	srv      *smtp.Server
	stop     chan struct{} // closed when the current generation stops
	sessions int
	auths    int
	attempts map[string]int
	msgs     []Message
	accepted int
	closed   bool
}

// Start starts a server on 127.0.0.1 (a free port) and closes it when tb ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := Listen("127.0.0.1:0", opts)
	if err != nil {
		tb.Fatalf("smtptest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Listen starts a server on addr ("127.0.0.1:0" picks a free port). Close stops it.
func Listen(addr string, opts Options) (*Server, error) {
	if opts.ImplicitTLS && opts.TLS == nil {
		return nil, errors.New("smtptest: ImplicitTLS needs TLS")
	}
	s := &Server{opts: opts, attempts: map[string]int{}}
	if err := s.listen(addr); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) listen(addr string) error {
	var l net.Listener
	var err error
	if s.opts.ImplicitTLS {
		l, err = tls.Listen("tcp", addr, s.opts.TLS)
	} else {
		l, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("smtptest: listen on %s: %w", addr, err)
	}
	srv := smtp.NewServer(backend{s})
	srv.Domain = "smtptest.local"
	srv.AllowInsecureAuth = true
	srv.ErrorLog = quietLog{}
	srv.Debug = s.opts.Transcript
	if !s.opts.ImplicitTLS {
		srv.TLSConfig = s.opts.TLS
	}
	s.mu.Lock()
	s.addr = l.Addr().String()
	s.srv = srv
	s.stop = make(chan struct{})
	s.mu.Unlock()
	go srv.Serve(l) //nolint:errcheck // ends with ErrServerClosed on Stop
	return nil
}

// Addr is the server's "host:port".
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Host is the server's IP address.
func (s *Server) Host() string {
	h, _, _ := net.SplitHostPort(s.Addr())
	return h
}

// Port is the server's port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// Stop closes the listener and every open connection (an outage); Restart brings the
// server back on the same address. Counts and messages are kept.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, stop := s.srv, s.stop
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	close(stop)
	srv.Close()
}

// Restart stops the server (when running) and listens again on the same address.
func (s *Server) Restart() error {
	s.Stop()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("smtptest: restart after Close")
	}
	var err error
	for i := 0; i < 50; i++ { // the port may take a moment to be free again
		if err = s.listen(s.Addr()); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// Close stops the server for good. It is safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.Stop()
}

// Sessions is how many connections reached the server (each counts once, whatever it sent).
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// Auths is how many successful AUTH exchanges the server saw.
func (s *Server) Auths() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths
}

// Accepted is how many messages the server accepted.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Messages returns a copy of the accepted messages, in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Reset forgets the accepted messages and the counts.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs, s.accepted, s.sessions, s.auths, s.attempts = nil, 0, 0, 0, map[string]int{}
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := b.s
	s.mu.Lock()
	s.sessions++
	n, stop := s.sessions, s.stop
	s.mu.Unlock()
	sess := &session{s: s, conn: c, n: n, stop: stop}
	if s.opts.Username != "" {
		return &authSession{sess}, nil
	}
	return sess, nil
}

type session struct {
	s     *Server
	conn  *smtp.Conn
	n     int
	stop  chan struct{}
	authd bool
	mails int
	from  string
	to    []string
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.Username != "" && !ss.authd {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	ss.mails++
	if f := ss.s.opts.Mail; f != nil {
		if e := f(from, ss.mails); e != nil {
			return e
		}
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s := ss.s
	s.mu.Lock()
	key := strings.ToLower(to)
	s.attempts[key]++
	attempt := s.attempts[key]
	s.mu.Unlock()
	if f := s.opts.Rcpt; f != nil {
		if e := f(to, attempt); e != nil {
			return e
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	o := ss.s.opts
	if o.DropAfterData {
		ss.conn.Conn().Close()
		return errors.New("connection dropped")
	}
	// A stop during DATA is an outage: the connection goes away unanswered, as when a
	// relay dies (an answer would be a permanent 554 from go-smtp).
	if o.HangData {
		<-ss.stop
		ss.conn.Conn().Close()
		return errors.New("server stopped")
	}
	if o.DataDelay > 0 {
		select {
		case <-time.After(o.DataDelay):
		case <-ss.stop:
			ss.conn.Conn().Close()
			return errors.New("server stopped")
		}
	}
	m := Message{From: ss.from, To: append([]string(nil), ss.to...), Raw: raw, Session: ss.n}
	if o.Data != nil {
		if e := o.Data(m); e != nil {
			return e
		}
	}
	ss.s.mu.Lock()
	ss.s.accepted++
	id := ss.s.accepted
	if !o.Discard {
		ss.s.msgs = append(ss.s.msgs, m)
	}
	ss.s.mu.Unlock()
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: fmt.Sprintf("OK: queued as Q%06d", id)}
}

func (ss *session) Reset() {
	ss.from, ss.to = "", nil
}

func (ss *session) Logout() error { return nil }

type authSession struct{ *session }

func (as *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (as *authSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "mechanism not supported"}
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		o := as.s.opts
		if user != o.Username || pass != o.Password {
			if o.AuthFailed != nil {
				if e := o.AuthFailed(user, pass); e != nil {
					return e
				}
			}
			return smtp.ErrAuthFailed
		}
		as.authd = true
		as.s.mu.Lock()
		as.s.auths++
		as.s.mu.Unlock()
		return nil
	}), nil
}

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}

// SelfSigned makes a self-signed certificate for 127.0.0.1, ::1 and localhost. It
// returns a server configuration using it and the certificate in PEM (what a client's
// ca_file should hold to trust it).
func SelfSigned(tb testing.TB) (*tls.Config, []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("smtptest: key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("smtptest: certificate: %v", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, certPEM
}
