package dnscheck

import (
	"context"
	"net"
	"net/mail"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/heraldmail/herald/campaign"
)

func campaignWith(t *testing.T, kind, block, returnPath string) *campaign.Campaign {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(block), &n); err != nil {
		t.Fatal(err)
	}
	return &campaign.Campaign{Path: "c.yaml", From: &mail.Address{Address: "news@Acme.Example"}, ReturnPath: returnPath,
		ProviderKind: kind, ProviderNode: n.Content[0]}
}

// TestRecordsPerProvider: the SPF hint names the provider's servers and goes on the
// envelope sender's domain; DMARC goes on From's.
func TestRecordsPerProvider(t *testing.T) {
	cases := []struct {
		kind, block, returnPath, spfName, spf string
	}{
		{"ses", "region: eu-west-1\n", "", "acme.example", "v=spf1 include:amazonses.com ~all"},
		{"sendgrid", "api_key_env: K\n", "bounces@em.acme.example", "em.acme.example", "v=spf1 include:sendgrid.net ~all"},
		{"mandrill", "api_key_env: K\n", "", "acme.example", "v=spf1 include:spf.mandrillapp.com ~all"},
		{"smtp", "host: smtp.relay.example\n", "", "acme.example", "v=spf1 a mx a:smtp.relay.example ~all"},
		{"smtp", "host: 127.0.0.1\n", "", "acme.example", "v=spf1 a mx ~all"},
	}
	for _, tc := range cases {
		recs, err := Records(campaignWith(t, tc.kind, tc.block, tc.returnPath))
		if err != nil {
			t.Fatalf("%s: %v", tc.kind, err)
		}
		if len(recs) != 2 || recs[0].Kind != SPF || recs[1].Kind != DMARC {
			t.Fatalf("%s: %+v", tc.kind, recs)
		}
		if recs[0].Name != tc.spfName || recs[0].Value != tc.spf {
			t.Errorf("%s: SPF %s %q, want %s %q", tc.kind, recs[0].Name, recs[0].Value, tc.spfName, tc.spf)
		}
		if recs[1].Name != "_dmarc.acme.example" {
			t.Errorf("%s: DMARC at %s", tc.kind, recs[1].Name)
		}
	}
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := f[name]; ok {
		return v, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func TestCheckStatuses(t *testing.T) {
	recs := []Record{
		{Kind: DKIM, Name: "a._domainkey.x.example", Value: "v=DKIM1; k=rsa; p=AAAA"},
		{Kind: DKIM, Name: "b._domainkey.x.example", Value: "v=DKIM1; k=rsa; p=BBBB"},
		{Kind: DKIM, Name: "c._domainkey.x.example", Value: "v=DKIM1; k=rsa; p=CCCC"},
		{Kind: SPF, Name: "x.example", Value: "v=spf1 a mx ~all"},
		{Kind: DMARC, Name: "_dmarc.x.example", Value: "v=DMARC1; p=none"},
	}
	res, err := Check(context.Background(), fakeResolver{
		"a._domainkey.x.example": {"v=DKIM1; k=rsa; p=AA AA"}, // split by the zone file: still the key
		"b._domainkey.x.example": {"v=DKIM1; p="},
		"x.example":              {"v=spf1 -all", "google-site-verification=x"},
	}, recs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{OK, Wrong, Missing, OK, Missing}
	for i, r := range res {
		if r.Status != want[i] {
			t.Errorf("%s %s: %s (%s), want %s", r.Kind, r.Name, r.Status, r.Detail, want[i])
		}
	}
	if _, err := Check(context.Background(), errResolver{}, recs); err == nil {
		t.Error("a resolver failure was not reported")
	}
}

type errResolver struct{}

func (errResolver) LookupTXT(context.Context, string) ([]string, error) {
	return nil, &net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}
}
