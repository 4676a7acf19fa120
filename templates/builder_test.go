package templates

import (
	"bufio"
	"bytes"
	"flag"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func fixedOptions() BuilderOptions {
	return BuilderOptions{
		From:              "Acme News <news@acme.example>",
		ReplyTo:           "help@acme.example",
		UnsubscribeMailto: "unsubscribe@acme.example",
		Headers:           map[string]string{"X-Campaign": "november", "X-Acme-List": "news weekly"},
		Now:               func() time.Time { return time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC) },
		NewID:             func() string { return "k2x7q4ms5yv3b6nd2ehfqz4lja" },
		ListID:            "<november-news.acme.example>",
		FeedbackID:        "november:news:acme:herald",
	}
}

func newTestBuilder(t testing.TB, o BuilderOptions) *Builder {
	t.Helper()
	b, err := NewBuilder(o)
	if err != nil {
		t.Fatal(err)
	}
	b.boundary = "golden-boundary-0123456789"
	return b
}

func TestValidateHeader(t *testing.T) {
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"X-Campaign", "november", true},
		{"X-Feedback-ID", "a:b:c", true},
		{"x-tab", "a\tb", true},
		{"X-Unicode", "Grüße", true},
		{"X-Mailer", "Acme", true},
		{"", "v", false},
		{"X Campaign", "v", false},
		{"X-Campaign:", "v", false},
		{"X-Ü", "v", false},
		{"X-Del\x7f", "v", false},
		{"From", "a@b.example", false},
		{"to", "a@b.example", false},
		{"SUBJECT", "x", false},
		{"Date", "x", false},
		{"Message-ID", "x", false},
		{"MIME-Version", "1.0", false},
		{"Content-Type", "text/plain", false},
		{"content-transfer-encoding", "8bit", false},
		{"List-Unsubscribe", "<https://x>", false},
		{"Precedence", "list", false},
		{"Bcc", "x@y.example", false},
		{"X-Injected", "a\r\nBcc: evil@example.com", false},
		{"X-Injected", "a\nb", false},
		{"X-Injected", "a\rb", false},
		{"X-Nul", "a\x00b", false},
		{"X-Bad-UTF8", "a\xffb", false},
		{"X-Empty", "  ", false},
		{"X-Long", strings.Repeat("a", MaxHeaderValue+1), false},
		{"X-Long-OK", strings.Repeat("a ", MaxHeaderValue/2), true},
	}
	for _, tt := range tests {
		err := ValidateHeader(tt.name, tt.value)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateHeader(%q, %q) = %v, want ok=%v", tt.name, tt.value, err, tt.ok)
		}
	}
}

func TestNewBuilderValidates(t *testing.T) {
	tests := []struct {
		name string
		edit func(*BuilderOptions)
		want string
	}{
		{"bad from", func(o *BuilderOptions) { o.From = "not an address" }, "from"},
		{"no from", func(o *BuilderOptions) { o.From = "" }, "from"},
		{"bad reply-to", func(o *BuilderOptions) { o.ReplyTo = "nope" }, "reply_to"},
		{"bad mailto", func(o *BuilderOptions) { o.UnsubscribeMailto = "x y" }, "mailto"},
		{"header override", func(o *BuilderOptions) { o.Headers = map[string]string{"Subject": "x"} }, "Subject"},
		{"header injection", func(o *BuilderOptions) { o.Headers = map[string]string{"X-A": "1\r\nTo: x@y.example"} }, "X-A"},
		{"duplicate header", func(o *BuilderOptions) { o.Headers = map[string]string{"X-A": "1", "x-a": "2"} }, "same header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := fixedOptions()
			tt.edit(&o)
			_, err := NewBuilder(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewBuilder = %v, want an error naming %q", err, tt.want)
			}
		})
	}
	b, err := NewBuilder(fixedOptions())
	if err != nil {
		t.Fatal(err)
	}
	if b.FromAddress() != "news@acme.example" {
		t.Errorf("FromAddress = %q", b.FromAddress())
	}
	mb, err := NewBuilder(BuilderOptions{From: "n@acme.example", UnsubscribeMailto: "mailto:u@acme.example"})
	if err != nil || mb.mailto != "<mailto:u@acme.example>" {
		t.Errorf("mailto: prefix: %v %q", err, mb.mailto)
	}
}

