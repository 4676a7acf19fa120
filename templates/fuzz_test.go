package templates

import (
	"bytes"
	"mime"
	"net/mail"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// FuzzBuild renders and builds a message from arbitrary list data (name, subject column,
// body fields) and checks what must hold whatever the data: no panic, a message that
// net/mail reads, header values without CR or LF, exactly one To with the recipient's
// address, and no line over 998 octets.
func FuzzBuild(f *testing.F) {
	f.Add("Ann Lee", "November", "Hello", "<b>bold</b>")
	f.Add("O'Brien, \"Bob\"", "a\r\nBcc: evil@example.com", "line\r\n.\r\nQUIT", "x\x00y")
	f.Add("Zoë\xff\xfe", "s\xc3\x28ubject", "\r\r\n\n", "--golden-boundary-0123456789")
	f.Add(strings.Repeat("N", 1200), strings.Repeat("S", 1200), strings.Repeat("b", 3000), strings.Repeat("h ", 2000))
	f.Add("=?utf-8?q?=0D=0ABcc:_x@y?=", "=?utf-8?b?DQpCY2M6IHhAeQ==?=", "a", "b")
	f.Add("<evil@example.com>", "To: x@y.example", "\t", "\u2028\u0085")

	s, err := Parse(Sources{
		Subject: "{{ .subject }} for {{ .name }}",
		HTML:    "<p>{{ .body }}</p><p>{{ .html }}</p>" + unsubLinkHTML,
		Text:    "{{ .body }}\n{{ .html }}\n{{ .UnsubscribeURL }}\n",
	})
	if err != nil {
		f.Fatal(err)
	}
	htmlOnly, err := Parse(Sources{Subject: "{{ .subject }}", HTML: "<p>{{ .body }}</p>{{ .html }}" + unsubLinkHTML})
	if err != nil {
		f.Fatal(err)
	}
	b := newTestBuilder(f, fixedOptions())

	f.Fuzz(func(t *testing.T, name, subject, body, html string) {
		data := recipient(map[string]string{"name": name, "subject": subject, "body": body, "html": html})
		for _, set := range []*Set{s, htmlOnly} {
			r, err := set.Render(data)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if strings.ContainsAny(r.Subject, "\r\n") || strings.ContainsAny(r.ToName, "\r\n") {
				t.Fatalf("rendered header text holds CR/LF: %q %q", r.Subject, r.ToName)
			}
			m, err := b.Build(r, "ann@example.com", r.ToName, unsubURL)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			checkMessage(t, m.Raw, "ann@example.com")
			msg, _ := mail.ReadMessage(bytes.NewReader(m.Raw))
			if msg.Header.Get("Bcc") != "" || len(msg.Header["Cc"]) != 0 {
				t.Fatalf("injected header:\n%s", m.Raw)
			}
			// What a reader shows is what was rendered: list data cannot smuggle in an
			// encoded word of its own.
			if subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil || subj != r.Subject {
				t.Fatalf("Subject reads back as %q (%v), rendered %q", subj, err, r.Subject)
			}
			if r.ToName != "" {
				if to, err := msg.Header.AddressList("To"); err == nil && to[0].Name != "" && to[0].Name != displayName(r.ToName) {
					t.Fatalf("To name reads back as %q, rendered %q", to[0].Name, r.ToName)
				}
			}
		}
	})
}

func TestBuildNamesRoundTrip(t *testing.T) {
	b := newTestBuilder(t, fixedOptions())
	tests := []struct{ in, want string }{
		{"\xd2\\", "\uFFFD\\"},
		{`Zoë \ Back\slash`, `Zoë \ Back\slash`},
		{`Plain \ ASCII "q"`, `Plain \ ASCII "q"`},
		{"Zoë (CEO), \"Z\"", "Zoë (CEO), \"Z\""},
	}
	for _, tt := range tests {
		m, err := b.Build(Rendered{Subject: "s", Text: "t"}, "ann@example.com", tt.in, unsubURL)
		if err != nil {
			t.Fatal(err)
		}
		checkMessage(t, m.Raw, "ann@example.com")
		msg, _ := mail.ReadMessage(bytes.NewReader(m.Raw))
		to, _ := msg.Header.AddressList("To")
		if to[0].Name != tt.want {
			t.Errorf("name %q written as %q, want %q", tt.in, to[0].Name, tt.want)
		}
	}
}

// FuzzMarkdown renders a Markdown template with arbitrary list data and checks that the
// data adds no markup: the HTML has exactly the elements (and links) the template makes
// with plain data, and the text part shows the data.
func FuzzMarkdown(f *testing.F) {
	f.Add("Ann", "<script>x</script>", "a`b", "a b&c")
	f.Add("**b** [x](https://e.example)", "# h\n- i\n\n    code", "``", "\\")
	f.Add("{{ .UnsubscribeURL }}", "&amp; &#60;", "<img src=x>", "javascript:alert(1)")
	f.Add("_x_ ~~y~~ https://auto.example", "| a | b |\n|---|---|", "</code>", "\x00\r\n")
	s, err := Parse(Sources{Subject: "s", Markdown: "# Hi {{ .a }}\n\n{{ .b }} and `{{ .c }}`\n\n- {{ .a }}\n\n[link](https://x.example/?q={{ .d | urlquery }}) {{ .d }}\n\n[u]({{ .UnsubscribeURL }})\n"})
	if err != nil {
		f.Fatal(err)
	}
	shape := func(h string) []string {
		var out []string
		z := html.NewTokenizer(strings.NewReader(h))
		for {
			tt := z.Next()
			if tt == html.ErrorToken {
				return out
			}
			if tt == html.StartTagToken || tt == html.EndTagToken || tt == html.SelfClosingTagToken {
				name, _ := z.TagName()
				out = append(out, tt.String()+string(name))
			}
		}
	}
	plain, err := s.Render(recipient(map[string]string{"a": "a", "b": "b", "c": "c", "d": "d"}))
	if err != nil {
		f.Fatal(err)
	}
	want := strings.Join(shape(plain.HTML), " ")
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		r, err := s.Render(recipient(map[string]string{"a": a, "b": b, "c": c, "d": d}))
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		w := want
		if strings.TrimSpace(c) == "" { // an empty code span is no code span
			w = strings.Replace(w, "StartTagcode EndTagcode ", "", 1)
		}
		if got := strings.Join(shape(r.HTML), " "); got != w {
			t.Fatalf("list data changed the markup:\n got %s\nwant %s\n%s", got, want, r.HTML)
		}
	})
}
