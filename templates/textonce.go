package templates

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	htmltemplate "html/template"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/template/parse"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// The text part of an HTML-only campaign, derived once per campaign.
//
// Deriving the text part from each recipient's rendered HTML tokenises the whole page
// for every message, though most of the page is the template's own text, the same for
// everyone. So once per campaign the HTML template's source is converted with every
// action standing in as a token, and what each piece of static source does to the text
// (words, line breaks, links opening and closing) is compiled into steps. A copy of the
// template whose static text is replaced by markers naming those steps then runs for
// each message instead of the template: it writes the markers and the values of the
// actions, escaped as html/template escapes them. For each marker the HTML gets the
// static text it stands for and the converter's state machine (textConv, the one
// htmlToText uses) runs the steps; a value goes into the HTML as it is and into the
// text decoded, as the HTML tokenizer decodes it, so white space collapses across values
// and static text, an empty value owes nothing, a link shows its URL unless its text
// does. One execution gives both parts, and the text is the per-message derivation by
// construction: the same escapers, the same control flow, the same state machine.
//
// It applies when the tokenizer reads the page the same whatever the values: actions in
// text, in attribute values (a value in an <a>'s href is part of the URL shown), or
// inside <head>, <title>, <script> and <style>, whose text is not shown; {{ if }} and
// {{ range }} between tags and in text. Otherwise every message's text is derived from
// its HTML: an action in a tag or attribute name, {{ if }} inside a tag, an element
// whose content the tokenizer reads raw (<script>, <style>, <textarea>, …) or that
// hides text (<head>, <title>) opened or closed inside {{ if }} or {{ range }},
// {{ template }} or {{ define }}, a value shown from <textarea>, an unquoted href, a
// comment, and an action right after "&" or "<" (it could complete an entity or a tag).

// tokenPrefix starts the stand-in of template node i in the source: "heraldtx" i "x".
const tokenPrefix = "heraldtx"

// markerPrefix starts a marker: no escaped value starts with a NUL byte (every escaper
// of html/template replaces it), and 0xff is never valid UTF-8.
const markerPrefix = "\x00\xff"

// textOnce is the compiled text part of an HTML template.
type textOnce struct {
	t      *htmltemplate.Template // the copy whose static text is markers
	steps  [][]step               // by marker
	static [][]byte               // by marker: the static HTML it stands for
	slots  int                    // values in link URLs
	runs   sync.Pool              // *textRun
}

type stepKind uint8

const (
	stepNone   stepKind = iota
	stepWords           // s: words separated by single spaces
	stepSpace           // white space
	stepBreak           // n line breaks owed
	stepItem            // a list item starts
	stepOpen            // a link with URL href opens
	stepClose           // the innermost link closes
	stepValue           // the writes up to the next marker are a value shown as text
	stepSlot            // … a value in a link's URL, kept in slot n
	stepIgnore          // … a value not shown
)

type step struct {
	kind stepKind
	n    int
	s    string
	href []hrefPart
}

// hrefPart is a piece of a link's URL: static text, or the value in a slot (slot >= 0).
type hrefPart struct {
	s    string
	slot int
}

// node kinds of the template, in the order of the source.
type tokKind uint8

const (
	tokText  tokKind = iota // static text (a marker)
	tokValue                // an action that prints (a marker)
	tokOpen                 // {{ if }}, {{ range }}, {{ with }}
	tokElse                 // {{ else }}
	tokEnd                  // {{ end }}
	tokOther                // {{ break }}, {{ continue }}
)

type tmplTok struct {
	kind   tokKind
	marker int
	action *parse.ActionNode
}

// errMarker is a write the steps do not explain; the message's text is then derived
// from its HTML.
var errMarker = errors.New("derived text: unexpected template output")

