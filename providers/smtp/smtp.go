// Package smtp is herald's SMTP relay provider. It keeps a pool of long-lived
// connections (one per concurrent sender), sends every message's raw bytes unchanged
// (DKIM-signed when configured) and classifies every failure from the reply codes:
//
//   - 4xx: Temporary (421 and per-connection limits make it redial and retry once);
//   - 5xx to RCPT or DATA: Permanent, a bounce when the enhanced code is 5.1.x or, without
//     one, the code is 550, 551 or 553;
//   - 5xx to the greeting, EHLO, STARTTLS, AUTH or MAIL FROM: Fatal, since no message
//     could get through (bad credentials, refused sender, no service);
//   - TLS and certificate failures: Fatal (configuration);
//   - a refused, reset or timed-out connection before the message went out: Temporary
//     with Connection set; lost after the final dot but before the answer: Unknown.
package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldmail/herald/providers"
	gomail "github.com/wneessen/go-mail/smtp"
)

// Kind is the provider kind named in a campaign file.
const Kind = "smtp"

// Registration returns the SMTP provider's registration for a providers.Registry.
func Registration() providers.Registration {
	return providers.Registration{Kind: Kind, Check: check, Open: open}
}

// decode reads the provider block, applies defaults, resolves paths and validates.
func decode(s providers.Spec) (Config, error) {
	var c Config
	if s.Decode != nil {
		if err := s.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("smtp: provider settings: %w", err)
		}
	}
	c = c.WithDefaults()
	if c.CAFile != "" {
		c.CAFile = s.Path(c.CAFile)
	}
	if c.DKIM != nil {
		c.DKIM = c.DKIM.resolve(s.Path)
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func check(s providers.Spec, secrets bool) error {
	c, err := decode(s)
	if err != nil {
		return err
	}
	if c.DKIM != nil {
		keys, _ := c.DKIM.load()
		warnWeak(keys, s.Warn)
	}
	if secrets && c.Username != "" {
		if _, err := providers.SecretFromEnv(s, Kind, "password_env", c.PasswordEnv); err != nil {
			return err
		}
	}
	return nil
}

func open(_ context.Context, s providers.Spec) (providers.Provider, error) {
	c, err := decode(s)
	if err != nil {
		return nil, err
	}
	if c.Username != "" {
		if c.Password, err = providers.SecretFromEnv(s, Kind, "password_env", c.PasswordEnv); err != nil {
			return nil, err
		}
	}
	return New(c, WithWarnf(s.Warn))
}

// Option adjusts a Provider built by New.
type Option func(*Provider)

// WithWarnf routes the provider's warnings (insecure settings) to warnf.
func WithWarnf(warnf func(format string, args ...any)) Option {
	return func(p *Provider) { p.warnf = warnf }
}

// WithLocalName sets the name herald introduces itself with in EHLO (default: the
// machine's host name).
func WithLocalName(name string) Option {
	return func(p *Provider) { p.localName = name }
}

// Provider sends through one SMTP relay. It is safe for concurrent use: each concurrent
// Send takes an idle connection from the pool, or dials one, and returns it afterwards.
type Provider struct {
	cfg       Config
	addr      string
	timeout   time.Duration
	tls       *tls.Config
	dkim      []dkimKey
	warnf     func(format string, args ...any)
	localName string
	// redact removes the password and its AUTH forms from everything Send returns.
	redact providers.Redactor

	mu     sync.Mutex
	idle   []*conn
	closed bool
}

// New builds a provider from cfg (defaults are applied here; paths are used as given).
// It reads ca_file and the DKIM key but does not connect. Insecure settings are
// reported once through WithWarnf.
func New(cfg Config, opts ...Option) (*Provider, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Username != "" && cfg.Password.Empty() {
		return nil, fmt.Errorf("smtp: username %s is set but the password (from %s) is empty", cfg.Username, cfg.PasswordEnv)
	}
	p := &Provider{cfg: cfg, addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		redact: providers.NewRedactor(cfg.Username, cfg.Password)}
	p.timeout, _ = cfg.timeout()
	var err error
	if p.tls, err = cfg.tlsConfig(); err != nil {
		return nil, err
	}
	if cfg.DKIM != nil {
		if p.dkim, err = cfg.DKIM.load(); err != nil {
			return nil, err
		}
	}
	for _, o := range opts {
		o(p)
	}
	if p.localName == "" {
		p.localName = "localhost"
		if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \r\n") {
			p.localName = h
		}
	}
	if cfg.InsecureSkipVerify && cfg.TLS != TLSNone {
		p.warn("smtp: WARNING: insecure_skip_verify is on: the certificate of %s is NOT verified; anyone on the path can read the mail and the password", p.addr)
	}
	if cfg.TLS == TLSNone && cfg.Username != "" && !isLoopback(cfg.Host) {
		p.warn("smtp: WARNING: tls is none: the password for %s is sent UNENCRYPTED (AUTH PLAIN) to %s", cfg.Username, p.addr)
	}
	return p, nil
}

