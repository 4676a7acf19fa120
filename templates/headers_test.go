package templates

import (
	"bytes"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
)

// walkParts calls fn for every leaf part of a message, with its header.
func walkParts(t *testing.T, raw []byte, fn func(h map[string][]string, body []byte)) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(h map[string][]string, body []byte)
	walk = func(h map[string][]string, body []byte) {
		ct := ""
		if v := h["Content-Type"]; len(v) > 0 {
			ct = v[0]
		}
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			t.Fatalf("Content-Type %q: %v", ct, err)
		}
		if !strings.HasPrefix(mt, "multipart/") {
			fn(h, body)
			return
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		n := 0
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				break
			}
			var b bytes.Buffer
			if _, err := b.ReadFrom(p); err != nil {
				t.Fatalf("reading a part of %s: %v", mt, err)
			}
			walk(p.Header, b.Bytes())
			n++
		}
		if n == 0 {
			t.Fatalf("%s with no parts", mt)
		}
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(msg.Body)
	walk(msg.Header, body.Bytes())
}

func TestBodyPartsAre7bit(t *testing.T) {
	b := newTestBuilder(t, fixedOptions())
	for _, r := range []Rendered{
		{Subject: "s", Text: "plain ascii\n"},
		{Subject: "s", HTML: "<p>plain</p>"},
		{Subject: "s", Text: "plain ascii\n", HTML: "<p>plain</p>"},
		{Subject: "Grüße", Text: "Grüße\n", HTML: "<p>Grüße</p>"},
	} {
		m, err := b.Build(r, "ann@example.com", "Zoë", unsubURL)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range m.Raw {
			if c >= 0x80 {
				t.Fatalf("byte %#x at %d: the message is not 7-bit", c, i)
			}
		}
		parts := 0
		walkParts(t, m.Raw, func(h map[string][]string, _ []byte) {
			parts++
			cte := strings.Join(h["Content-Transfer-Encoding"], ",")
			if cte != "7bit" && cte != "quoted-printable" {
				t.Errorf("part labelled Content-Transfer-Encoding %q, want 7bit or quoted-printable:\n%s", cte, m.Raw)
			}
		})
		if parts == 0 {
			t.Fatal("no parts")
		}
	}
}

func TestListIDAndFeedbackID(t *testing.T) {
	o := fixedOptions()
	for _, c := range []struct{ in, want string }{
		{"<november-news.acme.example>", "<november-news.acme.example>"},
		{"november-news.acme.example", "<november-news.acme.example>"},
		{"November news <november.news.acme.example>", "November news <november.news.acme.example>"},
		{"Acme, Inc. news <n.acme.example>", `"Acme, Inc. news" <n.acme.example>`},
		{"Nouvelles d’Acme <n.acme.example>", "=?utf-8?q?Nouvelles_d=E2=80=99Acme?= <n.acme.example>"},
	} {
		o.ListID, o.FeedbackID = c.in, "november:news:acme:herald"
		b := newTestBuilder(t, o)
		m, err := b.Build(Rendered{Subject: "s", Text: "t"}, "ann@example.com", "", unsubURL)
		if err != nil {
			t.Fatal(err)
		}
		checkMessage(t, m.Raw, "ann@example.com")
		msg, _ := mail.ReadMessage(bytes.NewReader(m.Raw))
		if got := msg.Header["List-Id"]; len(got) != 1 || got[0] != c.want {
			t.Errorf("list_id %q: List-Id = %q, want %q", c.in, got, c.want)
		}
		if got := msg.Header["Feedback-Id"]; len(got) != 1 || got[0] != "november:news:acme:herald" {
			t.Errorf("Feedback-ID = %q", got)
		}
		if m.Headers[0] != [2]string{"List-Id", c.want} || m.Headers[1][0] != "Feedback-ID" {
			t.Errorf("Built.Headers = %q", m.Headers)
		}
	}
	for _, bad := range []string{"<>", "<a..b>", "<.a>", "x <a b>", "<a@b>", "lab\x00el <a.b>"} {
		o.ListID = bad
		if _, err := NewBuilder(o); err == nil {
			t.Errorf("list_id %q accepted", bad)
		}
	}
	o.ListID = ""
	for _, bad := range []string{"a b", "a\r\nb", "é"} {
		o.FeedbackID = bad
		if _, err := NewBuilder(o); err == nil {
			t.Errorf("feedback_id %q accepted", bad)
		}
	}
	if err := ValidateHeader("List-Id", "x"); err == nil {
		t.Error("headers: may set List-Id")
	}
}

