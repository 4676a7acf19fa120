package bounces

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Mailbox is a source of messages. By default it only reads: nothing is deleted, moved
// or flagged (a second run reads the same mail and, the journal being idempotent, changes
// nothing). IMAP and Maildir mailboxes can move what was processed to another folder.
type Mailbox interface {
	// Each calls fn with the raw bytes of every message, in mailbox order; fn reports
	// whether it processed the message (a mailbox set to move moves those); an error
	// from fn stops it.
	Each(ctx context.Context, fn func(raw []byte) (processed bool, err error)) error
	// String names the mailbox for messages (never with a password).
	String() string
}

// maxMessage bounds the size of one message read from a mailbox.
const maxMessage = 32 << 20

// Maildir reads the messages of a Maildir folder (new/ and cur/).
type Maildir struct {
	Dir string
	// MoveTo, when set, is a Maildir++ subfolder (DIR/.MoveTo) that processed messages
	// are moved into.
	MoveTo string
}

func (m Maildir) String() string { return "maildir " + m.Dir }

// Each reads new/ then cur/, each in name order (delivery time first).
func (m Maildir) Each(ctx context.Context, fn func([]byte) (bool, error)) error {
	found := false
	var dest string
	if m.MoveTo != "" {
		dest = filepath.Join(m.Dir, "."+m.MoveTo)
		for _, sub := range []string{"new", "cur", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dest, sub), 0o700); err != nil {
				return fmt.Errorf("maildir %s: %w", m.Dir, err)
			}
		}
	}
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(m.Dir, sub)
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		found = true
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			if err := ctx.Err(); err != nil {
				return err
			}
			raw, err := readLimited(filepath.Join(dir, n))
			if errors.Is(err, os.ErrNotExist) {
				continue // moved to cur/ or deleted meanwhile
			}
			if err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
			done, err := fn(raw)
			if err != nil {
				return err
			}
			if done && dest != "" {
				if err := os.Rename(filepath.Join(dir, n), filepath.Join(dest, "cur", n)); err != nil {
					return fmt.Errorf("%s: move: %w", m, err)
				}
			}
		}
	}
	if !found {
		return fmt.Errorf("%s: no new/ or cur/ folder: not a Maildir", m)
	}
	return nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxMessage))
}

// Mbox reads the messages of an mbox file (mboxo or mboxrd: a `>From ` line loses one `>`).
type Mbox string

func (m Mbox) String() string { return "mbox " + string(m) }

// Each splits the file at its "From " separator lines.
func (m Mbox) Each(ctx context.Context, fn func([]byte) (bool, error)) error {
	f, err := os.Open(string(m))
	if err != nil {
		return fmt.Errorf("mbox: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var msg bytes.Buffer
	started, prevBlank := false, true
	flush := func() error {
		if !started {
			return nil
		}
		raw := bytes.TrimSuffix(msg.Bytes(), []byte("\n"))
		msg.Reset()
		if len(bytes.TrimSpace(raw)) == 0 {
			return nil
		}
		_, err := fn(append([]byte(nil), raw...))
		return err
	}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if prevBlank && bytes.HasPrefix(line, []byte("From ")) {
				if err := ctx.Err(); err != nil {
					return err
				}
				if ferr := flush(); ferr != nil {
					return ferr
				}
				started = true
				prevBlank = false
				continue
			}
			if !started {
				return fmt.Errorf("mbox %s: does not start with a \"From \" line: not an mbox file", m)
			}
			prevBlank = len(bytes.TrimRight(line, "\r\n")) == 0
			if q := bytes.TrimLeft(line, ">"); len(q) < len(line) && bytes.HasPrefix(q, []byte("From ")) {
				line = line[1:]
			}
			if msg.Len()+len(line) <= maxMessage {
				msg.Write(line)
			}
		}
		if errors.Is(err, io.EOF) {
			return flush()
		}
		if err != nil {
			return fmt.Errorf("mbox %s: %w", m, err)
		}
	}
}

// Remote is an IMAP or POP3 mailbox given as a URL:
//
//	imaps://user@host[:993]/Folder   imap://user@host[:143]/Folder (STARTTLS; plain only on loopback)
//	pop3s://user@host[:995]          pop3://user@host[:110]         (STLS;     plain only on loopback)
//
// The password comes from the URL's userinfo or from Password (an environment variable);
// it is never printed.
type Remote struct {
	URL      *url.URL
	Password string
	// RootCAs, when set, are the roots trusted for the server's certificate.
	RootCAs *x509.CertPool
	// Timeout bounds connecting and each exchange (default 30s).
	Timeout time.Duration
}