func (p *Provider) warn(format string, args ...any) {
	if p.warnf != nil {
		p.warnf(format, args...)
	}
}

// String describes the provider without its settings. (fmt cannot call the redacting
// methods of a providers.Secret held in an unexported field, so the provider never lets
// fmt walk its fields.)
func (p *Provider) String() string { return "smtp provider for " + p.addr }

// GoString is String, for %#v.
func (p *Provider) GoString() string { return p.String() }

// Name returns "smtp".
func (p *Provider) Name() string { return Kind }

// Capabilities returns no limits of its own: a relay's limits are not known in advance.
func (p *Provider) Capabilities() providers.Capabilities { return providers.Capabilities{} }

// Close says QUIT on every idle connection and closes it. Connections in use by a Send
// are closed when it returns. Close is safe to call more than once; Send fails after it.
func (p *Provider) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Add(1)
		go func(c *conn) {
			defer wg.Done()
			c.quit(min(p.timeout, 2*time.Second))
		}(c)
	}
	wg.Wait()
	return nil
}

// take returns an idle connection (reused) or dials a new one; fresh forces a dial.
func (p *Provider) take(ctx context.Context, fresh bool) (*conn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, &providers.Error{Provider: Kind, Kind: providers.Fatal, Message: "provider is closed"}
	}
	if !fresh && len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	return p.dial(ctx)
}

// give puts c back into the pool (or closes it when the provider is closed).
func (p *Provider) give(c *conn) {
	p.mu.Lock()
	if !p.closed {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	c.quit(min(p.timeout, 2*time.Second))
}

// Send delivers msg to msg.To with msg.Sender() as the envelope sender. The receipt id
// is the queue id the relay answered with, else msg.MessageID. The relay's text in
// errors and receipts has the password and its AUTH PLAIN/LOGIN forms removed (some
// relays echo the exchange in their 535 answer).
func (p *Provider) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	r, err := p.send(ctx, msg)
	return p.redact.Receipt(r), p.redact.Error(err)
}

func (p *Provider) send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	if msg == nil || len(msg.Raw) == 0 {
		return providers.Receipt{}, &providers.Error{Provider: Kind, Kind: providers.Permanent, Message: "empty message"}
	}
	if msg.To == "" || strings.ContainsAny(msg.To+msg.Sender(), "\r\n<>") {
		return providers.Receipt{}, &providers.Error{Provider: Kind, Kind: providers.Permanent, Message: fmt.Sprintf("invalid envelope %q -> %q", msg.Sender(), msg.To)}
	}
	var sig []byte
	if len(p.dkim) > 0 {
		s, err := p.sign(msg.Raw)
		if err != nil {
			return providers.Receipt{}, err
		}
		sig = s
	}
	if err := ctx.Err(); err != nil {
		return providers.Receipt{}, canceled(err)
	}
	for attempt := 0; ; attempt++ {
		c, err := p.take(ctx, attempt > 0)
		if err != nil {
			return providers.Receipt{}, err
		}
		stop := context.AfterFunc(ctx, c.dc.cancel)
		id, f := c.send(ctx, p.timeout, msg, sig)
		// When the context ended during the send, the connection's deadline is in the
		// past and its state unknown: it is not reused.
		intact := stop()
		if f == nil {
			if intact {
				p.give(c)
			} else {
				c.close()
			}
			if id == "" {
				id = msg.MessageID
			}
			return providers.Receipt{MessageID: id}, nil
		}
		if f.keep && intact {
			p.give(c)
		} else {
			c.close()
		}
		if f.retry && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return providers.Receipt{}, f.err
	}
}

