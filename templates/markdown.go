package templates

import (
	"bytes"
	"fmt"
	"html"
	"strconv"
	"strings"
	texttemplate "text/template"
	"text/template/parse"
	"unicode/utf8"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	east "github.com/yuin/goldmark/extension/ast"
	gmhtml "github.com/yuin/goldmark/renderer/html"
	"github.com/yuin/goldmark/text"
)

// Markdown bodies are rendered in two steps. The Go template runs first, with every value
// it prints Markdown-escaped (mdEscape is appended to each action's pipeline, as
// html/template appends its escapers): list data is shown as written and cannot add
// markup, whether HTML, Markdown or template syntax. The result is then parsed once by
// goldmark (CommonMark + GFM tables, strikethrough, autolinks), and both the HTML and the
// text part are built from that one parse. Parsing the Markdown before the template runs
// would break {{ if }} around headings and lists; because data is escaped, raw HTML that
// the author wrote in the .md file can be passed through safely.

// mdSafe is a value printed into Markdown unescaped: the UnsubscribeURL that herald
// built (an https URL of printable ASCII without <, > or quotes), so that it stays a
// working autolink.
type mdSafe string

const (
	mdEscapeFunc     = "_herald_mdescape"
	mdEscapeCodeFunc = "_herald_mdescape_code"
)

// mdEscapeCode prints a value inside a code span or a fenced code block, where
// backslashes are literal: white space runs become one space and a backtick becomes
// U+02CB (ˋ), which looks alike and cannot end the span or the fence.
func mdEscapeCode(v any) string {
	s, ok := v.(string)
	if !ok {
		if u, isSafe := v.(mdSafe); isSafe {
			return string(u)
		}
		s = fmt.Sprint(v)
	}
	return strings.ReplaceAll(strings.Join(strings.Fields(s), " "), "`", "\u02cb")
}

// mdEscape prints a value for a Markdown template: white space runs (line breaks too)
// become one space and leading/trailing space is dropped (so a value cannot start a code
// block, a list or a heading line), and every ASCII punctuation character gets a
// backslash (so it cannot open emphasis, a link, an HTML tag or an entity).
func mdEscape(v any) string {
	if s, ok := v.(mdSafe); ok {
		return string(s)
	}
	s, ok := v.(string)
	if !ok {
		s = fmt.Sprint(v)
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	space := false
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f' || r == '\v':
			space = true
			continue
		case space:
			b.WriteByte(' ')
			space = false
		}
		if r < utf8.RuneSelf && isASCIIPunct(byte(r)) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isASCIIPunct(c byte) bool {
	return c >= '!' && c <= '/' || c >= ':' && c <= '@' || c >= '[' && c <= '`' || c >= '{' && c <= '~'
}

// parseMarkdownTemplate parses a Markdown body template and makes each of its actions
// escape what it prints.
func parseMarkdownTemplate(name, src string) (*texttemplate.Template, error) {
	t, err := texttemplate.New(name).Option("missingkey=error").
		Funcs(texttemplate.FuncMap{mdEscapeFunc: mdEscape, mdEscapeCodeFunc: mdEscapeCode}).Parse(src)
	if err != nil {
		return nil, templateError(name, err)
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Tree.Root != nil {
			e := &mdEscaper{tree: tt.Tree}
			e.list(tt.Tree.Root)
		}
	}
	return t, nil
}

// mdEscaper appends an escaper to the pipeline of every action that prints: mdEscape, or
// mdEscapeCode for an action inside a code span or a fenced code block. The context is
// followed through the template's text in order (backticks on the current line, fence
// lines), as html/template follows HTML.
type mdEscaper struct {
	tree   *parse.Tree
	span   bool // inside a `code span` on the current line
	fence  bool // inside a ``` fenced block
	lineAt bool // at the start of a line
}

func (e *mdEscaper) text(s []byte) {
	for len(s) > 0 {
		line := s
		nl := bytes.IndexByte(s, '\n')
		if nl >= 0 {
			line = s[:nl]
		}
		trimmed := bytes.TrimLeft(line, " ")
		if e.lineAt && (bytes.HasPrefix(trimmed, []byte("```")) || bytes.HasPrefix(trimmed, []byte("~~~"))) {
			e.fence = !e.fence
		} else if !e.fence {
			for i := 0; i < len(line); i++ {
				if line[i] == '\\' {
					i++
				} else if line[i] == '`' {
					e.span = !e.span
				}
			}
		}
		if nl < 0 {
			e.lineAt = false
			return
		}
		if len(bytes.TrimSpace(line)) == 0 {
			e.span = false // a blank line ends a paragraph, and any open span
		}
		e.lineAt = true
		s = s[nl+1:]
	}
}

func (e *mdEscaper) list(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			e.text(n.Text)
		case *parse.ActionNode:
			if len(n.Pipe.Decl) == 0 {
				fn := mdEscapeFunc
				if e.span || e.fence {
					fn = mdEscapeCodeFunc
				}
				id := parse.NewIdentifier(fn).SetTree(e.tree).SetPos(n.Pos)
				n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
					NodeType: parse.NodeCommand, Pos: n.Pos, Args: []parse.Node{id},
				})
				e.lineAt = false
			}
		case *parse.IfNode:
			e.list(n.List)
			e.list(n.ElseList)
		case *parse.RangeNode:
			e.list(n.List)
			e.list(n.ElseList)
		case *parse.WithNode:
			e.list(n.List)
			e.list(n.ElseList)
		case *parse.ListNode:
			e.list(n)
		}
	}
}

