// Package preflight finds what mailbox providers punish before anything is sent: a DKIM
// domain not aligned with From (DMARC), an unsubscribe link without TLS, HTML that Gmail
// clips, images without alt text, links whose text shows another address, role addresses
// in the list. Its findings are warnings; `herald validate --strict` makes them errors.
package preflight

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/publicsuffix"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/providers"
)

// GmailClipBytes is the HTML size above which Gmail clips a message ("[Message clipped]"),
// hiding the rest, the unsubscribe link included.
const GmailClipBytes = 102 * 1024

// Finding is one warning.
type Finding struct {
	// Check names the check ("dmarc-alignment", "html-size", …).
	Check string
	// Message says what is wrong and where.
	Message string
}

func (f Finding) String() string { return f.Check + ": " + f.Message }

// Campaign checks the campaign file: DKIM alignment and presence for the smtp provider,
// and the unsubscribe URL's scheme.
func Campaign(c *campaign.Campaign) []Finding {
	var out []Finding
	fromDomain := ""
	if c.From != nil {
		if i := strings.LastIndexByte(c.From.Address, '@'); i >= 0 {
			fromDomain = strings.ToLower(c.From.Address[i+1:])
		}
	}
	if c.ProviderKind == "smtp" {
		var block struct {
			DKIM *struct {
				Domain string `yaml:"domain"`
			} `yaml:"dkim"`
		}
		if c.ProviderNode != nil {
			_ = c.ProviderNode.Decode(&block)
		}
		switch {
		case block.DKIM == nil || block.DKIM.Domain == "":
			out = append(out, Finding{"dkim", fmt.Sprintf("%s: the smtp provider has no dkim: block: mail from %s is not DKIM-signed by herald (sign at the relay, or add dkim:)", c.Path, fromDomain)})
		case fromDomain != "" && !Aligned(block.DKIM.Domain, fromDomain):
			out = append(out, Finding{"dmarc-alignment", fmt.Sprintf("%s: dkim.domain %s is not aligned with From's domain %s: DMARC needs the signing domain to be From's domain or share its organisational domain", c.Path, block.DKIM.Domain, fromDomain)})
		}
	}
	if u := c.UnsubscribeURL; u != "" && !strings.HasPrefix(strings.ToLower(u), "https://") {
		out = append(out, Finding{"unsubscribe-https", fmt.Sprintf("%s: unsubscribe.url %s is not https: mailbox providers expect a one-click link over TLS", c.Path, u)})
	}
	return out
}

// Aligned reports whether DKIM's signing domain d is aligned with the From domain
// under DMARC's relaxed alignment (RFC 7489 3.1.1): both have the same organisational
// domain (the registrable domain under the public suffix list).
func Aligned(d, from string) bool {
	d, from = strings.ToLower(strings.TrimSuffix(d, ".")), strings.ToLower(strings.TrimSuffix(from, "."))
	if d == from {
		return true
	}
	od, err1 := publicsuffix.EffectiveTLDPlusOne(d)
	of, err2 := publicsuffix.EffectiveTLDPlusOne(from)
	if err1 != nil || err2 != nil {
		return false
	}
	return od == of
}

// roleLocals are local parts that name a function rather than a person: mail to them
// reaches many people or none, and complaints from them weigh heavily.
var roleLocals = map[string]bool{
	"postmaster": true, "abuse": true, "noreply": true, "no-reply": true, "donotreply": true,
	"do-not-reply": true, "hostmaster": true, "webmaster": true, "mailer-daemon": true,
	"security": true, "root": true,
}