func canceled(err error) error {
	return &providers.Error{Provider: Kind, Kind: providers.Temporary, Message: "not sent: " + err.Error(), Err: err}
}

// dial connects, greets, secures and authenticates a new connection.
func (p *Provider) dial(ctx context.Context) (*conn, error) {
	d := net.Dialer{Timeout: p.timeout}
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, canceled(ctx.Err())
		}
		return nil, classify(stageDial, err)
	}
	dc := &deadlineConn{Conn: nc}
	stop := context.AfterFunc(ctx, dc.cancel)
	c, err := p.handshake(ctx, dc)
	intact := stop()
	if err != nil || !intact {
		dc.Close()
		if ctx.Err() != nil {
			return nil, canceled(ctx.Err())
		}
		return nil, err
	}
	return c, nil
}

func (p *Provider) handshake(ctx context.Context, dc *deadlineConn) (*conn, error) {
	dc.arm(p.timeout)
	var base net.Conn = dc
	if p.cfg.TLS == TLSImplicit {
		tc := tls.Client(dc, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, classify(stageTLS, err)
		}
		base = tc
	}
	cl, err := gomail.NewClient(base, p.cfg.Host)
	if err != nil {
		return nil, classify(stageGreeting, err)
	}
	c := &conn{dc: dc, cl: cl}
	dc.arm(p.timeout)
	if err := cl.Hello(p.localName); err != nil {
		return nil, classify(stageHello, err)
	}
	if p.cfg.TLS == TLSStartTLS {
		if ok, _ := cl.Extension("STARTTLS"); !ok {
			return nil, &providers.Error{Provider: Kind, Kind: providers.Fatal,
				Message: fmt.Sprintf("%s does not offer STARTTLS, which tls: starttls requires (set tls: tls for implicit TLS, or tls: none to send unencrypted)", p.addr)}
		}
		dc.arm(p.timeout)
		if err := cl.StartTLS(p.tls); err != nil {
			return nil, classify(stageTLS, err)
		}
	}
	if p.cfg.Username != "" {
		if err := p.auth(c); err != nil {
			return nil, err
		}
	}
	c.pipelining, _ = cl.Extension("PIPELINING")
	c.has8BitMIME, _ = cl.Extension("8BITMIME")
	c.hasSMTPUTF8, _ = cl.Extension("SMTPUTF8")
	return c, nil
}

// auth logs in with PLAIN (LOGIN only when the server offers no PLAIN). With tls: none
// PLAIN is allowed over the unencrypted connection on purpose (New warned about it).
func (p *Provider) auth(c *conn) error {
	ok, params := c.cl.Extension("AUTH")
	if !ok {
		return &providers.Error{Provider: Kind, Kind: providers.Fatal,
			Message: fmt.Sprintf("username is set but %s offers no AUTH", p.addr)}
	}
	mechs := strings.Fields(strings.ToUpper(params))
	has := func(m string) bool {
		for _, x := range mechs {
			if x == m {
				return true
			}
		}
		return false
	}
	unenc := p.cfg.TLS == TLSNone
	pass := p.cfg.Password.Reveal()
	var a gomail.Auth
	switch {
	case has("PLAIN"):
		a = gomail.PlainAuth("", p.cfg.Username, pass, p.cfg.Host, unenc)
	case has("LOGIN"):
		a = gomail.LoginAuth(p.cfg.Username, pass, p.cfg.Host, unenc)
	default:
		return &providers.Error{Provider: Kind, Kind: providers.Fatal,
			Message: fmt.Sprintf("%s offers AUTH %s; herald speaks PLAIN and LOGIN", p.addr, params)}
	}
	c.dc.arm(p.timeout)
	if err := c.cl.Auth(a); err != nil {
		return classify(stageAuth, err)
	}
	return nil
}

