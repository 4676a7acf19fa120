package templates

import (
	"context"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"strings"
	"sync"
	"testing"
)

// onceColumns are the list columns of the derived-text tests.
var onceColumns = []string{"email", "a", "b", "first_name", "city"}

// onceValues are list values that test what the HTML does to data: empty and blank
// cells, white space to collapse, markup and entities to escape and decode, quotes,
// NUL and the marker's own bytes, CR LF, no-break spaces, URLs and non-URLs in a link,
// template syntax and the stand-in tokens, invalid UTF-8.
var onceValues = []string{
	"", " ", "Zoë", "  two  words \n\there ", "<b>bold</b>", "a & b", "&amp;", "&lt;3",
	`"quoted" 'single'`, "\x00nul", "\x00\xff\x01", "a\r\nb\rc", "\u00a0nbsp\u00a0", "\v",
	"javascript:alert(1)", "https://evil.example/x y?q=1&r=2#f", "#frag", "%41", "mailto:x@y.example",
	"{{ .b }}", "heraldtx0x", "é\xff\xfe", "https://news.acme.example/unsubscribe/tok123?c=nov&x=1",
	"Unsubscribe", "-", "x\u2028y",
}

// onceTemplates are HTML bodies (the unsubscribe link is added) and whether their text
// part is derived once (true) or from each message's HTML (false).
var onceTemplates = []struct {
	name string
	body string
	once bool
}{
	{"text", `<p>Hello {{ .a }}, from {{ .b }}.</p>`, true},
	{"adjacent values", `<p>{{ .a }}{{ .b }}</p><p>{{ .a }} {{ .b }}</p>`, true},
	{"values at the ends", `{{ .a }}<p>middle</p>{{ .b }}`, true},
	{"paragraphs of values", `<p>{{ .a }}</p><p>{{ .b }}</p><h2>{{ .a }}</h2>`, true},
	{"value in a link's URL", `<a href="https://x.example/{{ .a }}?q={{ .b }}">{{ .a }}</a>`, true},
	{"whole URL from a value", `<p><a href="{{ .a }}">link</a> and <a href="{{ .b }}">{{ .b }}</a></p>`, true},
	{"link shows its URL", `<a href="{{ .UnsubscribeURL }}">{{ .UnsubscribeURL }}</a>`, true},
	{"link without text", `<p>see <a href="https://x.example/{{ .a }}"></a>{{ .b }}</p>`, true},
	{"link text from values", `<a href="https://x.example/{{ .a }}">{{ .b }}</a>`, true},
	{"nested links", `<a href="https://a.example/{{ .a }}">x <a href="https://b.example/">{{ .b }}</a></a>`, true},
	{"urlquery", `<a href="https://x.example/?q={{ .a | urlquery }}">q</a>`, true},
	{"html escaper", `<p>{{ .a | html }}</p>`, true},
	{"printf", `<p>{{ .a | printf "%q" }} {{ len .b }}</p>`, true},
	{"if around tags", `{{ if .a }}<p>yes {{ .a }}</p>{{ else }}<div>no</div>{{ end }}<p>{{ .b }}</p>`, true},
	{"if in text", `<p>Dear {{ if .a }}{{ .a }}{{ else }}friend{{ end }}, {{ .b }}</p>`, true},
	{"else if", `{{ if eq .a "" }}<h1>empty</h1>{{ else if eq .a " " }}<ul><li>blank</li></ul>{{ else }}{{ .a }}{{ end }}`, true},
	{"range over the row", `<ul>{{ range $k, $v := . }}<li>{{ $k }}: {{ $v }}</li>{{ end }}</ul>`, true},
	{"range with break", `{{ range $k, $v := . }}{{ if eq $k "b" }}{{ break }}{{ end }}<p>{{ $v }}</p>{{ end }}`, true},
	{"range with continue", `<table>{{ range $k, $v := . }}{{ if eq $k "a" }}{{ continue }}{{ end }}<tr><td>{{ $k }}</td><td>{{ $v }}</td></tr>{{ end }}</table>`, true},
	{"range over a number", `{{ range $i := 3 }}<li>{{ $i }} {{ $.a }}</li>{{ end }}`, true},
	{"with", `{{ with .a }}<h2>{{ . }}</h2>{{ else }}<h2>none</h2>{{ end }}{{ .b }}`, true},
	{"link opened in a branch", `{{ if .a }}<a href="https://x.example/{{ .b }}">{{ end }}text</a> after`, true},
	{"variables", `{{ $n := .a }}{{ $m := "x" }}<p>{{ $n }}{{ $m = .b }}{{ $m }}</p>`, true},
	{"trim markers", `<p>  {{- .a -}}  </p>  {{- .b }}`, true},
	{"template comment", `<p>{{ .a }}{{/* a note */}}{{ .b }}</p>`, true},
	{"head, title, style", `<html><head><title>{{ .a }}</title><style>p { color: red }</style></head><body><p>{{ .b }}</p></body></html>`, true},
	{"script", `<script>var x = {{ .a }}; var y = "{{ .b }}";</script><p>{{ .b }}</p>`, true},
	{"if in a style", `<style>{{ if .a }}p { color: red }{{ end }}</style><p>{{ .b }}</p>`, true},
	{"other attributes", `<p class="c-{{ .a }}" title="{{ .b }}">x</p><img alt="{{ .a }}" src="https://x.example/{{ .b }}.png">`, true},
	{"tables and lists", `<table><tr><td>{{ .a }}</td><td>{{ .b }}</td></tr></table><ul><li>{{ .a }}</li><li></li></ul>`, true},
	{"entities around values", `<p>Fish &amp; {{ .a }} &lt;3 {{ .b }}&nbsp;</p>`, true},
	{"pre and br", `<pre>{{ .a }}</pre>a<br>{{ .b }}<br/>`, true},
	{"a newsletter", benchSources().HTML, true},

	{"two hrefs", `<a href="https://x.example/{{ .a }}" href="https://y.example/{{ .b }}">y</a>`, false}, // the tokenizer drops the second
	{"value in a comment", `<!-- {{ .a }} --><p>{{ .b }}</p>`, false},
	{"attribute name", `<p data-{{ .a }}="x">y</p>`, false},
	{"if inside a tag", `<p {{ if .a }}class="x"{{ end }}>y {{ .b }}</p>`, false},
	{"defined template", `{{ define "f" }}<p>{{ .a }}</p>{{ end }}{{ template "f" . }}`, false},
	{"textarea", `<textarea>{{ .a }}</textarea>`, false},
	{"unquoted href", `<a href=https://x.example/{{ .a }}>x</a>`, false},
	{"entity before a value", `<p>&{{ .a }}</p>`, false},
	{"title in a branch", `{{ if .a }}<title>t</title>{{ end }}<p>{{ .b }}</p>`, false},
	{"raw element in a branch", `{{ if .a }}<xmp>{{ end }}x</xmp>`, false},
	{"value in a raw element", `<xmp>{{ .a }}</xmp>`, false},
}

