package templates

import (
	"fmt"
	"strings"
	"testing"
)

// benchHTML is a personalised HTML newsletter of about 10 KB.
func benchSources() Sources {
	var b strings.Builder
	b.WriteString(`<html><head></head><body>
<h1>Hello {{ .first_name }}, our November picks</h1>
`)
	for i := 0; b.Len() < 9800; i++ {
		fmt.Fprintf(&b, `<h2>Pick %d for {{ .city }}</h2>
<p>We thought you, {{ .first_name }}, might enjoy this: a carefully chosen item with a long description that goes on for a while so that the message looks like a real one &amp; wraps.</p>
<p><a href="https://acme.example/picks/%d?campaign={{ .Campaign }}">See pick %d</a></p>
`, i, i, i)
	}
	b.WriteString(`<p>You get this because {{ .Email }} subscribed. <a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p></body></html>`)
	return Sources{Subject: "{{ .first_name }}, our November picks", HTML: b.String(), HTMLFile: "template.html"}
}

// benchColumns are the list's columns for Check.
var benchColumns = []string{"email", "first_name", "city", "name"}

// benchStyle is a newsletter stylesheet: 14 rules and a media query.
const benchStyle = `<style>
body { font-family: Helvetica, Arial, sans-serif; color: #1f2328; }
h1 { font-size: 26px; margin: 0 0 16px; }
h2 { font-size: 20px; margin: 24px 0 8px; color: #0b5394; }
p { font-size: 16px; line-height: 1.5; margin: 0 0 12px; }
a { color: #0b5394; text-decoration: underline; }
ul { padding-left: 20px; }
li { margin: 0 0 6px; }
table { border-collapse: collapse; width: 100%; }
td, th { padding: 6px 8px; border: 1px solid #dddddd; }
th { background-color: #f4f4f5; text-align: left; }
blockquote { border-left: 4px solid #dddddd; margin: 0; padding-left: 12px; }
code { font-family: Menlo, monospace; background-color: #f4f4f5; }
.footer { font-size: 12px; color: #6a737d; }
.frame { max-width: 600px; margin: 0 auto; }
@media (max-width: 480px) { h1 { font-size: 22px; } .frame { padding: 8px; } }
</style>`

// benchMarkdown is a Markdown newsletter of about 3 KB.
func benchMarkdown() string {
	var b strings.Builder
	b.WriteString("# Hello {{ .first_name }}, our November picks\n\n")
	for i := 0; b.Len() < 2900; i++ {
		fmt.Fprintf(&b, "## Pick %d for {{ .city }}\n\nWe thought you, {{ .first_name }}, might *enjoy* this: a **carefully chosen** item with a description & a [link](https://acme.example/picks/%d?campaign={{ .Campaign | urlquery }}).\n\n- one thing\n- another\n\n", i, i)
	}
	b.WriteString("[Unsubscribe]({{ .UnsubscribeURL }})\n")
	return b.String()
}

