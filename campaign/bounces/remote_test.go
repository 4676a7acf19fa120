package bounces

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// selfSigned returns a server TLS config for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

func fixtures(t *testing.T, names ...string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", "maildir", n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestIMAPOverTLS: imaps:// against an in-process IMAP server (go-imap's imapserver)
// with a certificate trusted through RootCAs: every message is read, none is marked
// \Seen; a wrong password and an untrusted certificate are errors.
func TestIMAPOverTLS(t *testing.T) {
	serverTLS, pool := selfSigned(t)
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("bounces", "pw")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	msgs := fixtures(t, "new/1796161977.0001.postfix", "new/1796161980.0004.arf", "new/1796161983.0007.autoreply")
	for _, m := range msgs {
		if _, err := user.Append("INBOX", literal(m), &imap.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mem.AddUser(user)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}},
		Logger: quietLogger{},
	})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	r, err := ParseRemote("imaps://bounces@"+addr+"/INBOX", "imap", "pw")
	if err != nil {
		t.Fatal(err)
	}
	r.RootCAs = pool
	var got [][]byte
	if err := (IMAP{Remote: r}).Each(context.Background(), func(raw []byte) (bool, error) { got = append(got, raw); return false, nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("read %d messages, want %d", len(got), len(msgs))
	}
	for i := range got {
		// IMAP carries lines with CRLF.
		if strings.ReplaceAll(string(got[i]), "\r\n", "\n") != strings.ReplaceAll(string(msgs[i]), "\r\n", "\n") {
			t.Errorf("message %d differs from what was stored", i)
		}
	}
	// Nothing was marked \Seen.
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("bounces", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	seen, err := c.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(seen.AllSeqNums()); n != 0 || sel.NumMessages != uint32(len(msgs)) {
		t.Errorf("%d of %d messages marked \\Seen", n, sel.NumMessages)
	}

	// MoveTo: the messages reported processed go to the folder, the rest stay.
	mover := IMAP{Remote: r, MoveTo: "Processed"}
	i := 0
	if err := mover.Each(context.Background(), func([]byte) (bool, error) { i++; return i != 2, nil }); err != nil {
		t.Fatal(err)
	}
	for folder, want := range map[string]uint32{"INBOX": 1, "Processed": 2} {
		st, err := c.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatalf("status %s: %v", folder, err)
		}
		if st.NumMessages == nil || *st.NumMessages != want {
			t.Errorf("%s holds %v messages, want %d", folder, st.NumMessages, want)
		}
	}

	bad, _ := ParseRemote("imaps://bounces@"+addr+"/INBOX", "imap", "wrong")
	bad.RootCAs = pool
	if err := (IMAP{Remote: bad}).Each(context.Background(), func([]byte) (bool, error) { return false, nil }); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong password: %v (want an error without the password)", err)
	}
	untrusted, _ := ParseRemote("imaps://bounces@"+addr+"/INBOX", "imap", "pw")
	if err := (IMAP{Remote: untrusted}).Each(context.Background(), func([]byte) (bool, error) { return false, nil }); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// literal wraps b as an imap.LiteralReader.
func literal(b []byte) imap.LiteralReader {
	return &lit{Reader: strings.NewReader(string(b)), n: int64(len(b))}
}

type lit struct {
	*strings.Reader
	n int64
}

func (l *lit) Size() int64 { return l.n }

// fakePOP3 is a minimal POP3 server holding msgs; it records the commands it gets.
type fakePOP3 struct {
	ln   net.Listener
	msgs [][]byte
	mu   sync.Mutex
	cmds []string
}

func startPOP3(t *testing.T, msgs [][]byte) *fakePOP3 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePOP3{ln: ln, msgs: msgs}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); f.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return f
}