// renderBoth renders data with the text part derived once (s) and from the message's
// HTML (per), and fails unless both give the same message, whose text is DeriveText of
// its HTML.
func renderBoth(t *testing.T, s, per *Set, data map[string]string) Rendered {
	t.Helper()
	got, err := s.Render(data)
	want, werr := per.Render(data)
	checkRenderFunc(t, s, data, got, err)
	checkRenderFunc(t, per, data, want, werr)
	if err != nil || werr != nil {
		if err == nil || werr == nil || err.Error() != werr.Error() {
			t.Fatalf("Render errors differ: derived once %v, per message %v", err, werr)
		}
		return Rendered{}
	}
	if got.HTML != want.HTML {
		t.Fatalf("HTML differs for %q:\nderived once %q\nper message  %q", data, got.HTML, want.HTML)
	}
	if got.Text != want.Text || s.text == nil && got.Text != DeriveText(got.HTML) {
		t.Fatalf("text differs for %q:\nderived once %q\nper message  %q\nHTML %q", data, got.Text, want.Text, got.HTML)
	}
	if got.Subject != want.Subject || got.ToName != want.ToName {
		t.Fatalf("headers differ: %q %q, %q %q", got.Subject, got.ToName, want.Subject, want.ToName)
	}
	return got
}

// parseBoth parses src twice and checks both: one set derives the text once where it
// can, the other from each message's HTML.
func parseBoth(t testing.TB, src Sources, cols []string) (once, per *Set, err error) {
	if once, err = Parse(src); err != nil {
		return nil, nil, err
	}
	if err = once.Check(cols); err != nil {
		return nil, nil, err
	}
	if per, err = Parse(src); err != nil {
		t.Fatal(err)
	}
	if err := per.Check(cols); err != nil {
		t.Fatal(err)
	}
	per.once = nil
	return once, per, nil
}

