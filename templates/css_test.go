package templates

import (
	"strings"
	"testing"
)

const styleHead = `<html><head><title>x</title><style>
p { color: #333333; margin: 0 0 12px; }
td.price { font-weight: bold; }
.frame p { font-size: 15px; }
a:hover { color: red; }
@media (max-width: 480px) { p { font-size: 14px; } }
</style></head><body>`

func TestCSSInlinedOnceOrPerMessage(t *testing.T) {
	unsub := `<p><a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p>`
	for _, c := range []struct {
		name string
		src  Sources
		once bool // inlining once is safe for this source
	}{
		{"plain", Sources{Subject: "s", HTML: styleHead + `<p>Hello {{ .name }}</p><p title="{{ index . "name" }}">x</p>` + unsub + `</body></html>`}, true},
		{"action inside a tag", Sources{Subject: "s", HTML: styleHead + `<p {{ if .vip }}class="vip"{{ end }}>Hello</p>` + unsub + `</body></html>`}, false},
		{"if between table rows", Sources{Subject: "s", HTML: styleHead + `<table>{{ if .vip }}<tr><td class="price">VIP</td></tr>{{ end }}<tr><td>all</td></tr></table>` + unsub + `</body></html>`}, false},
		{"styled layout, body unstyled", Sources{Subject: "s", HTML: "<div>Hi {{ .name }}</div>",
			Layout: styleHead + `<div>{{ .Body }}</div>` + unsub + `</body></html>`}, true},
		{"markdown in a styled layout", Sources{Subject: "s", Markdown: "# Hi {{ .name }}\n\nA paragraph with [a link](https://x.example) and `code`.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
			Layout: styleHead + `<div>{{ .Body }}</div>` + unsub + `</body></html>`}, true},
		{"markdown in a layout's styled frame", Sources{Subject: "s", Markdown: "Hi {{ .name }}\n",
			Layout: styleHead + `<div class="frame">{{ .Body }}</div>` + unsub + `</body></html>`}, true},
		{"markdown, a rule for a tag inside another", Sources{Subject: "s", Markdown: "> Hi {{ .name }}\n\nOut\n",
			Layout: strings.Replace(styleHead, "</style>", "blockquote p { color: green; }</style>", 1) + `<div>{{ .Body }}</div>` + unsub + `</body></html>`}, false},
		{"markdown, a structural pseudo-class", Sources{Subject: "s", Markdown: "Hi {{ .name }}\n\nTwo\n",
			Layout: strings.Replace(styleHead, "</style>", "p:first-child { color: green; }</style>", 1) + `<div>{{ .Body }}</div>` + unsub + `</body></html>`}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			once, err := Parse(c.src)
			if err != nil {
				t.Fatal(err)
			}
			if err := once.Check([]string{"email", "name", "vip"}); err != nil {
				t.Fatal(err)
			}
			if got := !once.CSSPerMessage(); got != c.once {
				t.Errorf("inlined once = %v, want %v", got, c.once)
			}
			each, err := Parse(c.src) // not checked: inlines every message
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []map[string]string{
				{"name": "Ann", "vip": "yes"},
				{"name": `O'Brien & <Co> "q" +1`, "vip": ""},
			} {
				data := recipient(d)
				a, err := once.Render(data)
				if err != nil {
					t.Fatal(err)
				}
				b, err := each.Render(data)
				if err != nil {
					t.Fatal(err)
				}
				if normalizeHTML(a.HTML) != normalizeHTML(b.HTML) {
					t.Errorf("data %v: inlined once\n%s\nper message\n%s", d, a.HTML, b.HTML)
				}
				if !strings.Contains(a.HTML, `style="`) || !strings.Contains(a.HTML, "@media (max-width: 480px)") ||
					strings.Contains(a.HTML, "p { color") {
					t.Errorf("rules not inlined, or the media query not kept:\n%s", a.HTML)
				}
			}
		})
	}
}

func TestCSSWarnings(t *testing.T) {
	s, err := Parse(Sources{Subject: "s", HTML: styleHead + `<style media="print">p{color:black}</style><p>x <a href="{{ .UnsubscribeURL }}">u</a></p></body></html>`, HTMLFile: "t.html"})
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(s.Warnings(), "\n")
	if !strings.Contains(w, "t.html: CSS selector a:hover cannot be inlined") || !strings.Contains(w, `<style media="print">`) {
		t.Errorf("warnings:\n%s", w)
	}
	if strings.Contains(w, "@media") || strings.Contains(w, "td.price") {
		t.Errorf("a media query or an inlinable rule reported:\n%s", w)
	}
	off := false
	s, _ = Parse(Sources{Subject: "s", HTML: styleHead + `<p><a href="{{ .UnsubscribeURL }}">u</a></p></body></html>`, InlineCSS: &off})
	r, _ := s.Render(recipient(nil))
	if strings.Contains(r.HTML, `style="`) || len(s.Warnings()) != 0 {
		t.Errorf("inline_css: false still inlines or warns")
	}
}