const unsubURL = "https://news.acme.example/unsubscribe/v1.bm92ZW1iZXItbmV3cw.YW5uQGV4YW1wbGUuY29t.sig"

func TestGolden(t *testing.T) {
	html := `<html><body><h1>November picks</h1>
<p>Hello {{ .first_name }}, here is what&rsquo;s new.</p>
<p><a href="https://acme.example/picks?campaign={{ .Campaign }}">See the picks</a></p>
<p><a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p>
</body></html>
`
	text := "Hello {{ .first_name }}, here is what's new.\n\nSee the picks: https://acme.example/picks\n\nUnsubscribe: {{ .UnsubscribeURL }}\n"
	tests := []struct {
		name    string
		src     Sources
		data    map[string]string
		toEmail string
	}{
		{"text_only", Sources{Subject: "{{ .first_name }}, our November picks", Text: text}, map[string]string{"first_name": "Ann", "name": "Ann Lee"}, "ann@example.com"},
		{"html_only", Sources{Subject: "{{ .first_name }}, our November picks", HTML: html}, map[string]string{"first_name": "Ann", "name": "Ann Lee"}, "ann@example.com"},
		{"both", Sources{Subject: "{{ .first_name }}, our November picks", HTML: html, Text: text}, map[string]string{"first_name": "Ann", "name": "Ann Lee"}, "ann@example.com"},
		{"non_ascii", Sources{Subject: "{{ .first_name }}, nos sélections de novembre ✉", HTML: html, Text: text},
			map[string]string{"first_name": "Zoë", "name": "Zoë Dvořák-Ōkubo"}, "zoe@example.com"},
		{"quotes_commas", Sources{Subject: `"{{ .first_name }}", picks, and more`, Text: text},
			map[string]string{"first_name": `Bob "The Builder"`, "name": `O'Brien, Bob "The Builder" (CEO)`}, "bob@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			data := recipient(tt.data)
			data[KeyEmail] = tt.toEmail
			data[KeyUnsubscribeURL] = unsubURL
			r, err := s.Render(data)
			if err != nil {
				t.Fatal(err)
			}
			b := newTestBuilder(t, fixedOptions())
			m, err := b.Build(r, tt.toEmail, r.ToName, unsubURL)
			if err != nil {
				t.Fatal(err)
			}
			checkMessage(t, m.Raw, tt.toEmail)
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, m.Raw, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(m.Raw, want) {
				t.Errorf("message differs from %s (rerun with -update if intended):\n%s", golden, m.Raw)
			}
			// The decoded header values round-trip.
			msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
			if err != nil {
				t.Fatal(err)
			}
			dec := new(mime.WordDecoder)
			subj, err := dec.DecodeHeader(msg.Header.Get("Subject"))
			if err != nil || subj != r.Subject {
				t.Errorf("Subject decodes to %q (%v), want %q", subj, err, r.Subject)
			}
			to, err := msg.Header.AddressList("To")
			if err != nil || len(to) != 1 || to[0].Name != tt.data["name"] || to[0].Address != tt.toEmail {
				t.Errorf("To = %v (%v), want %q <%s>", to, err, tt.data["name"], tt.toEmail)
			}
			if got := msg.Header.Get("Message-Id"); got != "<k2x7q4ms5yv3b6nd2ehfqz4lja@acme.example>" || got != m.MessageID {
				t.Errorf("Message-ID = %q, Built.MessageID = %q", got, m.MessageID)
			}
			for _, h := range m.Headers {
				if got := msg.Header.Get(h[0]); got != h[1] {
					t.Errorf("%s: written %q, Built.Headers says %q", h[0], got, h[1])
				}
			}
			checkBodies(t, msg, r)
		})
	}
}

