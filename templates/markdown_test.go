package templates

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostile is list data that tries every way into the markup: HTML, Markdown, template
// syntax, a line break, leading spaces, a backtick, entities.
func hostile() map[string]string {
	return recipient(map[string]string{
		"name":     `<script>alert("x")</script> Ann & *Bob*`,
		"vip":      "yes",
		"md":       "**bold** [click](https://evil.example) ![img](https://evil.example/t.png)\n\n# Heading\n- item",
		"code":     "    indented like code",
		"tmpl":     `{{ .UnsubscribeURL }} {{ template "x" }}`,
		"backtick": "a`b",
		"entity":   "&amp; &lt;b&gt; &#60;i>",
		"id":       "a b&c/d",
	})
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "markdown", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "markdown", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs (rerun with -update if intended):\n%s", path, got)
	}
}

func TestMarkdownGolden(t *testing.T) {
	body := readTestdata(t, "body.md")
	off := false
	for _, tt := range []struct {
		name string
		src  Sources
	}{
		{"builtin", Sources{Subject: "Hi {{ .name }}", Markdown: body, MarkdownFile: "body.md"}},
		{"layout", Sources{Subject: "Hi {{ .name }}", Markdown: body, MarkdownFile: "body.md",
			Layout: readTestdata(t, "layout.html"), LayoutFile: "layout.html"}},
		{"layout_no_inline", Sources{Subject: "Hi {{ .name }}", Markdown: body, MarkdownFile: "body.md",
			Layout: readTestdata(t, "layout.html"), LayoutFile: "layout.html", InlineCSS: &off}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Check([]string{"email", "name", "vip", "md", "code", "tmpl", "backtick", "entity", "id"}); err != nil {
				t.Fatal(err)
			}
			data := hostile()
			data[KeyUnsubscribeURL] = unsubURL
			r, err := s.Render(data)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".golden.html", r.HTML)
			golden(t, tt.name+".golden.txt", r.Text)

			// No markup from the data.
			for _, bad := range []string{"<script", "<strong>bold", `href="https://evil.example"`, `src="https://evil.example`,
				"<h1>Heading", "<li>item</li>", "<code>    indented", "<b>", "<i>"} {
				if strings.Contains(r.HTML, bad) {
					t.Errorf("HTML holds %q from the list data", bad)
				}
			}
			// The data reads as written in both parts (white space collapsed).
			for _, k := range []string{"name", "tmpl", "entity"} {
				want := strings.Join(strings.Fields(data[k]), " ")
				if !strings.Contains(r.Text, want) {
					t.Errorf("text part lacks %s as written: %q", k, want)
				}
			}
			if !strings.Contains(r.Text, "Hello <script>") || !strings.Contains(r.Text, "==========") {
				t.Errorf("heading not underlined in text:\n%s", r.Text)
			}
			if !strings.Contains(r.HTML, "<code>code a\u02cbb</code>") {
				t.Errorf("a backtick in data ends a code span:\n%s", r.HTML)
			}
			if !strings.Contains(r.Text, "Your profile (https://acme.example/u?id=a+b%26c%2Fd)") {
				t.Errorf("link not written as text (url):\n%s", r.Text)
			}
			if !strings.Contains(r.HTML, `href="https://acme.example/u?id=a+b%26c%2Fd"`) {
				t.Errorf("urlquery data in a link target:\n%s", r.HTML)
			}
			if !strings.Contains(r.HTML, `href="`+unsubURL+`"`) || !strings.Contains(r.Text, unsubURL) {
				t.Errorf("unsubscribe URL not kept as a link")
			}
			if !strings.Contains(r.HTML, "<title>Hi &lt;script&gt;") {
				t.Errorf("no escaped <title>:\n%.300s", r.HTML)
			}
		})
	}
}

