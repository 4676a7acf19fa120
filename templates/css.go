package templates

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/andybalholm/cascadia"
	"github.com/vanng822/css"
	"github.com/vanng822/go-premailer/premailer"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// cssInliner moves the rules of an HTML document's <style> elements into style=""
// attributes with go-premailer. Rules it cannot inline (media queries, :hover and other
// pseudo-classes) stay in a <style> block in the head.
type cssInliner struct {
	opts *premailer.Options
}

func newCSSInliner() *cssInliner {
	return &cssInliner{opts: premailer.NewOptions()}
}

// inline returns doc with its CSS inlined.
func (c *cssInliner) inline(doc string) (string, error) {
	p, err := premailer.NewPremailerFromString(doc, c.opts)
	if err != nil {
		return "", err
	}
	return p.Transform()
}

// hasStyleElement reports whether an HTML source has a <style> element.
func hasStyleElement(src string) bool {
	if !strings.Contains(strings.ToLower(src), "<style") {
		return false
	}
	z := html.NewTokenizer(strings.NewReader(src))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return false
		case html.StartTagToken, html.SelfClosingTagToken:
			if name, _ := z.TagName(); atom.Lookup(name) == atom.Style {
				return true
			}
		}
	}
}

// The selectors go-premailer keeps in a <style> block rather than inlining (its own
// rules), which many mail clients ignore.
var (
	keptSelector = regexp.MustCompile(`(?i)\:{1,2}(visited|active|hover|focus|link|root|in-range|invalid|valid|after|before|selection|target|first\-(line|letter))|^\@|\*`)
	lostSelector = regexp.MustCompile(`(?i)\:(checked|disabled|enabled|lang)`)
)

// cssWarnings lists what inlining cannot carry over from the <style> elements of an
// HTML source: selectors that stay in a <style> block (pseudo-classes, *), selectors
// that cannot be inlined or parsed, and <style media=…> elements (left as they are).
// Media queries are kept in a <style> block, as intended, and are not reported.
func cssWarnings(file, src string) []string {
	var out []string
	z := html.NewTokenizer(strings.NewReader(src))
	inStyle := false
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return out
		case html.StartTagToken:
			name, hasAttr := z.TagName()
			if atom.Lookup(name) != atom.Style {
				continue
			}
			inStyle = true
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				if string(k) == "media" && string(v) != "all" {
					out = append(out, file+": <style media=\""+string(v)+"\"> is not inlined (it stays as it is)")
				}
			}
		case html.EndTagToken:
			inStyle = false
		case html.TextToken:
			if !inStyle {
				continue
			}
			for _, rule := range css.Parse(string(z.Text())).GetCSSRuleList() {
				if rule.Type != css.STYLE_RULE {
					continue
				}
				for _, sel := range strings.Split(rule.Style.Selector.Text(), ",") {
					sel = strings.TrimSpace(sel)
					switch {
					case lostSelector.MatchString(sel) || keptSelector.MatchString(sel):
						out = append(out, file+": CSS selector "+sel+" cannot be inlined: it stays in a <style> block, which Gmail and Outlook may ignore")
					default:
						if _, err := cascadia.Compile(sel); err != nil {
							out = append(out, file+": CSS selector "+sel+" is not supported by the inliner: its rule is dropped")
						}
					}
				}
			}
		}
	}
}

// Inlining once per campaign. go-premailer works on an HTML document, not on template
// source: actions inside a tag become junk attributes, and {{ if }}…{{ end }} between
// table rows is moved out of the table by the HTML parser. So the source is inlined on a
// copy where every action is a placeholder, and the result is used only when (1) the
// placeholders come back in the same places relative to the tags, and (2) a sample
// recipient renders the same both ways. Otherwise every message is inlined on its own.

var actionRe = regexp.MustCompile(`(?s)\{\{.*?\}\}`)