// The text part derived once per campaign is, for every template and every pair of
// values, the text the per-message derivation gives the message's own HTML; the HTML is
// the template's. Where the template cannot be derived once, the text is derived per
// message, and the tests say which templates those are.
func TestTextOnceSameAsPerMessage(t *testing.T) {
	for _, tc := range onceTemplates {
		t.Run(tc.name, func(t *testing.T) {
			off := false // CSS inlining has its own test
			s, per, err := parseBoth(t, Sources{Subject: "{{ .a }}", HTML: tc.body + unsubLinkHTML, HTMLFile: "t.html", InlineCSS: &off}, onceColumns)
			if err != nil {
				t.Fatal(err)
			}
			if s.TextPerMessage() == tc.once {
				t.Fatalf("text derived per message = %v, want %v", s.TextPerMessage(), !tc.once)
			}
			for _, a := range onceValues {
				for _, b := range onceValues {
					r := renderBoth(t, s, per, recipient(map[string]string{"a": a, "b": b, "city": "Berlin"}))
					if !strings.Contains(r.Text, recipient(nil)[KeyUnsubscribeURL]) {
						t.Fatalf("the text part lost the unsubscribe link:\n%s", r.Text)
					}
				}
			}
		})
	}
}

// HTML escaping differences come out as the per-message derivation shows them: the
// text shows list data as written (decoded), and a link's URL as html/template escaped
// it in the href.
func TestTextOnceShowsValuesAsTheHTMLDoes(t *testing.T) {
	s, per, err := parseBoth(t, Sources{Subject: "s", HTML: `<p>Hi {{ .a }}!</p><p><a href="https://x.example/p?q={{ .b }}">more</a></p>` + unsubLinkHTML}, onceColumns)
	if err != nil {
		t.Fatal(err)
	}
	if s.TextPerMessage() {
		t.Fatal("text derived per message")
	}
	r := renderBoth(t, s, per, recipient(map[string]string{"a": `<Tom & "Jerry">  O'Brien`, "b": "a b&c<d>"}))
	for _, want := range []string{
		`Hi <Tom & "Jerry"> O'Brien!`,
		"more <https://x.example/p?q=a%20b%26c%3cd%3e>",
		"Unsubscribe <" + recipient(nil)[KeyUnsubscribeURL] + ">",
	} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("text part lacks %q:\n%s", want, r.Text)
		}
	}
}

// Where the text part is derived once: CSS inlined once into the template gives the same
// parts as the template without it would; CSS inlined per message, a layout and a text
// template leave the text to each message (or to the text template).
func TestTextOnceWithOtherFeatures(t *testing.T) {
	styled := benchSources()
	styled.HTML = strings.Replace(styled.HTML, "<head></head>", "<head>"+benchStyle+"</head>", 1)
	perMessageCSS := styled
	perMessageCSS.HTML = strings.Replace(styled.HTML, "<h1>", `<h1 {{ if .city }}class="c"{{ end }}>`, 1)
	layout := benchSources()
	layout.Layout = benchLayout
	withText := benchSources()
	withText.Text = "{{ .UnsubscribeURL }}"
	for _, tc := range []struct {
		name       string
		src        Sources
		perMessage bool
	}{
		{"CSS inlined once", styled, false},
		{"CSS inlined per message", perMessageCSS, true},
		{"layout", layout, true},
		{"text template", withText, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, per, err := parseBoth(t, tc.src, benchColumns)
			if err != nil {
				t.Fatal(err)
			}
			if s.TextPerMessage() != tc.perMessage {
				t.Fatalf("text derived per message = %v, want %v", s.TextPerMessage(), tc.perMessage)
			}
			renderBoth(t, s, per, benchData())
		})
	}
}

// Every escaper of html/template replaces NUL in a string, so no value the marked
// template writes can pass for a marker. (Typed values such as template.HTML, which
// pass as they are, cannot come from list data: every value is a string, and no
// function of a template returns one.)
func TestEscapersNeverWriteNUL(t *testing.T) {
	for _, src := range []string{
		`<p>{{ . }}</p>`, `<p title="{{ . }}">`, `<p title={{ . }}>`, `<a href="{{ . }}">`, `<a href="/x?{{ . }}">`,
		`<a href={{ . }}>`, `<script>var x = {{ . }}; var y = "{{ . }}"; var z = /{{ . }}/; var w = ` + "`{{ . }}`" + `</script>`,
		`<style>p { color: {{ . }} } a { background: url("{{ . }}") }</style>`, `<title>{{ . }}</title>`,
		`<textarea>{{ . }}</textarea>`, `<p onclick="f({{ . }})" style="color: {{ . }}">`, `<img srcset="{{ . }}">`,
		`<!-- {{ . }} -->`, `<meta http-equiv="refresh" content="0; url={{ . }}">`,
	} {
		tm := htmltemplate.Must(htmltemplate.New("t").Parse(src))
		for _, v := range []string{"\x00", "a\x00b", "\x00\xff"} {
			var b strings.Builder
			if err := tm.Execute(&b, v); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(b.String(), "\x00") {
				t.Errorf("%s with %q writes a NUL: %q", src, v, b.String())
			}
		}
	}
}