// newMarkdown is the goldmark converter: CommonMark + GFM, raw HTML kept.
func newMarkdown() goldmark.Markdown {
	return goldmark.New(
		goldmark.WithExtensions(extension.GFM),
		goldmark.WithRendererOptions(gmhtml.WithUnsafe()),
	)
}

// renderMarkdown converts Markdown into an HTML fragment and its text part.
func renderMarkdown(md goldmark.Markdown, src []byte) (htmlOut, textOut string, err error) {
	doc := md.Parser().Parse(text.NewReader(src))
	var b bytes.Buffer
	b.Grow(len(src) * 3 / 2)
	if err := md.Renderer().Render(&b, src, doc); err != nil {
		return "", "", err
	}
	w := &mdTextWriter{src: src}
	lines := w.block(doc)
	return b.String(), strings.TrimSpace(strings.Join(lines, "\n")) + "\n", nil
}

// mdTextWriter builds the text part from the Markdown tree: headings underlined, links
// as "text (url)", lists with "- " or "1. ", quotes with "> ", code indented, tables as
// cells separated by " | ".
type mdTextWriter struct {
	src []byte
}

// block returns the lines of a block node.
func (w *mdTextWriter) block(n ast.Node) []string {
	switch n := n.(type) {
	case *ast.Document:
		return w.children(n, true)
	case *ast.Paragraph, *ast.TextBlock:
		return strings.Split(w.inline(n), "\n")
	case *ast.Heading:
		t := strings.TrimSpace(w.inline(n))
		u := "-"
		if n.Level == 1 {
			u = "="
		}
		return []string{t, strings.Repeat(u, min(78, max(3, utf8.RuneCountInString(t))))}
	case *ast.ThematicBreak:
		return []string{strings.Repeat("-", 20)}
	case *ast.CodeBlock, *ast.FencedCodeBlock:
		var out []string
		lines := n.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			out = append(out, "    "+strings.TrimRight(string(seg.Value(w.src)), "\r\n"))
		}
		return out
	case *ast.HTMLBlock:
		var b strings.Builder
		lines := n.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			b.Write(seg.Value(w.src))
		}
		if n.HasClosure() {
			b.Write(n.ClosureLine.Value(w.src))
		}
		t := strings.TrimSpace(htmlToText(b.String()))
		if t == "" {
			return nil
		}
		return strings.Split(t, "\n")
	case *ast.Blockquote:
		lines := w.children(n, true)
		for i, l := range lines {
			lines[i] = strings.TrimRight("> "+l, " ")
		}
		return lines
	case *ast.List:
		var out []string
		num := n.Start
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			marker := "- "
			if n.IsOrdered() {
				marker = strconv.Itoa(num) + ". "
				num++
			}
			if len(out) > 0 && !n.IsTight {
				out = append(out, "")
			}
			for i, l := range w.children(c, !n.IsTight) {
				switch {
				case i == 0:
					l = marker + l
				case l != "":
					l = strings.Repeat(" ", len(marker)) + l
				}
				out = append(out, l)
			}
		}
		return out
	case *east.Table:
		var out []string
		for r := n.FirstChild(); r != nil; r = r.NextSibling() {
			var cells []string
			for c := r.FirstChild(); c != nil; c = c.NextSibling() {
				cells = append(cells, strings.TrimSpace(strings.ReplaceAll(w.inline(c), "\n", " ")))
			}
			row := strings.Join(cells, " | ")
			out = append(out, row)
			if _, ok := r.(*east.TableHeader); ok {
				out = append(out, strings.Repeat("-", min(78, max(3, utf8.RuneCountInString(row)))))
			}
		}
		return out
	}
	if n.Type() == ast.TypeBlock {
		return w.children(n, true)
	}
	return strings.Split(w.inline(n), "\n")
}