const benchLayout = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>{{ .Subject }}</title>` + benchStyle + `</head>
<body><div class="frame">{{ .Body }}<p class="footer">Acme Ltd, 1 Main St · <a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p></div></body></html>`

// benchRender times Render of src after Check (which decides how CSS is inlined).
func benchRender(b *testing.B, src Sources, perMessage bool) {
	s, err := Parse(src)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Check(benchColumns); err != nil {
		b.Fatal(err)
	}
	if s.CSSPerMessage() != perMessage {
		b.Fatalf("CSS inlined per message = %v, want %v", s.CSSPerMessage(), perMessage)
	}
	data := benchData()
	r, err := s.Render(data)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(r.HTML) + len(r.Text)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Render(data); err != nil {
			b.Fatal(err)
		}
	}
}

// The content benchmarks (BENCHMARKS.md "Content"): a ~10 KB HTML newsletter plain,
// with a <style> not inlined, inlined once into the template, and inlined per message;
// a ~3 KB Markdown newsletter in the built-in layout and in a styled layout.
func BenchmarkContent(b *testing.B) {
	html := benchSources()
	styled := html
	styled.HTML = strings.Replace(html.HTML, "<head></head>", "<head>"+benchStyle+"</head>", 1)
	off := false
	notInlined := styled
	notInlined.InlineCSS = &off
	// An action inside a tag makes inlining the source unsafe: every message is inlined.
	perMessage := styled
	perMessage.HTML = strings.Replace(styled.HTML, "<h1>", `<h1 {{ if .city }}class="c"{{ end }}>`, 1)
	md := Sources{Subject: "{{ .first_name }}, our November picks", Markdown: benchMarkdown()}
	mdStyled := md
	mdStyled.Layout = benchLayout
	b.Run("html", func(b *testing.B) { benchRender(b, html, false) })
	b.Run("html-style-not-inlined", func(b *testing.B) { benchRender(b, notInlined, false) })
	b.Run("html-css-inlined-once", func(b *testing.B) { benchRender(b, styled, false) })
	b.Run("html-css-inlined-per-message", func(b *testing.B) { benchRender(b, perMessage, true) })
	b.Run("markdown", func(b *testing.B) { benchRender(b, md, false) })
	b.Run("markdown-styled-layout", func(b *testing.B) { benchRender(b, mdStyled, false) })
}

func benchData() map[string]string {
	return recipient(map[string]string{"first_name": "Zoë", "city": "Berlin", "name": "Zoë Dvořák"})
}

// BenchmarkRender renders the ~10 KB HTML body, the subject and the derived text part.
func BenchmarkRender(b *testing.B) {
	s, err := Parse(benchSources())
	if err != nil {
		b.Fatal(err)
	}
	data := benchData()
	r, err := s.Render(data)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(r.HTML) + len(r.Text)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Render(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuild builds the MIME message (text + html alternative) of one rendered
// ~10 KB HTML message (non-ASCII data: both parts quoted-printable).
func BenchmarkBuild(b *testing.B) {
	benchBuild(b, benchData())
}

// BenchmarkBuildASCII is BenchmarkBuild with ASCII data: both parts go out as they are
// (7bit).
func BenchmarkBuildASCII(b *testing.B) {
	benchBuild(b, recipient(map[string]string{"first_name": "Zoe", "city": "Berlin", "name": "Zoe Dvorak"}))
}

func benchBuild(b *testing.B, data map[string]string) {
	s, err := Parse(benchSources())
	if err != nil {
		b.Fatal(err)
	}
	r, err := s.Render(data)
	if err != nil {
		b.Fatal(err)
	}
	bld, err := NewBuilder(fixedOptions())
	if err != nil {
		b.Fatal(err)
	}
	m, err := bld.Build(r, "zoe@example.com", r.ToName, unsubURL)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(m.Raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := bld.Build(r, "zoe@example.com", r.ToName, unsubURL); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderBuildParallel is one message end to end on every CPU, as the workers
// run it.
func BenchmarkRenderBuildParallel(b *testing.B) {
	s, err := Parse(benchSources())
	if err != nil {
		b.Fatal(err)
	}
	bld, err := NewBuilder(fixedOptions())
	if err != nil {
		b.Fatal(err)
	}
	data := benchData()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := s.Render(data)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := bld.Build(r, "zoe@example.com", r.ToName, unsubURL); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRenderHTMLOnly renders the ~10 KB HTML-only newsletter (subject, HTML, text
// part) after Check, with the text part derived from each message's HTML and derived
// once from the template.
func BenchmarkRenderHTMLOnly(b *testing.B) {
	for _, perMessage := range []bool{true, false} {
		name := "text-once"
		if perMessage {
			name = "text-per-message"
		}
		b.Run(name, func(b *testing.B) {
			s, err := Parse(benchSources())
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Check(benchColumns); err != nil {
				b.Fatal(err)
			}
			if perMessage {
				s.once = nil
			}
			if s.TextPerMessage() != perMessage {
				b.Fatalf("text per message = %v, want %v", s.TextPerMessage(), perMessage)
			}
			data := benchData()
			r, err := s.Render(data)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(r.HTML) + len(r.Text)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Render(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
