// Package dnscheck says which DNS records a campaign's mail needs (a DKIM TXT record per
// key, SPF for the envelope sender's domain, a DMARC starter policy for From's domain)
// and checks what is published.
package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/providers/smtp"
)

// Kind of record.
const (
	DKIM  = "DKIM"
	SPF   = "SPF"
	DMARC = "DMARC"
)

// Record is one TXT record the campaign needs.
type Record struct {
	Kind string `json:"kind"`
	// Name is the owner name of the TXT record.
	Name string `json:"name"`
	// Value is the record to publish (for SPF a starting point to adapt).
	Value string `json:"value"`
	// Note explains the record.
	Note string `json:"note,omitempty"`
}

// spfIncludes are the SPF mechanisms of the API providers' sending infrastructure.
var spfIncludes = map[string]string{
	"ses":      "include:amazonses.com",
	"sendgrid": "include:sendgrid.net",
	"mandrill": "include:spf.mandrillapp.com",
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
	}
	return ""
}

// Records returns the records the campaign's mail needs.
func Records(c *campaign.Campaign) ([]Record, error) {
	var out []Record
	from := ""
	if c.From != nil {
		from = domainOf(c.From.Address)
	}
	if c.ProviderKind == "smtp" && c.ProviderNode != nil {
		var block struct {
			Host string           `yaml:"host"`
			DKIM *smtp.DKIMConfig `yaml:"dkim"`
		}
		if err := c.ProviderNode.Decode(&block); err != nil {
			return nil, fmt.Errorf("%s: provider: %w", c.Path, err)
		}
		if block.DKIM != nil {
			recs, err := block.DKIM.Records(c.Dir)
			if err != nil {
				return nil, err
			}
			for _, r := range recs {
				out = append(out, Record{Kind: DKIM, Name: r.Name, Value: r.Value, Note: "the public half of the key of selector " + r.Selector})
			}
		}
	}
	envelope := from
	if c.ReturnPath != "" {
		envelope = domainOf(c.ReturnPath)
	}
	if envelope != "" {
		mech := "a mx"
		note := "allows the domain's own A and MX hosts; add the relay's addresses (ip4:…) if it sends from elsewhere"
		if inc, ok := spfIncludes[c.ProviderKind]; ok {
			mech = inc
			note = "allows " + c.ProviderKind + "'s servers; merge with any SPF record the domain already has (one record only)"
		}
		if c.ProviderKind == "smtp" && c.ProviderNode != nil {
			var block struct {
				Host string `yaml:"host"`
			}
			_ = c.ProviderNode.Decode(&block)
			if ip := net.ParseIP(block.Host); ip != nil && !ip.IsLoopback() {
				if ip.To4() != nil {
					mech += " ip4:" + ip.String()
				} else {
					mech += " ip6:" + ip.String()
				}
			} else if block.Host != "" && !ip.IsLoopback() && !strings.EqualFold(block.Host, "localhost") {
				mech += " a:" + block.Host
			}
		}
		out = append(out, Record{Kind: SPF, Name: envelope, Value: "v=spf1 " + mech + " ~all", Note: note})
	}
	if from != "" {
		out = append(out, Record{Kind: DMARC, Name: "_dmarc." + from, Value: "v=DMARC1; p=none; rua=mailto:dmarc-reports@" + from,
			Note: "a starting policy that only reports; move to p=quarantine, then p=reject, once the reports show all mail aligned"})
	}
	return out, nil
}

// Status of a checked record.
const (
	OK      = "ok"
	Missing = "missing"
	Wrong   = "wrong"
)

// Result is a checked record.
type Result struct {
	Record
	Status string `json:"status"`
	// Found is what is published (the TXT strings of each record, joined).
	Found []string `json:"found"`
	// Detail says what is wrong.
	Detail string `json:"detail,omitempty"`
}

// Resolver is the lookup Check needs (*net.Resolver).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Check looks each record up and compares it with what is needed.
func Check(ctx context.Context, r Resolver, recs []Record) ([]Result, error) {
	var out []Result
	for _, rec := range recs {
		txts, err := r.LookupTXT(ctx, rec.Name)
		var de *net.DNSError
		if err != nil && !(errors.As(err, &de) && de.IsNotFound) {
			return out, fmt.Errorf("look up %s TXT: %w", rec.Name, err)
		}
		res := Result{Record: rec, Found: []string{}}
		switch rec.Kind {
		case DKIM:
			res.Found = txts
			checkDKIM(&res, txts)
		case SPF:
			res.Found = withPrefix(txts, "v=spf1")
			switch len(res.Found) {
			case 0:
				res.Status, res.Detail = Missing, "no SPF record"
			case 1:
				res.Status = OK
			default:
				res.Status, res.Detail = Wrong, fmt.Sprintf("%d SPF records: receivers treat more than one as an error (permerror)", len(res.Found))
			}
		case DMARC:
			res.Found = withPrefix(txts, "v=DMARC1")
			switch len(res.Found) {
			case 0:
				res.Status, res.Detail = Missing, "no DMARC record"
			case 1:
				res.Status = OK
			default:
				res.Status, res.Detail = Wrong, fmt.Sprintf("%d DMARC records: receivers ignore them all", len(res.Found))
			}
		}
		out = append(out, res)
	}
	return out, nil
}

func withPrefix(txts []string, prefix string) []string {
	out := []string{}
	for _, t := range txts {
		if f := strings.Fields(t); len(f) > 0 && strings.EqualFold(strings.TrimSuffix(f[0], ";"), prefix) {
			out = append(out, t)
		}
	}
	return out
}

// tags parses a DKIM tag list ("v=DKIM1; k=rsa; p=…").
func tags(v string) map[string]string {
	m := map[string]string{}
	for _, part := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		m[strings.ToLower(strings.TrimSpace(k))] = strings.Join(strings.Fields(val), "")
	}
	return m
}

func checkDKIM(res *Result, txts []string) {
	if len(txts) == 0 {
		res.Status, res.Detail = Missing, "no TXT record"
		return
	}
	want := tags(res.Value)
	for _, t := range txts {
		got := tags(t)
		if got["p"] == want["p"] {
			res.Status = OK
			return
		}
	}
	res.Status = Wrong
	res.Detail = "the published key (p=) is not this key: mail signed with it fails DKIM"
	if got := tags(txts[0]); got["p"] == "" {
		res.Detail = "the record has no key (p= empty: the key is revoked)"
	}
}
