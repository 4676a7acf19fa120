package templates

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlToTextBefore is the converter as it was written before it was split into tagRule
// and textConv (one function, strings.Builder); FuzzConverterRefactor holds the two to
// the same output.
func htmlToTextBefore(src string) string {
	z := html.NewTokenizer(strings.NewReader(src))
	var b strings.Builder
	b.Grow(len(src) / 2)
	skip := 0          // depth inside script/style/head/title
	pendingBreak := 0  // newlines owed before the next text
	space := false     // a space is owed before the next text
	var hrefs []string // open links' URLs
	var linkText []int // b.Len() when each link opened
	lineStart := true
	emit := func(s string) {
		if pendingBreak > 0 && b.Len() > 0 {
			b.WriteString(strings.Repeat("\n", pendingBreak))
			lineStart = true
		}
		pendingBreak = 0
		if space && !lineStart {
			b.WriteByte(' ')
		}
		space = false
		b.WriteString(s)
		lineStart = false
	}
	emitByte := func(c byte) {
		if pendingBreak > 0 && b.Len() > 0 {
			for i := 0; i < pendingBreak; i++ {
				b.WriteByte('\n')
			}
			lineStart = true
		}
		pendingBreak = 0
		if space && !lineStart {
			b.WriteByte(' ')
		}
		space = false
		b.WriteByte(c)
		lineStart = false
	}
	brk := func(n int) {
		if n > pendingBreak {
			pendingBreak = n
		}
		space = false
	}
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return strings.TrimSpace(b.String()) + "\n"
		case html.TextToken:
			if skip > 0 {
				continue
			}
			// Collapse white space while copying, without splitting into words.
			for _, c := range z.Text() {
				if isSpace(c) {
					space = true
					continue
				}
				if pendingBreak > 0 || space || lineStart {
					emitByte(c)
					continue
				}
				b.WriteByte(c) // the common case: inside a word
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			a := atom.Lookup(name)
			end := tt == html.EndTagToken
			switch a {
			case atom.Script, atom.Style, atom.Head, atom.Title:
				if tt == html.StartTagToken {
					skip++
				} else if end && skip > 0 {
					skip--
				}
			case atom.Br:
				brk(1)
			case atom.P, atom.Div, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6,
				atom.Table, atom.Blockquote, atom.Pre, atom.Ul, atom.Ol, atom.Hr:
				brk(2)
			case atom.Tr, atom.Dt, atom.Dd:
				brk(1)
			case atom.Td, atom.Th:
				if !end {
					space = true
				}
			case atom.Li:
				if !end {
					brk(1)
					emit("-")
					space = true
				} else {
					brk(1)
				}
			case atom.A:
				if !end {
					href := ""
					for hasAttr {
						var k, v []byte
						k, v, hasAttr = z.TagAttr()
						if string(k) == "href" {
							href = string(v)
						}
					}
					hrefs = append(hrefs, href)
					linkText = append(linkText, b.Len())
				} else if len(hrefs) > 0 {
					href := hrefs[len(hrefs)-1]
					start := linkText[len(linkText)-1]
					hrefs, linkText = hrefs[:len(hrefs)-1], linkText[:len(linkText)-1]
					if href != "" && !strings.HasPrefix(href, "#") && !strings.HasPrefix(href, "javascript:") {
						if b.Len() == start {
							emit("<" + href + ">")
						} else if !strings.Contains(b.String()[start:], href) {
							space = true
							emit("<" + href + ">")
						}
					}
				}
			}
		}
	}
}

func FuzzConverterRefactor(f *testing.F) {
	for _, s := range []string{
		"<p>One</p><p>Two</p>", "a<br>b<br/>c", "<p>  lots \n\t of   space </p>",
		`<a href="https://a.example/">x <a href="https://b.example/">y</a></a>`,
		"<ul><li>one</li><li>two</li></ul><p>after</p>", "<h1>T</h1><table><tr><td>a</td><td>b</td></tr></table>",
		`<a href="#top">Top</a> <a href="javascript:x()">j</a> <a href="u">u</a> <a href="">e</a><a href="v"></a>`,
		"<head><title>T</title><style>p{}</style></head><body><script>x()</script><p>Body</p></body>",
		"&nbsp;x&nbsp;", "\v x \u00a0", "<td/><li/><a/>x</a></li></td>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if got, want := htmlToText(src), htmlToTextBefore(src); got != want {
			t.Fatalf("htmlToText(%q) = %q, before the split %q", src, got, want)
		}
	})
}