// ParseRemote checks a mailbox URL of the given scheme family ("imap" or "pop3").
func ParseRemote(raw, family, password string) (*Remote, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--%s: %q is not a URL such as %ss://user@mail.example.com", family, redactURL(raw), family)
	}
	if u.Scheme != family && u.Scheme != family+"s" {
		return nil, fmt.Errorf("--%s: scheme %q: use %s:// or %ss://", family, u.Scheme, family, family)
	}
	if u.User == nil || u.User.Username() == "" {
		return nil, fmt.Errorf("--%s: %s names no user (%s://USER@host)", family, redacted(u), u.Scheme)
	}
	if p, ok := u.User.Password(); ok && password == "" {
		password = p
	}
	if password == "" {
		return nil, fmt.Errorf("--%s: no password for %s: set HERALD_BOUNCES_PASSWORD", family, redacted(u))
	}
	return &Remote{URL: u, Password: password}, nil
}

// redacted prints u without its password.
func redacted(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.String()
}

func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return redacted(u)
	}
	if i := strings.LastIndex(raw, "@"); i >= 0 {
		return "…" + raw[i:]
	}
	return raw
}

func (r *Remote) String() string { return redacted(r.URL) }

func (r *Remote) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return 30 * time.Second
}

// addr returns host:port with the scheme's default port.
func (r *Remote) addr(defaults map[string]string) string {
	if r.URL.Port() != "" {
		return r.URL.Host
	}
	return net.JoinHostPort(r.URL.Hostname(), defaults[r.URL.Scheme])
}

func (r *Remote) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: r.URL.Hostname(), RootCAs: r.RootCAs, MinVersion: tls.VersionTLS12}
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IMAP is a Remote read over IMAP.
type IMAP struct {
	*Remote
	// MoveTo, when set, is the folder processed messages are moved to (created if
	// needed; MOVE, or COPY + \Deleted + EXPUNGE where the server has no MOVE).
	MoveTo string
}

// Each logs in, selects the folder (INBOX when the URL has none; read-only unless
// moving), and fetches every message with BODY.PEEK[] (nothing is marked \Seen).
func (m IMAP) Each(ctx context.Context, fn func([]byte) (bool, error)) error {
	opts := &imapclient.Options{TLSConfig: m.tlsConfig(), Dialer: &net.Dialer{Timeout: m.timeout()}}
	addr := m.addr(map[string]string{"imap": "143", "imaps": "993"})
	var c *imapclient.Client
	var err error
	switch {
	case m.URL.Scheme == "imaps":
		c, err = imapclient.DialTLS(addr, opts)
	case isLoopback(m.URL.Hostname()):
		c, err = imapclient.DialInsecure(addr, opts)
	default:
		c, err = imapclient.DialStartTLS(addr, opts)
	}
	if err != nil {
		return fmt.Errorf("imap %s: %w", m, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.Login(m.URL.User.Username(), m.Password).Wait(); err != nil {
		return fmt.Errorf("imap %s: login: %w", m, err)
	}
	folder := strings.Trim(m.URL.Path, "/")
	if folder == "" {
		folder = "INBOX"
	}
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: m.MoveTo == ""}).Wait()
	if err != nil {
		return fmt.Errorf("imap %s: select %s: %w", m, folder, err)
	}
	if sel.NumMessages > 0 {
		var set imap.SeqSet
		set.AddRange(1, sel.NumMessages)
		var done imap.UIDSet
		cmd := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		for {
			msg := cmd.Next()
			if msg == nil {
				break
			}
			var uid imap.UID
			for {
				item := msg.Next()
				if item == nil {
					break
				}
				if u, ok := item.(imapclient.FetchItemDataUID); ok {
					uid = u.UID
					continue
				}
				body, ok := item.(imapclient.FetchItemDataBodySection)
				if !ok || body.Literal == nil {
					continue
				}
				raw, err := io.ReadAll(io.LimitReader(body.Literal, maxMessage))
				if err != nil {
					cmd.Close()
					return fmt.Errorf("imap %s: fetch: %w", m, err)
				}
				processed, err := fn(raw)
				if err != nil {
					cmd.Close()
					return err
				}
				if processed && uid != 0 {
					done.AddNum(uid)
				}
			}
		}
		if err := cmd.Close(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("imap %s: fetch: %w", m, err)
		}
		if m.MoveTo != "" && len(done) > 0 {
			// An existing folder makes CREATE fail: the MOVE then tells.
			_ = c.Create(m.MoveTo, nil).Wait()
			if _, err := c.Move(done, m.MoveTo).Wait(); err != nil {
				return fmt.Errorf("imap %s: move to %s: %w", m, m.MoveTo, err)
			}
		}
	}
	_ = c.Logout().Wait()
	return nil
}
