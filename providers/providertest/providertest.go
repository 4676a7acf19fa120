// Package providertest is the conformance suite every provider package runs against its
// own fake server: a message arrives intact, temporary/permanent/fatal answers map to the
// right Kind, cancellation stops a send promptly, Close is idempotent, and concurrent
// Send calls are safe.
package providertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/heraldmail/herald/providers"
)

// Behaviour is how a fake server answers every message.
type Behaviour int

const (
	// Accept takes the message.
	Accept Behaviour = iota
	// TempFail answers with a temporary failure (SMTP 451, HTTP 429/503, …).
	TempFail
	// PermFail rejects the message permanently (SMTP 550 5.7.1, HTTP 400, …).
	PermFail
	// FatalFail answers as for bad credentials or a paused account.
	FatalFail
	// Hang never answers (until the test ends).
	Hang
)

func (b Behaviour) String() string {
	return [...]string{"accept", "tempfail", "permfail", "fatal", "hang"}[b]
}

// Received is what a fake server got, decoded to compare across providers.
type Received struct {
	To      string
	Subject string
	Text    string
	HTML    string
	// Headers holds the extra headers the message carried (List-Unsubscribe, …).
	Headers mail.Header
}

// Harness wires a provider to its fake server.
type Harness struct {
	// Start starts a fake server that answers every message with b and returns a
	// provider connected to it and a function that lists what the server accepted.
	// Both are cleaned up by t.Cleanup.
	Start func(t *testing.T, b Behaviour) (providers.Provider, func() []Received)
	// Unsupported lists behaviours the provider cannot meet (the file provider has no
	// server to refuse it); the suite skips them.
	Unsupported []Behaviour
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	skip := func(t *testing.T, b Behaviour) {
		for _, u := range h.Unsupported {
			if u == b {
				t.Skipf("provider cannot %s", b)
			}
		}
	}
	t.Run("DeliversIntact", func(t *testing.T) {
		p, got := h.Start(t, Accept)
		msg := Message("jane.doe@example.org", 1)
		r, err := p.Send(context.Background(), msg)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if r.MessageID == "" {
			t.Errorf("Send returned an empty receipt id")
		}
		rec := got()
		if len(rec) != 1 {
			t.Fatalf("server received %d messages, want 1", len(rec))
		}
		m := rec[0]
		if !strings.EqualFold(m.To, "jane.doe@example.org") {
			t.Errorf("To = %q", m.To)
		}
		if m.Subject != msg.Subject {
			t.Errorf("Subject = %q, want %q", m.Subject, msg.Subject)
		}
		if !strings.Contains(m.Text, "Hello Jane 1") || !strings.Contains(m.Text, "https://news.example.com/u/tok1") {
			t.Errorf("text body lost its content: %q", m.Text)
		}
		if !strings.Contains(m.HTML, "<b>Hello Jane 1</b>") {
			t.Errorf("html body lost its content: %q", m.HTML)
		}
		if lu := m.Headers.Get("List-Unsubscribe"); !strings.Contains(lu, "<https://news.example.com/u/tok1>") {
			t.Errorf("List-Unsubscribe = %q", lu)
		}
		if lup := m.Headers.Get("List-Unsubscribe-Post"); lup != "List-Unsubscribe=One-Click" {
			t.Errorf("List-Unsubscribe-Post = %q", lup)
		}
	})
	for _, c := range []struct {
		b    Behaviour
		want providers.Kind
	}{{TempFail, providers.Temporary}, {PermFail, providers.Permanent}, {FatalFail, providers.Fatal}} {
		t.Run("Classifies/"+c.b.String(), func(t *testing.T) {
			skip(t, c.b)
			p, got := h.Start(t, c.b)
			_, err := p.Send(context.Background(), Message("x@example.org", 1))
			if err == nil {
				t.Fatalf("Send succeeded, want a %s error", c.want)
			}
			if k := providers.KindOf(err); k != c.want {
				t.Errorf("KindOf(%v) = %s, want %s", err, k, c.want)
			}
			if pe := providers.AsError(err); pe == nil || !strings.HasPrefix(err.Error(), p.Name()+":") {
				t.Errorf("error %q is not a *providers.Error starting with %q", err, p.Name())
			}
			if n := len(got()); n != 0 {
				t.Errorf("server accepted %d messages after a %s answer", n, c.b)
			}
		})
	}
	t.Run("CancelStopsPromptly", func(t *testing.T) {
		skip(t, Hang)
		p, _ := h.Start(t, Hang)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := p.Send(ctx, Message("slow@example.org", 1))
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("Send to a hung server succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Send did not return within 5s of its context ending")
		}
	})
	t.Run("CloseIdempotent", func(t *testing.T) {
		p, _ := h.Start(t, Accept)
		if _, err := p.Send(context.Background(), Message("a@example.org", 1)); err != nil {
			t.Fatalf("Send: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("first Close: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
	t.Run("ConcurrentSend", func(t *testing.T) {
		p, got := h.Start(t, Accept)
		const workers, each = 8, 5
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					n := w*each + i
					if _, err := p.Send(context.Background(), Message(fmt.Sprintf("r%d@example.org", n), n)); err != nil {
						errs <- err
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Send: %v", err)
		}
		seen := map[string]int{}
		for _, m := range got() {
			seen[strings.ToLower(m.To)]++
		}
		for n := 0; n < workers*each; n++ {
			if c := seen[fmt.Sprintf("r%d@example.org", n)]; c != 1 {
				t.Errorf("r%d received %d times, want 1", n, c)
			}
		}
	})
}

// Message builds a realistic rendered message for recipient to; n varies its content.
func Message(to string, n int) *providers.Message {
	unsub := fmt.Sprintf("https://news.example.com/u/tok%d", n)
	m := &providers.Message{
		Campaign:    "conformance",
		From:        `"Example News" <news@example.com>`,
		FromAddress: "news@example.com",
		To:          to,
		ToName:      fmt.Sprintf("Jane %d", n),
		Subject:     fmt.Sprintf("Jane, our picks nº%d", n),
		Text:        fmt.Sprintf("Hello Jane %d\r\nUnsubscribe: %s\r\n", n, unsub),
		HTML:        fmt.Sprintf("<p><b>Hello Jane %d</b></p><p><a href=\"%s\">Unsubscribe</a></p>", n, unsub),
		MessageID:   fmt.Sprintf("<conformance.%d@example.com>", n),
		Headers: []providers.Header{
			{Name: "List-Unsubscribe", Value: "<" + unsub + ">, <mailto:unsubscribe@example.com>"},
			{Name: "List-Unsubscribe-Post", Value: "List-Unsubscribe=One-Click"},
			{Name: "Precedence", Value: "bulk"},
		},
	}
	m.Raw = Render(m)
	return m
}

// Render writes m's fields as a raw multipart/alternative RFC 5322 message (CRLF line
// ends, RFC 2047 subject, m.Headers carried over), as herald's builder would.
func Render(m *providers.Message) []byte {
	var b bytes.Buffer
	w := func(s string) { b.WriteString(s); b.WriteString("\r\n") }
	w("From: " + m.From)
	w(fmt.Sprintf("To: %q <%s>", m.ToName, m.To))
	w("Subject: " + mime.QEncoding.Encode("utf-8", m.Subject))
	w("Date: Mon, 02 Nov 2026 09:00:00 +0000")
	w("Message-ID: " + m.MessageID)
	w("MIME-Version: 1.0")
	for _, h := range m.Headers {
		w(h.Name + ": " + h.Value)
	}
	w(`Content-Type: multipart/alternative; boundary="b1"`)
	w("")
	w("--b1")
	w("Content-Type: text/plain; charset=utf-8")
	w("")
	b.WriteString(m.Text)
	w("--b1")
	w("Content-Type: text/html; charset=utf-8")
	w("")
	w(m.HTML)
	w("--b1--")
	return b.Bytes()
}

// ParseRaw decodes a raw RFC 5322 message (as SMTP, SES raw or Mandrill raw carry it)
// into a Received, for fakes that get raw MIME. The envelope recipient is to.
func ParseRaw(to string, raw []byte) (Received, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Received{}, err
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return Received{}, err
	}
	r := Received{To: to, Subject: subj, Headers: msg.Header}
	if err := walk(&r, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body); err != nil {
		return Received{}, err
	}
	return r, nil
}

func walk(r *Received, ctype, cte string, body io.Reader) error {
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := walk(r, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); err != nil {
				return err
			}
		}
	}
	data, err := io.ReadAll(decode(cte, body))
	if err != nil {
		return err
	}
	switch mt {
	case "text/html":
		r.HTML += string(data)
	default:
		r.Text += string(data)
	}
	return nil
}

// Spec returns a Spec of kind whose Decode strictly decodes the YAML block as the
// campaign file's provider block is decoded (an unknown key is an error, an empty block
// is fine) and whose Getenv reads env. Set BaseDir or Warnf on the result as needed.
func Spec(kind, block string, env map[string]string) providers.Spec {
	return providers.Spec{
		Kind: kind,
		Decode: func(into any) error {
			dec := yaml.NewDecoder(strings.NewReader(block))
			dec.KnownFields(true)
			if err := dec.Decode(into); err != nil && err != io.EOF {
				return err
			}
			return nil
		},
		Getenv: func(k string) string { return env[k] },
	}
}