// checkBodies decodes the message's parts and compares them with what was rendered.
func checkBodies(t *testing.T, msg *mail.Message, r Rendered) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	if mt == "multipart/alternative" {
		mr := multipart.NewReader(msg.Body, params["boundary"])
		for {
			p, err := mr.NextPart() // decodes quoted-printable
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(p)
			pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
			got[pt] = string(body)
		}
	} else {
		body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
		got[mt] = string(body)
	}
	norm := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
	if r.HTML != "" && norm(got["text/html"]) != r.HTML {
		t.Errorf("html part = %q, want %q", got["text/html"], r.HTML)
	}
	if r.Text != "" && norm(got["text/plain"]) != r.Text {
		t.Errorf("text part = %q, want %q", got["text/plain"], r.Text)
	}
	if mt == "multipart/alternative" && (r.Text == "" || r.HTML == "") {
		t.Errorf("multipart for a single body")
	}
}

// checkMessage asserts the wire properties every message must have.
func checkMessage(t testing.TB, raw []byte, toAddr string) {
	t.Helper()
	for i, line := range bytes.SplitAfter(raw, []byte("\r\n")) {
		content := bytes.TrimSuffix(line, []byte("\r\n"))
		if len(content) > 998 {
			t.Fatalf("line %d is %d octets", i+1, len(content))
		}
		if bytes.ContainsAny(content, "\r\n") {
			t.Fatalf("line %d holds a bare CR or LF: %q", i+1, content)
		}
	}
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("net/mail cannot read the message: %v\n%s", err, raw)
	}
	for name, values := range msg.Header {
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n") {
				t.Fatalf("header %s holds CR or LF: %q", name, v)
			}
		}
	}
	for _, name := range []string{"From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "List-Unsubscribe", "List-Unsubscribe-Post", "Precedence"} {
		if len(msg.Header[name]) != 1 {
			t.Fatalf("%d %s headers, want 1:\n%s", len(msg.Header[name]), name, raw)
		}
	}
	for _, name := range []string{"Cc", "Bcc", "X-Mailer", "User-Agent"} {
		if len(msg.Header[name]) != 0 {
			t.Fatalf("unexpected %s header: %q", name, msg.Header[name])
		}
	}
	to, err := msg.Header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != toAddr {
		t.Fatalf("To = %v (%v), want exactly %s\n%s", to, err, toAddr, raw)
	}
	if _, err := msg.Header.Date(); err != nil {
		t.Fatalf("Date: %v", err)
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	b := newTestBuilder(t, fixedOptions())
	r := Rendered{Subject: "s", Text: "t"}
	tests := []struct{ name, to, url string }{
		{"to with name", "Ann <ann@example.com>", unsubURL},
		{"to list", "a@example.com, b@example.com", unsubURL},
		{"to garbage", "nope", unsubURL},
		{"http url", "ann@example.com", "http://acme.example/u"},
		{"url with space", "ann@example.com", "https://acme.example/u x"},
		{"url with crlf", "ann@example.com", "https://acme.example/u\r\nBcc: x@y.example"},
		{"url with >", "ann@example.com", "https://acme.example/u>"},
		{"url too long", "ann@example.com", "https://acme.example/" + strings.Repeat("a", MaxUnsubscribeURL)},
	}
	for _, tt := range tests {
		if _, err := b.Build(r, tt.to, "", tt.url); err == nil {
			t.Errorf("%s: Build accepted to=%q url=%q", tt.name, tt.to, tt.url)
		}
	}
	if _, err := b.Build(Rendered{Subject: "s"}, "ann@example.com", "", unsubURL); err == nil {
		t.Error("Build accepted a message without a body")
	}
}