func TestMarkdownTemplateControlAroundBlocks(t *testing.T) {
	s, err := Parse(Sources{Subject: "s", Markdown: "{{ if .vip }}\n# VIP {{ .name }}\n\n- one\n- two\n{{ end }}\n\n[u]({{ .UnsubscribeURL }})\n"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Render(recipient(map[string]string{"vip": "y", "name": "Ann"}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.HTML, "<h1>VIP Ann</h1>") || !strings.Contains(r.HTML, "<li>one</li>") {
		t.Errorf("{{ if }} around a heading and a list:\n%s", r.HTML)
	}
}

func TestMarkdownErrorsNameFileAndLine(t *testing.T) {
	_, err := Parse(Sources{Subject: "s", Markdown: "ok\n\n{{ .x \n", MarkdownFile: "body.md"})
	if err == nil || !strings.HasPrefix(err.Error(), "body.md:") || !strings.Contains(err.Error(), "body.md:3") {
		t.Errorf("syntax error = %v, want body.md:…3…", err)
	}
	s, err := Parse(Sources{Subject: "s", Markdown: "# Hi\n\n{{ .frist }}\n{{ .UnsubscribeURL }}", MarkdownFile: "body.md"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Check([]string{"email", "first"})
	if err == nil || !strings.HasPrefix(err.Error(), "body.md:3:") || !strings.Contains(err.Error(), `"frist"`) {
		t.Errorf("missing column = %v", err)
	}
	_, err = Parse(Sources{Subject: "s", Markdown: "x", Layout: "<p>{{ .Body }</p>", LayoutFile: "layout.html"})
	if err == nil || !strings.HasPrefix(err.Error(), "layout.html:1:") {
		t.Errorf("layout syntax error = %v", err)
	}
}

func TestLayoutUnsubscribeCheckCoversWholeMessage(t *testing.T) {
	layout := `<html><body>{{ .Body }}<p><a href="{{ .UnsubscribeURL }}">unsubscribe</a></p></body></html>`
	// The link is in the layout only: accepted, and the text part gets it too.
	for _, src := range []Sources{
		{Subject: "s", Markdown: "# Hi {{ .name }}", Layout: layout},
		{Subject: "s", HTML: "<p>Hi {{ .name }}</p>", Layout: layout},
	} {
		s, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Check([]string{"email", "name"}); err != nil {
			t.Errorf("layout with the link refused: %v", err)
		}
		r, err := s.Render(recipient(map[string]string{"name": "Ann"}))
		if err != nil {
			t.Fatal(err)
		}
		u := recipient(nil)[KeyUnsubscribeURL]
		if !strings.Contains(r.Text, u) || !strings.Contains(r.HTML, strings.ReplaceAll(u, "&", "&amp;")) {
			t.Errorf("unsubscribe URL missing:\nHTML %s\ntext %s", r.HTML, r.Text)
		}
	}
	// Nowhere: refused.
	s, err := Parse(Sources{Subject: "s", Markdown: "# Hi", Layout: "<html>{{ .Body }}</html>", LayoutFile: "layout.html"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check([]string{"email"}); err == nil {
		t.Error("no unsubscribe link anywhere: accepted")
	}
	// A layout that never shows the body: refused.
	if _, err := Parse(Sources{Subject: "s", HTML: "<p>x</p>", Layout: "<html></html>"}); err == nil {
		t.Error("layout without {{ .Body }} accepted")
	}
}

func TestMarkdownBuildsMessage(t *testing.T) {
	s, err := Parse(Sources{Subject: "Hi {{ .name }}", Markdown: readTestdata(t, "body.md")})
	if err != nil {
		t.Fatal(err)
	}
	data := hostile()
	data[KeyUnsubscribeURL] = unsubURL
	r, err := s.Render(data)
	if err != nil {
		t.Fatal(err)
	}
	b := newTestBuilder(t, fixedOptions())
	m, err := b.Build(r, "ann@example.com", r.ToName, unsubURL)
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m.Raw, "ann@example.com")
	if !bytes.Contains(m.Raw, []byte("multipart/alternative")) {
		t.Error("a Markdown message is not text + HTML")
	}
}