// conn is one pooled connection.
type conn struct {
	dc *deadlineConn
	cl *gomail.Client
	// uses counts the transactions begun on this connection, sent the messages accepted.
	uses, sent int
	// buf holds the dot-stuffed message being sent, reused between messages.
	buf []byte
	// pipelining is set when the server offers PIPELINING; has8BitMIME and hasSMTPUTF8
	// when it offers those extensions (declared per message by mailParams).
	pipelining               bool
	has8BitMIME, hasSMTPUTF8 bool
	// dirty is set when a transaction was begun and not finished: RSET before reuse.
	dirty bool
}

// failure is the outcome of a failed send on a connection.
type failure struct {
	err error
	// keep: the connection is still in a known state and may go back to the pool.
	keep bool
	// retry: nothing was handed over and a fresh connection may well succeed.
	retry bool
}

// send runs one mail transaction on c.
// The caller aborts it when ctx ends (by cancelling c.dc).
func (c *conn) send(ctx context.Context, timeout time.Duration, msg *providers.Message, sig []byte) (string, *failure) {
	reused := c.uses > 0
	c.uses++
	fail := func(st stage, err error) *failure {
		if ctx.Err() != nil && st != stageAnswer {
			return &failure{err: canceled(ctx.Err())}
		}
		pe := classify(st, err)
		f := &failure{err: pe}
		var reply bool
		if code, _, _ := replyOf(err); code != 0 {
			reply = true
		}
		switch {
		case pe.Code == 421:
			f.retry = st != stageAnswer || reply
		case reply:
			f.keep = true
			if st != stageAnswer {
				c.dirty = true
			}
			// A 4xx to MAIL on a connection that already carried mail is most often a
			// per-connection limit ("too many messages"): a fresh connection fixes it.
			f.retry = st == stageMail && pe.Code/100 == 4 && c.sent > 0
			if f.retry {
				f.keep = false
			}
		default:
			// The connection itself failed. Before the answer nothing was handed over,
			// and a reused connection may simply have gone stale.
			f.retry = reused && pe.Kind == providers.Temporary
		}
		return f
	}
	if c.dirty {
		c.dc.arm(timeout)
		if err := c.cl.Reset(); err != nil {
			f := fail(stageReset, err)
			f.keep, f.retry = false, ctx.Err() == nil
			return "", f
		}
		c.dirty = false
	}
	params, perr := c.mailParams(msg, sig)
	if perr != nil {
		return "", &failure{err: perr, keep: true}
	}
	c.dirty = true
	c.dc.arm(timeout)
	if st, err := c.begin(msg.Sender(), msg.To, params); err != nil {
		return "", fail(st, err)
	}
	c.dc.arm(timeout)
	c.dc.werr = nil
	c.buf = appendStuffed(appendStuffed(c.buf[:0], sig), msg.Raw)
	c.buf = append(c.buf, ".\r\n"...)
	if _, err := c.cl.Text.W.Write(c.buf); err != nil {
		return "", fail(stageBody, err)
	}
	if err := c.cl.Text.W.Flush(); err != nil {
		return "", fail(stageBody, err)
	}
	c.dirty = false
	_, answer, err := c.cl.Text.ReadResponse(250)
	if err != nil {
		if c.dc.werr != nil {
			return "", fail(stageBody, c.dc.werr)
		}
		return "", fail(stageAnswer, err)
	}
	c.sent++
	return queueID(answer), nil
}