func TestBuildLongValues(t *testing.T) {
	b := newTestBuilder(t, fixedOptions())
	longURL := "https://news.acme.example/" + strings.Repeat("u", MaxUnsubscribeURL-len("https://news.acme.example/"))
	r := Rendered{
		Subject: strings.Repeat("x", 3000) + " and " + strings.Repeat("y ", 800),
		Text:    strings.Repeat("z", 5000) + "\n" + longURL,
		HTML:    "<p>" + strings.Repeat("w", 5000) + "</p>",
	}
	m, err := b.Build(r, "ann@example.com", strings.Repeat("N", 2000), longURL)
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m.Raw, "ann@example.com")
	msg, _ := mail.ReadMessage(bytes.NewReader(m.Raw))
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subj != strings.TrimSpace(r.Subject) {
		t.Errorf("long subject does not round-trip (%v): %.80q…", err, subj)
	}
	if lu := msg.Header.Get("List-Unsubscribe"); lu != "<"+longURL+">, <mailto:unsubscribe@acme.example>" {
		t.Errorf("List-Unsubscribe = %q", lu)
	}
}

func TestBuildBoundaryInBody(t *testing.T) {
	b := newTestBuilder(t, fixedOptions())
	r := Rendered{Subject: "s", Text: "--" + b.boundary + "\nContent-Type: text/html\n\n<evil>", HTML: "<p>hi</p>"}
	m, err := b.Build(r, "ann@example.com", "", unsubURL)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(m.Raw, []byte("boundary="+b.boundary)) {
		t.Fatal("message uses a boundary its body contains")
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		t.Fatal(err)
	}
	checkBodies(t, msg, r)
}

func TestBuildDefaultIDs(t *testing.T) {
	b, err := NewBuilder(BuilderOptions{From: "news@acme.example"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 100 {
		m, err := b.Build(Rendered{Subject: "s", Text: "t"}, "ann@example.com", "", unsubURL)
		if err != nil {
			t.Fatal(err)
		}
		id := m.MessageID
		local := strings.TrimSuffix(strings.TrimPrefix(id, "<"), "@acme.example>")
		if len(local) != 26 || strings.ToLower(local) != local || seen[id] {
			t.Fatalf("Message-ID %q: want 26 lowercase base32 characters, unique, @acme.example", id)
		}
		seen[id] = true
		if bytes.Contains(m.Raw, []byte("List-Unsubscribe: <"+unsubURL+">\r\n")) == false {
			t.Fatalf("List-Unsubscribe without mailto not written as expected:\n%s", m.Raw)
		}
	}
}

func TestPartBodyEncoding(t *testing.T) {
	long := strings.Repeat("a", 997)
	for _, c := range []struct {
		in, out string
		enc     string
	}{
		{"plain\nascii\n", "plain\r\nascii\r\n", "7bit"},
		{"already\r\ncrlf", "already\r\ncrlf", "7bit"},
		{"mixed\r\nends\n", "mixed\r\nends\r\n", "7bit"},
		{"tab\there", "tab\there", "7bit"},
		{"caf\u00e9", "caf=C3=A9", "quoted-printable"},
		{"bare\rcr", "bare\r\ncr", "quoted-printable"},
		{"nul\x00", "nul=00", "quoted-printable"},
		{"del\x7f", "del=7F", "quoted-printable"},
		{long[:996], long[:996], "7bit"},
		{long, long[:75] + "=\r\n" + long[75:150], "quoted-printable"},
	} {
		out, enc := partBody(c.in)
		if !strings.HasPrefix(string(out), c.out) || enc != c.enc {
			t.Errorf("partBody(%.20q) = %.20q, %s; want %.20q, %s", c.in, out, enc, c.out, c.enc)
		}
	}
}

func TestPrintableASCII(t *testing.T) {
	for i := 0; i < 256; i++ {
		c := byte(i)
		want := (c >= ' ' && c < 0x7f) || c == '\t'
		for _, pos := range []int{0, 3, 7, 8, 15, 20} {
			b := []byte(strings.Repeat("abcdefgh", 3))
			b[pos] = c
			if got := printableASCII(string(b)); got != want {
				t.Errorf("printableASCII with byte %#x at %d = %v, want %v", c, pos, got, want)
			}
		}
	}
}

// partBody is the body textPart writes and its transfer encoding.
func partBody(s string) ([]byte, string) {
	if !sevenBit(s) {
		return quotedPrintable(s), "quoted-printable"
	}
	p := preparedPart{text: s}
	var b bytes.Buffer
	p.write(&b)
	return b.Bytes(), "7bit"
}