// placeholder is the stand-in for action i: lower-case letters and digits, which the HTML
// parser and the CSS inliner leave alone in text and attribute values.
func placeholder(i int) string { return "heraldph" + strconv.Itoa(i) + "x" }

var placeholderRe = regexp.MustCompile(`heraldph[0-9]+x`)

// inlineSource inlines the CSS of template source src once, as described above; ok is
// false when the source cannot be inlined safely that way.
func (c *cssInliner) inlineSource(src string) (out string, ok bool) {
	if placeholderRe.MatchString(src) {
		return "", false
	}
	var actions []string
	copySrc := actionRe.ReplaceAllStringFunc(src, func(a string) string {
		actions = append(actions, a)
		return placeholder(len(actions) - 1)
	})
	inlined, err := c.inline(copySrc)
	if err != nil {
		return "", false
	}
	if !sameSkeleton(copySrc, inlined) {
		return "", false
	}
	seen := make([]bool, len(actions))
	out = placeholderRe.ReplaceAllStringFunc(inlined, func(p string) string {
		i, _ := strconv.Atoi(p[len("heraldph") : len(p)-1])
		if i >= len(actions) || seen[i] {
			ok = false
			return p
		}
		seen[i] = true
		return actions[i]
	})
	for _, s := range seen {
		if !s {
			return "", false
		}
	}
	return out, true
}

// skeleton is the sequence of tag names and placeholders of an HTML document, without
// the elements the parser or the inliner add or move (html, head, body, tbody, style)
// and without attributes other than placeholders in their values.
func skeleton(doc string) []string {
	var out []string
	z := html.NewTokenizer(strings.NewReader(doc))
	inStyle := false
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return out
		case html.TextToken:
			if !inStyle {
				out = append(out, placeholderRe.FindAllString(string(z.Text()), -1)...)
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			a := atom.Lookup(name)
			if a == atom.Style {
				inStyle = tt == html.StartTagToken
				continue
			}
			switch a {
			case atom.Html, atom.Head, atom.Body, atom.Tbody:
				continue
			}
			if tt == html.EndTagToken {
				out = append(out, "/"+string(name))
				continue
			}
			out = append(out, string(name))
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				if placeholderRe.Match(k) {
					out = append(out, "attr-name") // an action inside a tag: cannot be kept
				}
				if string(k) != "style" {
					for _, p := range placeholderRe.FindAllString(string(v), -1) {
						out = append(out, string(k)+"="+p)
					}
				}
			}
		case html.CommentToken:
			out = append(out, placeholderRe.FindAllString(string(z.Text()), -1)...)
		}
	}
}

// sameSkeleton reports whether inlining kept every tag and placeholder where it was.
func sameSkeleton(before, after string) bool {
	a, b := skeleton(before), skeleton(after)
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// normalizeHTML parses and serialises a document, so that two renderings that differ
// only in how characters are escaped compare equal.
func normalizeHTML(doc string) string {
	n, err := html.Parse(strings.NewReader(doc))
	if err != nil {
		return doc
	}
	var b strings.Builder
	if err := html.Render(&b, n); err != nil {
		return doc
	}
	return b.String()
}

// A Markdown body in a styled layout exists only per message, so the layout's rules for
// it cannot be inlined into the template source. But goldmark writes a small set of bare
// tags (<p>, <h2>, <li>, <td>, …): each is given, once per campaign, the attributes the
// inliner gives it inside the layout (found on a probe body with one of each), and every
// message's body gets them by a string replacement. As for the source, this is used only
// when the sample recipient comes out the same as inlining the whole message.

var mdProbeTags = []string{"h1", "h2", "h3", "h4", "h5", "h6", "p", "ul", "ol", "li", "blockquote",
	"pre", "code", "em", "strong", "del", "hr", "table", "thead", "tbody", "tr", "th", "td"}

// mdProbe is a body with one of each tag goldmark writes, each marked data-hp.
const mdProbe = `<h1 data-hp>x</h1><h2 data-hp>x</h2><h3 data-hp>x</h3><h4 data-hp>x</h4><h5 data-hp>x</h5><h6 data-hp>x</h6>` +
	`<p data-hp>x <a data-hp href="#">x</a> <em data-hp>x</em> <strong data-hp>x</strong> <code data-hp>x</code> <del data-hp>x</del> <img data-hp src="#" alt=""></p>` +
	`<ul data-hp><li data-hp>x</li></ul><ol data-hp><li>x</li></ol><blockquote data-hp><p>x</p></blockquote><pre data-hp><code>x</code></pre><hr data-hp>` +
	`<table data-hp><thead data-hp><tr data-hp><th data-hp>x</th></tr></thead><tbody data-hp><tr><td data-hp>x</td></tr></tbody></table>`

// tagReplacer reads the inlined probe document and returns the replacement that gives
// goldmark's bare tags their attributes; nil when no tag gets any.
func tagReplacer(inlinedProbe string) *strings.Replacer {
	attrs := map[string]string{}
	z := html.NewTokenizer(strings.NewReader(inlinedProbe))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		name, hasAttr := z.TagName()
		var b strings.Builder
		probe := false
		for hasAttr {
			var k, v []byte
			k, v, hasAttr = z.TagAttr()
			switch string(k) {
			case "data-hp":
				probe = true
			case "href", "src", "alt":
			default:
				b.WriteString(" " + string(k) + `="` + html.EscapeString(string(v)) + `"`)
			}
		}
		if _, seen := attrs[string(name)]; probe && !seen {
			attrs[string(name)] = b.String()
		}
	}
	var pairs []string
	for _, t := range mdProbeTags {
		if a := attrs[t]; a != "" {
			pairs = append(pairs, "<"+t+">", "<"+t+a+">")
		}
	}
	if a := attrs["a"]; a != "" {
		pairs = append(pairs, `<a href="`, "<a"+a+` href="`)
	}
	if a := attrs["img"]; a != "" {
		pairs = append(pairs, `<img src="`, "<img"+a+` src="`)
	}
	if a := attrs["hr"]; a != "" {
		pairs = append(pairs, "<hr />", "<hr"+a+" />", "<hr/>", "<hr"+a+"/>")
	}
	if len(pairs) == 0 {
		return nil
	}
	return strings.NewReplacer(pairs...)
}

var structural = regexp.MustCompile(`(?i):(first|last|nth|only|empty|not|has|is|where)|[+~]`)

// probeSafe reports whether the rules of a layout's <style> elements style a Markdown
// body's tags the same wherever they stand: no structural pseudo-classes or sibling
// combinators, and no selector that picks a tag by a body tag around it (`blockquote p`,
// `li > p`). Descendants of the layout's own elements (`.frame p`) are fine.
func probeSafe(layout string) bool {
	isProbe := map[string]bool{"a": true, "img": true}
	for _, t := range mdProbeTags {
		isProbe[t] = true
	}
	z := html.NewTokenizer(strings.NewReader(layout))
	inStyle := false
	for {
		switch z.Next() {
		case html.ErrorToken:
			return true
		case html.StartTagToken:
			name, _ := z.TagName()
			inStyle = atom.Lookup(name) == atom.Style
		case html.EndTagToken:
			inStyle = false
		case html.TextToken:
			if !inStyle {
				continue
			}
			for _, rule := range css.Parse(string(z.Text())).GetCSSRuleList() {
				if rule.Type != css.STYLE_RULE {
					continue
				}
				for _, sel := range strings.Split(rule.Style.Selector.Text(), ",") {
					if structural.MatchString(sel) {
						return false
					}
					parts := strings.Fields(strings.ReplaceAll(sel, ">", " "))
					for _, p := range parts[:max(0, len(parts)-1)] {
						tag := strings.ToLower(p)
						if i := strings.IndexAny(tag, ".#[:"); i >= 0 {
							tag = tag[:i]
						}
						if isProbe[tag] {
							return false
						}
					}
				}
			}
		}
	}
}