// children joins the lines of child blocks, with a blank line between them when loose.
func (w *mdTextWriter) children(n ast.Node, loose bool) []string {
	var out []string
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		lines := w.block(c)
		if len(lines) == 0 {
			continue
		}
		if len(out) > 0 && loose {
			out = append(out, "")
		}
		out = append(out, lines...)
	}
	return out
}

// inline returns the text of an inline run.
func (w *mdTextWriter) inline(n ast.Node) string {
	var b strings.Builder
	w.inlineTo(&b, n)
	return b.String()
}

func (w *mdTextWriter) inlineTo(b *strings.Builder, n ast.Node) {
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		switch c := c.(type) {
		case *ast.Text:
			b.WriteString(mdUnescape(string(c.Segment.Value(w.src))))
			if c.HardLineBreak() || c.SoftLineBreak() {
				b.WriteByte('\n')
			}
		case *ast.String:
			if c.IsCode() || c.IsRaw() {
				b.Write(c.Value)
			} else {
				b.WriteString(mdUnescape(string(c.Value)))
			}
		case *ast.CodeSpan:
			for t := c.FirstChild(); t != nil; t = t.NextSibling() {
				if s, ok := t.(*ast.Text); ok {
					b.Write(s.Segment.Value(w.src))
				} else if s, ok := t.(*ast.String); ok {
					b.Write(s.Value)
				}
			}
		case *ast.Link:
			label := w.inline(c)
			dest := mdUnescape(string(c.Destination))
			b.WriteString(label)
			if dest != "" && dest != label && "mailto:"+label != dest && !strings.HasPrefix(dest, "#") {
				if label != "" {
					b.WriteByte(' ')
				}
				b.WriteString("(" + dest + ")")
			}
		case *ast.AutoLink:
			b.Write(c.URL(w.src))
		case *ast.Image:
			b.WriteString(w.inline(c)) // the alt text
		case *ast.RawHTML:
			// tags written in the .md file: the text part has no markup
		case *east.TaskCheckBox:
			if c.IsChecked {
				b.WriteString("[x] ")
			} else {
				b.WriteString("[ ] ")
			}
		default:
			w.inlineTo(b, c)
		}
	}
}

// mdUnescape resolves backslash escapes and entity references in Markdown text, as the
// HTML renderer does.
func mdUnescape(s string) string {
	if !strings.ContainsAny(s, `\&`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && isASCIIPunct(s[i+1]):
			b.WriteByte(s[i+1])
			i++
		case c == '&':
			if j := strings.IndexByte(s[i:], ';'); j > 1 && j < 40 {
				ent := s[i : i+j+1]
				if u := html.UnescapeString(ent); u != ent {
					b.WriteString(u)
					i += j
					continue
				}
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// builtinLayout frames a Markdown body that has no layout: a complete, responsive HTML
// document with a charset and a title, styled inline (no <style> to inline).
const builtinLayout = `<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ .Subject }}</title>
</head>
<body style="margin:0;padding:0;background-color:#f4f4f5;">
<div style="max-width:600px;margin:0 auto;padding:24px 16px;background-color:#ffffff;font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:16px;line-height:1.5;color:#1f2328;">
{{ .Body }}
</div>
</body>
</html>
`
