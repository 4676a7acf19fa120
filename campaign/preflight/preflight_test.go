package preflight

import (
	"net/mail"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/providers"
)

func TestAligned(t *testing.T) {
	cases := []struct {
		d, from string
		want    bool
	}{
		{"acme.example", "acme.example", true},
		{"acme.com", "news.acme.com", true},
		{"mail.acme.com", "acme.com", true},
		{"ACME.com.", "acme.com", true},
		{"esp-sender.net", "acme.com", false},
		{"acme.co.uk", "news.other.co.uk", false},
		{"co.uk", "acme.co.uk", false},
	}
	for _, tc := range cases {
		if got := Aligned(tc.d, tc.from); got != tc.want {
			t.Errorf("Aligned(%q, %q) = %v, want %v", tc.d, tc.from, got, tc.want)
		}
	}
}

func smtpCampaign(t *testing.T, block string) *campaign.Campaign {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(block), &n); err != nil {
		t.Fatal(err)
	}
	return &campaign.Campaign{Path: "c.yaml", From: &mail.Address{Address: "news@acme.com"}, ProviderKind: "smtp",
		ProviderNode: n.Content[0], UnsubscribeURL: "https://acme.com/u"}
}

func checks(fs []Finding) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.Check)
	}
	return strings.Join(s, ",")
}

// TestCampaignDMARCAlignment: a dkim.domain unrelated to From's domain is warned about;
// before, validate passed it silently.
func TestCampaignDMARCAlignment(t *testing.T) {
	if got := checks(Campaign(smtpCampaign(t, "host: h\ndkim: {domain: esp-sender.net, selector: s, private_key_file: k.pem}\n"))); got != "dmarc-alignment" {
		t.Errorf("unaligned: findings %q", got)
	}
	if got := checks(Campaign(smtpCampaign(t, "host: h\ndkim: {domain: acme.com, selector: s, private_key_file: k.pem}\n"))); got != "" {
		t.Errorf("aligned: findings %q", got)
	}
	c := smtpCampaign(t, "host: h\n")
	c.UnsubscribeURL = "http://acme.com/u"
	if got := checks(Campaign(c)); got != "dkim,unsubscribe-https" {
		t.Errorf("no dkim, http link: findings %q", got)
	}
}

func TestMessageLint(t *testing.T) {
	good := `<!doctype html><html><head><meta charset="utf-8"><title>News</title></head><body><img src="a.png" alt="logo"><a href="https://acme.com/x">https://acme.com/offer</a></body></html>`
	if got := checks(Message(&providers.Message{HTML: good})); got != "" {
		t.Errorf("good message: findings %q", got)
	}
	bad := `<html><head></head><body><img src="a.png"><a href="https://evil.example/login">https://www.bank.com/login</a>` + strings.Repeat("x", GmailClipBytes) + `</body></html>`
	if got := checks(Message(&providers.Message{HTML: bad})); got != "html-size,link-text,html-title,html-charset,img-alt" {
		t.Errorf("bad message: findings %q", got)
	}
	// A fragment (no <html>/<head>) needs no title.
	if got := checks(Message(&providers.Message{HTML: `<p>Hello <a href="https://acme.com">acme.com</a></p>`})); got != "" {
		t.Errorf("fragment: findings %q", got)
	}
}