// headerLines returns the raw lines of one header field (first line and continuations).
func headerLines(raw []byte, name string) []string {
	var out []string
	lines := strings.Split(string(raw[:bytes.Index(raw, []byte("\r\n\r\n"))]), "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, name+":") {
			out = append(out, l)
			for _, c := range lines[i+1:] {
				if !strings.HasPrefix(c, " ") && !strings.HasPrefix(c, "\t") {
					break
				}
				out = append(out, c)
			}
		}
	}
	return out
}

func TestSubjectFoldsAfterFirstWord(t *testing.T) {
	b := newTestBuilder(t, fixedOptions())
	for _, subj := range []string{
		"Zoë, nos sélections de novembre ✉ et bien plus encore pour vous cette semaine, à lire",
		strings.Repeat("ü", 200),
		"Grüße aus Köln",
		strings.Repeat("long ascii words ", 20),
	} {
		m, err := b.Build(Rendered{Subject: subj, Text: "t"}, "ann@example.com", strings.Repeat("Zoë ", 30), unsubURL)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"Subject", "To"} {
			lines := headerLines(m.Raw, name)
			if len(lines) == 0 || strings.TrimSpace(strings.TrimPrefix(lines[0], name+":")) == "" {
				t.Errorf("%s starts with an empty line: %q", name, lines)
			}
			for _, l := range lines {
				if len(l) > 78 && strings.Contains(strings.TrimSpace(l), " ") {
					t.Errorf("%s line of %d octets could have been folded: %q", name, len(l), l)
				}
			}
		}
		msg, _ := mail.ReadMessage(bytes.NewReader(m.Raw))
		got, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if err != nil || got != strings.TrimSpace(subj) {
			t.Errorf("Subject decodes to %q (%v), want %q", got, err, subj)
		}
	}
}

func TestEncodedWordsInListDataAreEncoded(t *testing.T) {
	s, err := Parse(Sources{Subject: "Hello {{ .first_name }}", Text: "{{ .UnsubscribeURL }}"})
	if err != nil {
		t.Fatal(err)
	}
	b := newTestBuilder(t, fixedOptions())
	for _, hostile := range []string{
		"=?utf-8?q?Bob=0D=0ABcc:_evil@example.com?=",
		"=?UTF-8?B?Qm9iDQpCY2M6IGV2aWxAZXhhbXBsZS5jb20=?=",
		"Ann =?iso-8859-1?q?=E9?= Lee",
		"Zoë =?utf-8?q?=0A?=",
	} {
		data := recipient(map[string]string{"first_name": hostile, "name": hostile})
		r, err := s.Render(data)
		if err != nil {
			t.Fatal(err)
		}
		m, err := b.Build(r, "ann@example.com", r.ToName, unsubURL)
		if err != nil {
			t.Fatal(err)
		}
		checkMessage(t, m.Raw, "ann@example.com")
		msg, _ := mail.ReadMessage(bytes.NewReader(m.Raw))
		subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if err != nil || subj != "Hello "+hostile {
			t.Errorf("Subject decodes to %q (%v), want the text as given: %q\n%s", subj, err, "Hello "+hostile, m.Raw)
		}
		to, err := msg.Header.AddressList("To")
		if err != nil || len(to) != 1 || to[0].Name != hostile {
			t.Errorf("To name reads back as %v (%v), want %q", to, err, hostile)
		}
	}
}