// begin opens the transaction: MAIL, RCPT and DATA up to the 354 go-ahead. When the
// server offers PIPELINING (RFC 2920, nearly every relay does) the three commands go out
// in one write and their answers are read in order: one round trip instead of three.
// It returns the stage whose answer failed first.
func (c *conn) begin(from, to, params string) (stage, error) {
	// go-mail's client sends the path as given: the angle brackets are ours to add.
	from, to = "<"+from+">", "<"+to+">"
	if !c.pipelining {
		// MAIL FROM is written here rather than by go-mail's Client.Mail, which declares
		// BODY=8BITMIME and SMTPUTF8 on every message the server would take them for.
		if err := c.mail(from + params); err != nil {
			return stageMail, err
		}
		if err := c.cl.Rcpt(to); err != nil {
			return stageRcpt, err
		}
		return stageData, c.startData()
	}
	if strings.ContainsAny(from+to, "\r\n") {
		return stageMail, errors.New("smtp: a line break in an address")
	}
	t := c.cl.Text
	t.W.WriteString("MAIL FROM:" + from + params + "\r\nRCPT TO:" + to + "\r\nDATA\r\n")
	if err := t.W.Flush(); err != nil {
		return stageMail, err
	}
	_, _, mailErr := t.ReadResponse(250)
	if mailErr != nil && !isReply(mailErr) {
		return stageMail, mailErr
	}
	_, _, rcptErr := t.ReadResponse(25)
	if rcptErr != nil && !isReply(rcptErr) {
		return stageRcpt, rcptErr
	}
	_, _, dataErr := t.ReadResponse(354)
	if dataErr != nil && !isReply(dataErr) {
		return stageData, dataErr
	}
	if (mailErr != nil || rcptErr != nil) && dataErr == nil {
		// The server took DATA despite a refused sender or recipient: end the empty
		// message at once; it has no recipient to go to.
		t.W.WriteString(".\r\n")
		if err := t.W.Flush(); err != nil {
			return stageData, err
		}
		_, _, _ = t.ReadResponse(250)
	}
	switch {
	case mailErr != nil:
		return stageMail, mailErr
	case rcptErr != nil:
		return stageRcpt, rcptErr
	case dataErr != nil:
		return stageData, dataErr
	}
	return 0, nil
}

// isReply reports whether err is a server's answer (as opposed to a broken connection).
func isReply(err error) bool {
	var te *textproto.Error
	return errors.As(err, &te)
}

// mail sends MAIL FROM:path (with its parameters) and reads the 250.
func (c *conn) mail(pathAndParams string) error {
	if strings.ContainsAny(pathAndParams, "\r\n") {
		return errors.New("smtp: a line break in an address")
	}
	id, err := c.cl.Text.Cmd("MAIL FROM:%s", pathAndParams)
	if err != nil {
		return err
	}
	c.cl.Text.StartResponse(id)
	defer c.cl.Text.EndResponse(id)
	_, _, err = c.cl.Text.ReadResponse(250)
	return err
}

// mailParams returns the MAIL FROM parameters msg needs (RFC 6152, RFC 6531):
// BODY=8BITMIME only when a byte of the message is not 7-bit, SMTPUTF8 only when an
// envelope address or a header field is not ASCII. A message that needs SMTPUTF8 from a
// server that does not offer it cannot be sent: Permanent for a recipient's address,
// Fatal when the sender's address or the campaign's headers need it. A message with
// 8-bit bytes goes to a server without 8BITMIME as it is, undeclared, as before.
func (c *conn) mailParams(msg *providers.Message, sig []byte) (string, error) {
	header, body := splitHeader(msg.Raw)
	var params string
	if c.has8BitMIME && (!isASCII(body) || !isASCII(header) || !isASCII(sig)) {
		params += " BODY=8BITMIME"
	}
	from := msg.Sender()
	needUTF8 := !isASCII([]byte(from)) || !isASCII([]byte(msg.To)) || !isASCII(header)
	if !needUTF8 {
		return params, nil
	}
	if c.hasSMTPUTF8 {
		return params + " SMTPUTF8", nil
	}
	if isASCII([]byte(from)) && isASCII(header) {
		return "", &providers.Error{Provider: Kind, Kind: providers.Permanent,
			Message: fmt.Sprintf("the relay does not offer SMTPUTF8, which the address %q needs", msg.To)}
	}
	return "", &providers.Error{Provider: Kind, Kind: providers.Fatal,
		Message: "the relay does not offer SMTPUTF8, which the sender address or the message header needs"}
}