// compileTextOnce compiles the text part of HTML template source src (file names it),
// escaped by running it once on data; ok is false where the text must be derived from
// each message's HTML.
func compileTextOnce(file, src string, data map[string]string) (_ *textOnce, ok bool) {
	if strings.Contains(src, tokenPrefix) {
		return nil, false
	}
	t, err := htmltemplate.New(file).Option("missingkey=error").Parse(src)
	if err != nil || len(t.Templates()) != 1 {
		return nil, false
	}
	// Executing escapes the template: its tree then holds the escapers of each action.
	if err := t.Execute(io.Discard, data); err != nil {
		return nil, false
	}
	w := &onceWalker{}
	if !w.list(t.Tree.Root) {
		return nil, false
	}
	doc := w.doc.String()
	if !tokensStandAlone(doc) {
		return nil, false
	}
	c := &onceCompiler{toks: w.toks, steps: make([][]step, w.markers), seen: make([]bool, len(w.toks)), cur: -1}
	if !c.compile(doc) {
		return nil, false
	}
	o := &textOnce{t: t, steps: c.steps, static: make([][]byte, w.markers), slots: w.markers}
	for _, e := range w.edits {
		if e.text != nil {
			o.static[e.marker] = e.text.Text
		}
		e.apply()
	}
	o.runs.New = func() any { return &textRun{o: o, slots: make([][]byte, o.slots)} }
	return o, true
}

func token(i int) string { return tokenPrefix + strconv.Itoa(i) + "x" }

func marker(m int) []byte { return binary.AppendUvarint([]byte(markerPrefix), uint64(m)) }

// onceWalker lists the nodes of an escaped template tree in source order, writes the
// source with a token for each node, and prepares the edits that make the copy.
type onceWalker struct {
	doc     strings.Builder
	toks    []tmplTok
	markers int
	edits   []edit
}

// An edit of the tree, applied once compiling succeeded: the static text of a node
// becomes its marker, or a list gets a marker before each printing action.
type edit struct {
	text   *parse.TextNode
	marker int
	list   *parse.ListNode
	nodes  []parse.Node
}

func (e edit) apply() {
	if e.list != nil {
		e.list.Nodes = e.nodes
	} else {
		e.text.Text = marker(e.marker)
	}
}

func (w *onceWalker) tok(k tokKind, a *parse.ActionNode) int {
	w.doc.WriteString(token(len(w.toks)))
	m := -1
	if k == tokText || k == tokValue {
		m = w.markers
		w.markers++
	}
	w.toks = append(w.toks, tmplTok{kind: k, marker: m, action: a})
	return m
}

func (w *onceWalker) list(l *parse.ListNode) bool {
	if l == nil {
		return true
	}
	nodes := make([]parse.Node, 0, len(l.Nodes))
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			m := w.tok(tokText, nil)
			w.doc.Write(n.Text)
			w.edits = append(w.edits, edit{text: n, marker: m})
			nodes = append(nodes, n)
		case *parse.ActionNode:
			if len(n.Pipe.Decl) == 0 {
				m := w.tok(tokValue, n)
				nodes = append(nodes, &parse.TextNode{NodeType: parse.NodeText, Pos: n.Pos, Text: marker(m)})
			}
			nodes = append(nodes, n)
		case *parse.IfNode:
			if !w.branch(&n.BranchNode) {
				return false
			}
			nodes = append(nodes, n)
		case *parse.RangeNode:
			if !w.branch(&n.BranchNode) {
				return false
			}
			nodes = append(nodes, n)
		case *parse.WithNode:
			if !w.branch(&n.BranchNode) {
				return false
			}
			nodes = append(nodes, n)
		case *parse.BreakNode, *parse.ContinueNode:
			w.tok(tokOther, nil)
			nodes = append(nodes, n)
		case *parse.CommentNode:
			nodes = append(nodes, n)
		default: // {{ template }}: another template's HTML
			return false
		}
	}
	w.edits = append(w.edits, edit{list: l, nodes: nodes})
	return true
}

func (w *onceWalker) branch(b *parse.BranchNode) bool {
	w.tok(tokOpen, nil)
	if !w.list(b.List) {
		return false
	}
	if b.ElseList != nil {
		w.tok(tokElse, nil)
		if !w.list(b.ElseList) {
			return false
		}
	}
	w.tok(tokEnd, nil)
	return true
}