func (f *fakePOP3) serve(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	say := func(s string) { w.WriteString(s + "\r\n"); w.Flush() }
	say("+OK fake POP3 ready")
	authed := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		f.mu.Lock()
		f.cmds = append(f.cmds, strings.ToUpper(verb))
		f.mu.Unlock()
		switch strings.ToUpper(verb) {
		case "USER":
			say("+OK")
		case "PASS":
			if arg != "pw" {
				say("-ERR [AUTH] invalid login")
				continue
			}
			authed = true
			say("+OK logged in")
		case "STAT":
			if !authed {
				say("-ERR not logged in")
				continue
			}
			say(fmt.Sprintf("+OK %d 0", len(f.msgs)))
		case "RETR":
			var n int
			fmt.Sscan(arg, &n)
			if n < 1 || n > len(f.msgs) {
				say("-ERR no such message")
				continue
			}
			w.WriteString("+OK message follows\r\n")
			for _, l := range strings.SplitAfter(strings.ReplaceAll(string(f.msgs[n-1]), "\r\n", "\n"), "\n") {
				if l == "" {
					continue
				}
				l = strings.TrimSuffix(l, "\n")
				if strings.HasPrefix(l, ".") {
					l = "." + l
				}
				w.WriteString(l + "\r\n")
			}
			say(".")
		case "QUIT":
			say("+OK bye")
			return
		default:
			say("-ERR unknown command")
		}
	}
}

// TestPOP3: the client logs in, reads every message with dot-stuffing undone, never
// deletes anything, and reports a refused login.
func TestPOP3(t *testing.T) {
	msgs := fixtures(t, "new/1796161977.0001.postfix", "new/1796161981.0005.qmail")
	msgs = append(msgs, []byte("From: a@b.example\nSubject: dots\n\n.leading dot\n..two dots\nend\n"))
	f := startPOP3(t, msgs)
	r, err := ParseRemote("pop3://bounces@"+f.ln.Addr().String(), "pop3", "pw")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := (POP3{r}).Each(context.Background(), func(raw []byte) (bool, error) { got = append(got, string(raw)); return false, nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("read %d messages, want 3", len(got))
	}
	if want := "From: a@b.example\nSubject: dots\n\n.leading dot\n..two dots\nend\n"; got[2] != want {
		t.Errorf("dot-stuffing not undone:\n%q\nwant\n%q", got[2], want)
	}
	if Parse([]byte(got[0])).Kind() != Hard || Parse([]byte(got[1])).Kind() != Hard {
		t.Error("the bounces read over POP3 do not parse")
	}
	f.mu.Lock()
	cmds := strings.Join(f.cmds, " ")
	f.mu.Unlock()
	if strings.Contains(cmds, "DELE") {
		t.Errorf("the client deleted mail: %s", cmds)
	}
	bad, _ := ParseRemote("pop3://bounces@"+f.ln.Addr().String(), "pop3", "nope")
	if err := (POP3{bad}).Each(context.Background(), func([]byte) (bool, error) { return false, nil }); err == nil || !strings.Contains(err.Error(), "login") || strings.Contains(err.Error(), "nope") {
		t.Errorf("refused login: %v", err)
	}
}

// TestParseRemote: URLs are checked, and a password never appears in a message.
func TestParseRemote(t *testing.T) {
	for _, tc := range []struct{ raw, family, env, want string }{
		{"imaps://u@mail.example.com/INBOX", "imap", "", "HERALD_BOUNCES_PASSWORD"},
		{"ftp://u@mail.example.com", "imap", "x", "scheme"},
		{"imaps://mail.example.com", "imap", "x", "names no user"},
		{"pop3s://u:secret-in-url@", "pop3", "", "not a URL"},
	} {
		_, err := ParseRemote(tc.raw, tc.family, tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret-in-url") {
			t.Errorf("ParseRemote(%q) = %v, want an error containing %q", tc.raw, err, tc.want)
		}
	}
	r, err := ParseRemote("imaps://u:pw-from-url@mail.example.com/Bounces", "imap", "")
	if err != nil || r.Password != "pw-from-url" || strings.Contains(r.String(), "pw-from-url") {
		t.Errorf("password in the URL: %v, %q", err, r)
	}
}
