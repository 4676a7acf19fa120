package bounces

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// POP3 is a Remote read over POP3 (RFC 1939; STLS from RFC 2595). No POP3 client
// library is served to this build, and herald needs five commands of it (USER, PASS,
// STAT, RETR, QUIT), so this is a small client over net/textproto, which does the line
// reading and dot-unstuffing (BENCHMARKS.md). It never sends DELE.
type POP3 struct{ *Remote }

// pop3Conn is one POP3 session.
type pop3Conn struct {
	nc      net.Conn
	tp      *textproto.Conn
	timeout time.Duration
}

// cmd sends a command and reads its one-line answer: the text after "+OK", or an
// error with the text after "-ERR".
func (c *pop3Conn) cmd(format string, args ...any) (string, error) {
	_ = c.nc.SetDeadline(time.Now().Add(c.timeout))
	if err := c.tp.PrintfLine(format, args...); err != nil {
		return "", err
	}
	return c.answer()
}

func (c *pop3Conn) answer() (string, error) {
	line, err := c.tp.ReadLine()
	if err != nil {
		return "", err
	}
	if rest, ok := strings.CutPrefix(line, "+OK"); ok {
		return strings.TrimSpace(rest), nil
	}
	if rest, ok := strings.CutPrefix(line, "-ERR"); ok {
		return "", &pop3Error{strings.TrimSpace(rest)}
	}
	return "", fmt.Errorf("unexpected answer %q", line)
}

type pop3Error struct{ text string }

func (e *pop3Error) Error() string { return "server said: " + e.text }

// Each logs in and retrieves every message (RETR), leaving them on the server.
func (m POP3) Each(ctx context.Context, fn func([]byte) (bool, error)) error {
	addr := m.addr(map[string]string{"pop3": "110", "pop3s": "995"})
	d := net.Dialer{Timeout: m.timeout()}
	var nc net.Conn
	var err error
	if m.URL.Scheme == "pop3s" {
		nc, err = (&tls.Dialer{NetDialer: &d, Config: m.tlsConfig()}).DialContext(ctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("pop3 %s: %w", m, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c := &pop3Conn{nc: nc, tp: textproto.NewConn(nc), timeout: m.timeout()}
	fail := func(step string, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("pop3 %s: %s: %w", m, step, err)
	}
	_ = nc.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.answer(); err != nil {
		return fail("greeting", err)
	}
	if m.URL.Scheme == "pop3" && !isLoopback(m.URL.Hostname()) {
		if _, err := c.cmd("STLS"); err != nil {
			return fail("STLS (required for pop3:// off this machine; use pop3s:// for implicit TLS)", err)
		}
		tc := tls.Client(nc, m.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail("TLS", err)
		}
		c.nc, c.tp = tc, textproto.NewConn(tc)
	}
	if _, err := c.cmd("USER %s", m.URL.User.Username()); err != nil {
		return fail("login", err)
	}
	if _, err := c.cmd("PASS %s", m.Password); err != nil {
		return fail("login", err)
	}
	stat, err := c.cmd("STAT")
	if err != nil {
		return fail("STAT", err)
	}
	f := strings.Fields(stat)
	n := 0
	if len(f) > 0 {
		n, err = strconv.Atoi(f[0])
	}
	if len(f) == 0 || err != nil {
		return fail("STAT", fmt.Errorf("unexpected answer %q", stat))
	}
	for i := 1; i <= n; i++ {
		if _, err := c.cmd("RETR %d", i); err != nil {
			var pe *pop3Error
			if errors.As(err, &pe) {
				continue // deleted by another session meanwhile
			}
			return fail("RETR", err)
		}
		dr := c.tp.DotReader()
		raw, err := io.ReadAll(io.LimitReader(dr, maxMessage))
		if err == nil {
			_, err = io.Copy(io.Discard, dr) // the rest of an oversized message
		}
		if err != nil {
			return fail("RETR", err)
		}
		if _, err := fn(raw); err != nil {
			return err
		}
	}
	_, _ = c.cmd("QUIT")
	return nil
}