// List reports role addresses in the campaign's list (at most a few, then a count).
func List(ctx context.Context, c *campaign.Campaign, env campaign.Env) ([]Finding, error) {
	src := &campaign.Source{Campaign: c, Now: env.Now}
	var roles []string
	n := 0
	_, err := src.Scan(ctx, func(rc *campaign.Recipient) error {
		local := rc.Email
		if i := strings.LastIndexByte(local, '@'); i >= 0 {
			local = local[:i]
		}
		if roleLocals[strings.ToLower(local)] {
			n++
			if len(roles) < 5 {
				roles = append(roles, fmt.Sprintf("%s:%d %s", c.ListFile, rc.Line, rc.Email))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	more := ""
	if n > len(roles) {
		more = fmt.Sprintf(" and %d more", n-len(roles))
	}
	return []Finding{{"role-address", fmt.Sprintf("role addresses in the list (complaints from them weigh heavily): %s%s", strings.Join(roles, ", "), more)}}, nil
}

// Message checks a rendered sample message's HTML part.
func Message(m *providers.Message) []Finding {
	if m == nil || m.HTML == "" {
		return nil
	}
	var out []Finding
	if n := len(m.HTML); n > GmailClipBytes {
		out = append(out, Finding{"html-size", fmt.Sprintf("the HTML part is %d KB; Gmail clips messages over %d KB, hiding the rest (the unsubscribe link too)", n/1024, GmailClipBytes/1024)})
	}
	out = append(out, lintHTML(m.HTML)...)
	return out
}

// lintHTML checks a full HTML document for a title and a charset, images for alt text,
// and links whose text is a URL of another host than the link's (a phishing pattern).
func lintHTML(doc string) []Finding {
	var out []Finding
	z := html.NewTokenizer(strings.NewReader(doc))
	full, hasTitle, hasCharset := false, false, false
	noAlt := 0
	var href string
	var text bytes.Buffer
	inLink := false
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			switch tok.Data {
			case "html", "head":
				full = true
			case "title":
				hasTitle = true
			case "meta":
				for _, a := range tok.Attr {
					if a.Key == "charset" || (a.Key == "content" && strings.Contains(strings.ToLower(a.Val), "charset=")) {
						hasCharset = true
					}
				}
			case "img":
				alt := false
				for _, a := range tok.Attr {
					alt = alt || a.Key == "alt"
				}
				if !alt {
					noAlt++
				}
			case "a":
				inLink, href = true, ""
				text.Reset()
				for _, a := range tok.Attr {
					if a.Key == "href" {
						href = a.Val
					}
				}
			}
		case html.TextToken:
			if inLink {
				text.WriteString(tok.Data)
			}
		case html.EndTagToken:
			if tok.Data == "a" && inLink {
				inLink = false
				if f, ok := deceptiveLink(strings.TrimSpace(text.String()), href); ok {
					out = append(out, f)
				}
			}
		}
	}
	if full && !hasTitle {
		out = append(out, Finding{"html-title", "the HTML document has no <title>"})
	}
	if full && !hasCharset {
		out = append(out, Finding{"html-charset", "the HTML document declares no charset (<meta charset=\"utf-8\">)"})
	}
	if noAlt > 0 {
		out = append(out, Finding{"img-alt", fmt.Sprintf("%d image(s) without alt text", noAlt)})
	}
	return out
}

// deceptiveLink reports a link whose visible text is a URL (or host) of another host
// than the one it points to.
func deceptiveLink(text, href string) (Finding, bool) {
	if text == "" || href == "" || strings.ContainsAny(text, " \t\n") {
		return Finding{}, false
	}
	shown := text
	if !strings.Contains(shown, "://") {
		if !strings.HasPrefix(strings.ToLower(shown), "www.") {
			return Finding{}, false
		}
		shown = "https://" + shown
	}
	su, err1 := url.Parse(shown)
	hu, err2 := url.Parse(href)
	if err1 != nil || err2 != nil || su.Hostname() == "" || hu.Hostname() == "" {
		return Finding{}, false
	}
	if strings.EqualFold(su.Hostname(), hu.Hostname()) {
		return Finding{}, false
	}
	return Finding{"link-text", fmt.Sprintf("a link shows %s but points to %s (a phishing pattern to filters)", text, hu.Hostname())}, true
}

// Options choose what Run checks.
type Options struct {
	// Store is the journal (read only when it exists) for the sample's unsubscribe link.
	Store string
	// Row is the data row of the sample message (0: the first to send).
	Row int
}

// Sample renders the sample message: the recipient on o.Row, else the first to send.
func Sample(ctx context.Context, c *campaign.Campaign, o Options, env campaign.Env) (*providers.Message, error) {
	msgs, err := campaign.Preview(ctx, c, campaign.PreviewOptions{Limit: 1, Row: o.Row, Store: o.Store}, env)
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	return msgs[0], nil
}

// Run runs every check: the campaign file, a sample message and the list.
func Run(ctx context.Context, c *campaign.Campaign, o Options, env campaign.Env) ([]Finding, error) {
	out := Campaign(c)
	m, err := Sample(ctx, c, o, env)
	if err != nil {
		return nil, err
	}
	out = append(out, Message(m)...)
	lf, err := List(ctx, c, env)
	if err != nil {
		return nil, err
	}
	return append(out, lf...), nil
}