// A runaway template is stopped by the output bound and a cancelled context as when the
// text is derived per message.
func TestTextOnceBoundsAndContext(t *testing.T) {
	s, err := Parse(Sources{Subject: "s", HTML: "<p>{{ .a }}</p>{{ if eq .a \"loop\" }}{{ range 300000000 }}<p>x</p>{{ end }}{{ end }}" + unsubLinkHTML, HTMLFile: "t.html"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(onceColumns); err != nil {
		t.Fatal(err)
	}
	if s.TextPerMessage() {
		t.Fatal("text derived per message")
	}
	_, err = s.Render(recipient(map[string]string{"a": "loop", "b": ""}))
	var te *Error
	if !errors.As(err, &te) || te.File != "t.html" || !strings.Contains(err.Error(), "renders more than") {
		t.Fatalf("Render = %v, want an *Error of t.html about its size", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.RenderContext(ctx, recipient(map[string]string{"a": "loop", "b": ""})); !errors.Is(err, context.Canceled) {
		t.Fatalf("RenderContext = %v, want context.Canceled", err)
	}
}

// A template error names the file and line as when the text is derived per message.
func TestTextOnceTemplateError(t *testing.T) {
	s, per, err := parseBoth(t, Sources{Subject: "s", HTML: "<p>{{ .a }}</p>\n{{ if eq .a \"x\" }}{{ index .b 99 }}{{ end }}" + unsubLinkHTML, HTMLFile: "t.html"}, onceColumns)
	if err != nil {
		t.Fatal(err)
	}
	if s.TextPerMessage() {
		t.Fatal("text derived per message")
	}
	_, err = s.Render(recipient(map[string]string{"a": "x", "b": "short"}))
	if err == nil || !strings.HasPrefix(err.Error(), "t.html:2:") {
		t.Fatalf("Render = %v, want an error at t.html:2", err)
	}
	renderBoth(t, s, per, recipient(map[string]string{"a": "x", "b": "short"}))
}

// Renders after Check run concurrently (the workers), each with its own values.
func TestTextOnceConcurrent(t *testing.T) {
	s, per, err := parseBoth(t, Sources{Subject: "s", HTML: onceTemplates[0].body + `<a href="https://x.example/{{ .b }}">x</a>` + unsubLinkHTML}, onceColumns)
	if err != nil {
		t.Fatal(err)
	}
	if s.TextPerMessage() {
		t.Fatal("text derived per message")
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				data := recipient(map[string]string{"a": onceValues[(g+i)%len(onceValues)], "b": onceValues[(g*3+i)%len(onceValues)]})
				got, err := s.Render(data)
				want, werr := per.Render(data)
				if err != nil || werr != nil || got.HTML != want.HTML || got.Text != want.Text {
					t.Errorf("%q: derived once %q (%v), per message %q (%v)", data, got.Text, err, want.Text, werr)
					return
				}
			}
		})
	}
	wg.Wait()
}

// FuzzTextOnce renders arbitrary templates with arbitrary values both ways: where the
// text part is derived once it is the per-message derivation of the same HTML.
func FuzzTextOnce(f *testing.F) {
	for i, tc := range onceTemplates {
		f.Add(tc.body, onceValues[i%len(onceValues)], onceValues[(i*7+3)%len(onceValues)])
	}
	f.Fuzz(func(t *testing.T, body, a, b string) {
		s, per, err := parseBoth(t, Sources{Subject: "s", HTML: body + unsubLinkHTML, HTMLFile: "t.html"}, onceColumns)
		if err != nil {
			return
		}
		renderBoth(t, s, per, recipient(map[string]string{"a": a, "b": b}))
	})
}

func ExampleDeriveText() {
	fmt.Print(DeriveText(`<p>Hello Zoë,</p><p>our picks &amp; more. <a href="https://x.example/u/tok">Unsubscribe</a></p>`))
	// Output:
	// Hello Zoë,
	//
	// our picks & more. Unsubscribe <https://x.example/u/tok>
}

// checkRenderFunc: RenderFunc hands fn what RenderContext returns (want, or the same
// error), its parts views that no later part of the same render overwrote.
func checkRenderFunc(t *testing.T, s *Set, data map[string]string, want Rendered, werr error) {
	t.Helper()
	called := false
	err := s.RenderFunc(context.Background(), data, func(got Rendered) error {
		called = true
		if got.Subject != want.Subject || got.HTML != want.HTML || got.Text != want.Text || got.ToName != want.ToName {
			t.Fatalf("RenderFunc gave\n%q\nRenderContext gave\n%q", got, want)
		}
		return nil
	})
	if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
		t.Fatalf("RenderFunc error %v, RenderContext error %v", err, werr)
	}
	if called != (werr == nil) {
		t.Fatalf("fn called %v with render error %v", called, werr)
	}
}