// splitHeader returns the header section of raw (up to the blank line) and the body.
func splitHeader(raw []byte) (header, body []byte) {
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return raw[:i+2], raw[i+4:]
	}
	if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		return raw[:i+1], raw[i+2:]
	}
	return raw, nil
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// startData sends DATA and reads the 354 go-ahead. The message itself is written by
// send in one piece: go-mail's DataCloser dot-stuffs through a textproto.DotWriter one
// byte at a time, which took a quarter of herald's CPU for a 10 KB message.
func (c *conn) startData() error {
	id, err := c.cl.Text.Cmd("DATA")
	if err != nil {
		return err
	}
	c.cl.Text.StartResponse(id)
	defer c.cl.Text.EndResponse(id)
	_, _, err = c.cl.Text.ReadResponse(354)
	return err
}

// appendStuffed appends src to dst as SMTP DATA content (RFC 5321 4.5.2): a line that
// begins with a dot gets a second one, a bare LF becomes CRLF, and the content ends
// with CRLF so that the terminating dot stands on a line of its own.
func appendStuffed(dst, src []byte) []byte {
	if len(src) == 0 {
		return dst
	}
	for len(src) > 0 {
		if src[0] == '.' {
			dst = append(dst, '.')
		}
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			dst = append(dst, src...)
			return append(dst, '\r', '\n')
		}
		if i > 0 && src[i-1] == '\r' {
			dst = append(dst, src[:i+1]...)
		} else {
			dst = append(dst, src[:i]...)
			dst = append(dst, '\r', '\n')
		}
		src = src[i+1:]
	}
	return dst
}

// quit says goodbye within d and closes the connection.
func (c *conn) quit(d time.Duration) {
	c.dc.arm(d)
	_ = c.cl.Quit()
	c.close()
}

func (c *conn) close() { _ = c.dc.Close() }

// deadlineConn arms a deadline before every step and aborts all I/O when the context
// of the current Send ends. It remembers write failures, to tell whether the whole
// message went out.
type deadlineConn struct {
	net.Conn
	mu      sync.Mutex
	stopped bool
	// werr is the first write error since it was last cleared.
	werr error
}

func (d *deadlineConn) Write(b []byte) (int, error) {
	n, err := d.Conn.Write(b)
	if err != nil && d.werr == nil {
		d.werr = err
	}
	return n, err
}

// arm sets the deadline for the next step, unless the connection was cancelled.
func (d *deadlineConn) arm(timeout time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stopped {
		_ = d.Conn.SetDeadline(time.Now().Add(timeout))
	}
}

// cancel makes every pending and future read or write fail at once.
func (d *deadlineConn) cancel() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	_ = d.Conn.SetDeadline(time.Unix(1, 0))
}

// queueID takes the relay's queue id from its answer to DATA ("2.0.0 Ok: queued as
// 4AbC12", "OK id=1pQr-0001"), or "" when it gave none.
func queueID(resp string) string {
	for _, marker := range []string{"queued as ", "id="} {
		if i := strings.Index(strings.ToLower(resp), marker); i >= 0 {
			f := strings.Fields(resp[i+len(marker):])
			if len(f) > 0 {
				return strings.Trim(f[0], "<>()[],;.")
			}
		}
	}
	return ""
}
