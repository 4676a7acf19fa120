package templates

import (
	"bytes"
	"strings"
	"unicode"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlToText derives a plain-text body from HTML in one pass over the tokens of
// golang.org/x/net/html: block elements break lines, links keep their URL after their
// text ("text <url>", so the unsubscribe link survives), list items get a dash,
// script/style/head are dropped, entities are decoded, runs of white space collapse.
// A converter that runs regular expressions over every tag (the html2text package used
// before) took three times as long for a 10 KB newsletter.
//
// What each tag does is tagRule; what the text becomes is textConv. The text part
// derived once per campaign (textonce.go) runs the same two on the template source.
func htmlToText(src string) string {
	z := html.NewTokenizer(strings.NewReader(src))
	c := textConv{b: make([]byte, 0, len(src)/2)}
	skip := 0 // depth inside script/style/head/title
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return c.result()
		case html.TextToken:
			if skip == 0 {
				c.text(z.Text())
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			switch tagRule(atom.Lookup(name), tt) {
			case tagSkipOpen:
				skip++
			case tagSkipClose:
				if skip > 0 {
					skip--
				}
			case tagBreak1:
				c.brk(1)
			case tagBreak2:
				c.brk(2)
			case tagCell:
				c.space = true
			case tagItemOpen:
				c.item()
			case tagItemClose:
				c.brk(1)
			case tagLinkOpen:
				var href []byte
				for hasAttr {
					var k, v []byte
					k, v, hasAttr = z.TagAttr()
					if string(k) == "href" {
						href = v
					}
				}
				c.openLink(href)
			case tagLinkClose:
				c.closeLink()
			}
		}
	}
}

// A tagAction is what the converter does for one tag.
type tagAction uint8

const (
	tagNone      tagAction = iota
	tagSkipOpen            // text is dropped until the matching tagSkipClose
	tagSkipClose           //
	tagBreak1              // a line break before the next text
	tagBreak2              // a blank line before the next text
	tagCell                // a space before the next text
	tagItemOpen            // a line break and "- "
	tagItemClose           // a line break
	tagLinkOpen            // a link starts: its href is kept
	tagLinkClose           // the link ends: its URL follows its text
)

// tagRule is what the converter does for tag a, a start, self-closing or end tag.
func tagRule(a atom.Atom, tt html.TokenType) tagAction {
	end := tt == html.EndTagToken
	switch a {
	case atom.Script, atom.Style, atom.Head, atom.Title:
		switch tt {
		case html.StartTagToken:
			return tagSkipOpen
		case html.EndTagToken:
			return tagSkipClose
		}
	case atom.Br:
		return tagBreak1
	case atom.P, atom.Div, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6,
		atom.Table, atom.Blockquote, atom.Pre, atom.Ul, atom.Ol, atom.Hr:
		return tagBreak2
	case atom.Tr, atom.Dt, atom.Dd:
		return tagBreak1
	case atom.Td, atom.Th:
		if !end {
			return tagCell
		}
	case atom.Li:
		if !end {
			return tagItemOpen
		}
		return tagItemClose
	case atom.A:
		if !end {
			return tagLinkOpen
		}
		return tagLinkClose
	}
	return tagNone
}

// textConv is the converter's output and state: decoded text goes in, white space
// collapses, line breaks owed by block tags come out before the next text.
type textConv struct {
	b            []byte
	pendingBreak int  // newlines owed before the next text
	space        bool // a space is owed before the next text
	links        []openLink
	hrefs        []byte // the open links' URLs, one after the other
}

// openLink is a link whose end tag has not come yet.
type openLink struct {
	start int // len(b) when the link opened
	href  int // where its URL starts in hrefs (it ends where the next starts)
}

// reset empties c, keeping its buffers.
func (c *textConv) reset() {
	*c = textConv{b: c.b[:0], links: c.links[:0], hrefs: c.hrefs[:0]}
}

// sep writes what is owed before the next text: the line breaks, or else a space;
// nothing at the start of the output.
func (c *textConv) sep() {
	if len(c.b) > 0 {
		if c.pendingBreak > 0 {
			for i := 0; i < c.pendingBreak; i++ {
				c.b = append(c.b, '\n')
			}
		} else if c.space {
			c.b = append(c.b, ' ')
		}
	}
	c.pendingBreak = 0
	c.space = false
}

// emit writes s, which holds no white space but single spaces between words, after
// what is owed: the same as text(s).
func (c *textConv) emit(s string) {
	c.sep()
	c.b = append(c.b, s...)
}

// text adds decoded text: every run of white space becomes one owed space.
func (c *textConv) text(p []byte) {
	for _, ch := range p {
		if isSpace(ch) {
			c.space = true
			continue
		}
		if c.pendingBreak > 0 || c.space {
			c.sep()
		}
		c.b = append(c.b, ch) // the common case: inside a word
	}
}

// brk owes n line breaks (the most owed wins) and no space.
func (c *textConv) brk(n int) {
	if n > c.pendingBreak {
		c.pendingBreak = n
	}
	c.space = false
}

// item starts a list item: a line break and a dash.
func (c *textConv) item() {
	c.brk(1)
	c.emit("-")
	c.space = true
}

func (c *textConv) openLink(href []byte) {
	c.links = append(c.links, openLink{start: len(c.b), href: len(c.hrefs)})
	c.hrefs = append(c.hrefs, href...)
}

// closeLink ends the innermost open link: its URL follows in angle brackets unless the
// link's text shows it already, it is empty, or it points inside the page or to script.
func (c *textConv) closeLink() {
	if len(c.links) == 0 {
		return
	}
	l := c.links[len(c.links)-1]
	c.links = c.links[:len(c.links)-1]
	if href := c.hrefs[l.href:]; c.shows(l.start, href) {
		c.sep()
		c.b = append(c.b, '<')
		c.b = append(c.b, href...)
		c.b = append(c.b, '>')
	}
	c.hrefs = c.hrefs[:l.href]
}

// shows reports whether a link opened at start shows href after its text; a link with
// text gets a space before it.
func (c *textConv) shows(start int, href []byte) bool {
	if len(href) == 0 || href[0] == '#' || bytes.HasPrefix(href, []byte("javascript:")) {
		return false
	}
	if len(c.b) != start {
		if bytes.Contains(c.b[start:], href) {
			return false
		}
		c.space = true
	}
	return true
}

// result is the text, trimmed, with a final line break.
func (c *textConv) result() string {
	t := bytes.TrimSpace(c.b)
	if len(t) == 0 {
		return "\n"
	}
	var s strings.Builder
	s.Grow(len(t) + 1)
	s.Write(t)
	s.WriteByte('\n')
	return s.String()
}

// resultView is result as a view of c's buffer (which it changes): valid until c is
// reset.
func (c *textConv) resultView() string {
	t := bytes.TrimSpace(c.b)
	if len(t) == 0 {
		return "\n"
	}
	left := len(c.b) - len(bytes.TrimLeftFunc(c.b, unicode.IsSpace))
	c.b = append(c.b[:left+len(t)], '\n')
	return view(c.b[left:])
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }
