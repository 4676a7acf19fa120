package templates

import (
	"regexp"
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