// tokensStandAlone reports whether no token of doc could, in the page, become part of
// an entity or a tag with the text before it ("&am" + "p;", "<" + "p>", "</scr" +
// "ipt>"), or join a CR before it with a LF after it.
func tokensStandAlone(doc string) bool {
	for i := 0; ; {
		j := strings.Index(doc[i:], tokenPrefix)
		if j < 0 {
			return true
		}
		at := i + j
		i = at + len(tokenPrefix)
		if at > 0 && doc[at-1] == '\r' {
			return false
		}
		k := at
		for k > 0 && isAlnum(doc[k-1]) {
			k--
		}
		if k > 0 && (doc[k-1] == '&' || doc[k-1] == '#') {
			return false
		}
		if k > 0 && doc[k-1] == '<' || k > 1 && (doc[k-1] == '/' || doc[k-1] == '!') && doc[k-2] == '<' {
			return false
		}
	}
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// onceCompiler turns the tokenised source into the steps of each marker.
type onceCompiler struct {
	toks    []tmplTok
	steps   [][]step
	seen    []bool
	cur     int    // the marker of the static text being read
	pending []byte // its text not yet made into steps
	depth   int    // {{ if }}, {{ range }}, {{ with }} around
	skip    int    // inside head, title, script, style: text not shown
}

// compile reads the tokenised source as htmlToText does; false where a token stands
// somewhere the steps cannot account for.
func (c *onceCompiler) compile(doc string) bool {
	z := html.NewTokenizer(strings.NewReader(doc))
	raw := false // the text token is the content of an element read raw
	for {
		tt := z.Next()
		inRaw := raw
		raw = false
		switch tt {
		case html.ErrorToken:
			if z.Err() != io.EOF || !c.flush() {
				return false
			}
			for _, s := range c.seen {
				if !s {
					return false
				}
			}
			return c.depth == 0
		case html.TextToken:
			if !c.text(z.Text(), inRaw) {
				return false
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			if !c.flush() {
				return false
			}
			name, hasAttr := z.TagName()
			if bytes.Contains(name, []byte(tokenPrefix)) {
				return false
			}
			a := atom.Lookup(name)
			var href []hrefPart
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				if bytes.Contains(k, []byte(tokenPrefix)) {
					return false
				}
				isHref := a == atom.A && string(k) == "href"
				parts, ok := c.attr(v, isHref)
				if !ok {
					return false
				}
				if isHref {
					href = parts
				}
			}
			switch a {
			case atom.Iframe, atom.Noembed, atom.Noframes, atom.Noscript, atom.Plaintext,
				atom.Script, atom.Style, atom.Textarea, atom.Title, atom.Xmp:
				// Its content is read raw: the element must not start or end in a branch.
				if c.depth > 0 {
					return false
				}
				raw = tt != html.EndTagToken
			case atom.Head:
				if c.depth > 0 {
					return false
				}
			}
			if !c.tag(tagRule(a, tt), href) {
				return false
			}
		case html.CommentToken, html.DoctypeToken:
			if bytes.Contains(z.Text(), []byte(tokenPrefix)) {
				return false
			}
		}
	}
}

// tag adds the steps of a tag.
func (c *onceCompiler) tag(r tagAction, href []hrefPart) bool {
	var st step
	switch r {
	case tagNone:
		return true
	case tagSkipOpen:
		c.skip++
		return true
	case tagSkipClose:
		if c.skip > 0 {
			c.skip--
		}
		return true
	case tagBreak1, tagItemClose:
		st = step{kind: stepBreak, n: 1}
	case tagBreak2:
		st = step{kind: stepBreak, n: 2}
	case tagCell:
		st = step{kind: stepSpace}
	case tagItemOpen:
		st = step{kind: stepItem}
	case tagLinkOpen:
		st = step{kind: stepOpen, href: href}
	case tagLinkClose:
		st = step{kind: stepClose}
	}
	if c.cur < 0 {
		return false
	}
	c.steps[c.cur] = append(c.steps[c.cur], st)
	return true
}

// scan calls piece for the text between tokens and token for each token of p, with
// the byte before it (0 at the start of p).
func scan(p []byte, piece func([]byte), token func(i int, prev byte) bool) bool {
	prev := byte(0)
	for {
		j := bytes.Index(p, []byte(tokenPrefix))
		if j < 0 {
			if len(p) > 0 {
				piece(p)
			}
			return true
		}
		if j > 0 {
			piece(p[:j])
		}
		k := j + len(tokenPrefix)
		n := 0
		for k < len(p) && '0' <= p[k] && p[k] <= '9' {
			n = n*10 + int(p[k]-'0')
			k++
			if n > 1<<30 {
				return false
			}
		}
		if j > 0 {
			prev = p[j-1]
		}
		if k == j+len(tokenPrefix) || k >= len(p) || p[k] != 'x' || !token(n, prev) {
			return false
		}
		p = p[k+1:]
		prev = 'x'
	}
}

// use marks token i seen (once).
func (c *onceCompiler) use(i int) (tmplTok, bool) {
	if i >= len(c.toks) || c.seen[i] {
		return tmplTok{}, false
	}
	c.seen[i] = true
	return c.toks[i], true
}

// text reads a text token; raw: the content of an element read without decoding.
func (c *onceCompiler) text(p []byte, raw bool) bool {
	return scan(p, func(piece []byte) {
		if c.skip == 0 {
			c.pending = append(c.pending, piece...)
		}
	}, func(i int, prev byte) bool {
		if !c.flush() {
			return false
		}
		t, ok := c.use(i)
		if !ok {
			return false
		}
		if raw && prev != 0 && strings.IndexByte("<!/-", prev) >= 0 {
			return false // could end the raw text, or start a comment in a script
		}
		switch t.kind {
		case tokText:
			c.cur = t.marker
		case tokValue:
			switch {
			case c.skip > 0:
				c.steps[t.marker] = []step{{kind: stepIgnore}}
			case raw || !escapedWith(t.action, "_html_template_htmlescaper"):
				return false
			default:
				c.steps[t.marker] = []step{{kind: stepValue}}
			}
		case tokOpen:
			c.depth++
		case tokEnd:
			c.depth--
		}
		return true
	})
}

// attr reads an attribute value: the parts of the URL of a link (isHref), values
// ignored elsewhere.
func (c *onceCompiler) attr(v []byte, isHref bool) ([]hrefPart, bool) {
	var parts []hrefPart
	ok := scan(v, func(piece []byte) {
		if isHref {
			parts = append(parts, hrefPart{s: string(piece), slot: -1})
		}
	}, func(i int, _ byte) bool {
		t, ok := c.use(i)
		if !ok {
			return false
		}
		switch t.kind {
		case tokText:
			c.cur = t.marker
		case tokValue:
			if !isHref {
				c.steps[t.marker] = []step{{kind: stepIgnore}}
				return true
			}
			if !escapedWith(t.action, "_html_template_attrescaper") {
				return false // an unquoted href
			}
			c.steps[t.marker] = []step{{kind: stepSlot, n: t.marker}}
			parts = append(parts, hrefPart{slot: t.marker})
		default:
			return false // {{ if }} inside a tag
		}
		return true
	})
	if isHref && parts == nil {
		parts = []hrefPart{} // an empty href
	}
	return parts, ok
}

// escapedWith reports whether action a ends in escaper esc (or the equivalent "html"):
// its output, decoded, is then its value as the HTML tokenizer reads it.
func escapedWith(a *parse.ActionNode, esc string) bool {
	cmds := a.Pipe.Cmds
	if len(cmds) == 0 || len(cmds[len(cmds)-1].Args) == 0 {
		return false
	}
	id, ok := cmds[len(cmds)-1].Args[0].(*parse.IdentifierNode)
	return ok && (id.Ident == esc || id.Ident == "html")
}

// flush makes the pending text into steps of the current marker.
func (c *onceCompiler) flush() bool {
	if len(c.pending) == 0 {
		return true
	}
	if c.cur < 0 {
		return false
	}
	c.steps[c.cur] = appendWords(c.steps[c.cur], c.pending)
	c.pending = c.pending[:0]
	return true
}

// appendWords adds the steps of decoded text p: white space at either end, and the
// words between with single spaces (what textConv.text does with p).
func appendWords(steps []step, p []byte) []step {
	var words []byte
	space := false
	for _, ch := range p {
		if isSpace(ch) {
			space = true
			continue
		}
		if space && len(words) > 0 {
			words = append(words, ' ')
		}
		space = false
		words = append(words, ch)
	}
	lead := isSpace(p[0])
	last := stepNone
	if len(steps) > 0 {
		last = steps[len(steps)-1].kind
	}
	if lead && last != stepSpace {
		steps = append(steps, step{kind: stepSpace})
	}
	if len(words) == 0 {
		return steps
	}
	if last == stepWords && !lead {
		steps[len(steps)-1].s += string(words)
	} else {
		steps = append(steps, step{kind: stepWords, s: string(words)})
	}
	if isSpace(p[len(p)-1]) {
		steps = append(steps, step{kind: stepSpace})
	}
	return steps
}

// textRun is one message's rendering: the writer the marked template runs into.
type textRun struct {
	o      *textOnce
	ctx    context.Context
	html   []byte
	conv   textConv
	mode   stepKind // what the writes since the last marker are: stepValue, stepSlot, stepIgnore
	slot   int
	val    []byte
	slots  [][]byte
	writes int
}

// render renders the HTML body and derives its text part for data.
// With views, the HTML and text are views of run's buffers and run is returned: the
// caller puts it back into o.runs once it no longer uses them (otherwise run is nil).
func (o *textOnce) render(ctx context.Context, data map[string]string, views bool) (run *textRun, htmlBody, text string, err error) {
	r := o.runs.Get().(*textRun)
	if views {
		run = r
	} else {
		defer o.runs.Put(r)
	}
	r.ctx, r.html, r.mode, r.val, r.writes = ctx, r.html[:0], stepNone, r.val[:0], 0
	r.conv.reset()
	if err := o.t.Execute(r, data); err != nil {
		return run, "", "", err
	}
	r.flush()
	if views {
		return run, view(r.html), r.conv.resultView(), nil
	}
	return nil, string(r.html), r.conv.result(), nil
}

func (r *textRun) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, []byte(markerPrefix)) {
		if len(r.html)+len(p) > MaxBodyOutput {
			return 0, errTooLong{MaxBodyOutput}
		}
		r.html = append(r.html, p...)
		switch r.mode {
		case stepNone:
			return 0, errMarker
		case stepIgnore:
		default:
			r.val = append(r.val, p...)
		}
		return len(p), nil
	}
	m, n := binary.Uvarint(p[len(markerPrefix):])
	if n <= 0 || m >= uint64(len(r.o.steps)) {
		return 0, errMarker
	}
	r.flush()
	static := r.o.static[m]
	if len(r.html)+len(static) > MaxBodyOutput {
		return 0, errTooLong{MaxBodyOutput}
	}
	r.html = append(r.html, static...)
	r.run(r.o.steps[m])
	// Checking the context costs a lock; every 64th marker is often enough.
	if r.writes++; r.writes%64 == 0 {
		if err := r.ctx.Err(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flush takes in the value written since the last marker.
func (r *textRun) flush() {
	switch r.mode {
	case stepValue:
		r.conv.text(decode(r.val))
	case stepSlot:
		r.slots[r.slot] = append(r.slots[r.slot][:0], decode(r.val)...)
	}
	r.mode, r.val = stepNone, r.val[:0]
}

// decode undoes the escaping of a value, as the HTML tokenizer does.
func decode(v []byte) []byte {
	if bytes.IndexByte(v, '&') < 0 {
		return v
	}
	return []byte(html.UnescapeString(string(v)))
}

func (r *textRun) run(steps []step) {
	c := &r.conv
	for i := range steps {
		st := &steps[i]
		switch st.kind {
		case stepWords:
			c.emit(st.s)
		case stepSpace:
			c.space = true
		case stepBreak:
			c.brk(st.n)
		case stepItem:
			c.item()
		case stepOpen:
			c.openLink(nil)
			for _, p := range st.href {
				if p.slot < 0 {
					c.hrefs = append(c.hrefs, p.s...)
				} else {
					c.hrefs = append(c.hrefs, r.slots[p.slot]...)
				}
			}
		case stepClose:
			c.closeLink()
		default:
			r.mode, r.slot = st.kind, st.n
		}
	}
}
