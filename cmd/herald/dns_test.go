package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// dnsZone is an in-process authoritative DNS server answering TXT queries from a map.
type dnsZone struct {
	mu  sync.Mutex
	txt map[string][]string // FQDN (lower case, trailing dot) -> records
}

func startDNS(t *testing.T, z *dnsZone) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		z.mu.Lock()
		defer z.mu.Unlock()
		found := false
		for _, q := range req.Question {
			recs, ok := z.txt[strings.ToLower(q.Name)]
			found = found || ok
			if q.Qtype != dns.TypeTXT {
				continue
			}
			for _, r := range recs {
				var parts []string
				for len(r) > 255 {
					parts, r = append(parts, r[:255]), r[255:]
				}
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: append(parts, r)})
			}
		}
		if !found {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDNSPrintAndCheck: `herald dns` prints a DKIM record per key (RSA and Ed25519), an
// SPF hint and a DMARC starter; --check against a real DNS server (miekg/dns, in
// process) finds the missing and the wrong ones (exit 1), then all ok (exit 0).
func TestDNSPrintAndCheck(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	cf := cliCampaign(t, 1, "  kind: smtp\n  host: 192.0.2.25\n  tls: none\n  dkim:\n    domain: acme.example\n    selector: rsa1\n    private_key_file: rsa.pem\n    keys:\n      - {selector: ed1, private_key_file: ed.pem}", "return_path: bounces@mail.acme.example\n")
	dir := filepath.Dir(cf)
	writePEM(t, filepath.Join(dir, "rsa.pem"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	writePEM(t, filepath.Join(dir, "ed.pem"), "PRIVATE KEY", edDER)
	// cliCampaign's From is news@example.com: make it acme.example.
	b, _ := os.ReadFile(cf)
	os.WriteFile(cf, []byte(strings.Replace(string(b), "news@example.com", "news@acme.example", 1)), 0o644)

	e := &cliEnv{}
	r := e.run(t, "dns", cf, "--json")
	if r.code != 0 {
		t.Fatalf("dns: exit %d", r.code)
	}
	var recs []struct{ Kind, Name, Value string }
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"rsa1._domainkey.acme.example": "v=DKIM1; k=rsa; p=",
		"ed1._domainkey.acme.example":  "v=DKIM1; k=ed25519; p=",
		"mail.acme.example":            "v=spf1 a mx ip4:192.0.2.25 ~all",
		"_dmarc.acme.example":          "v=DMARC1; p=none; rua=mailto:dmarc-reports@acme.example",
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	values := map[string]string{}
	for _, rec := range recs {
		values[rec.Name] = rec.Value
		if !strings.HasPrefix(rec.Value, want[rec.Name]) {
			t.Errorf("%s %s = %q, want %q…", rec.Kind, rec.Name, rec.Value, want[rec.Name])
		}
	}
	if txt := e.run(t, "dns", cf); !strings.Contains(txt.stdout, "rsa1._domainkey.acme.example. IN TXT ( \"v=DKIM1; k=rsa; p=") {
		t.Errorf("zone-file output: %s", txt.stdout)
	}

	z := &dnsZone{txt: map[string][]string{
		// The RSA record publishes another key; the Ed25519 one is missing; SPF twice.
		"rsa1._domainkey.acme.example.": {strings.Replace(values["rsa1._domainkey.acme.example"], "p=M", "p=X", 1)},
		"mail.acme.example.":            {"v=spf1 a ~all", "v=spf1 mx ~all"},
		"acme.example.":                 {"google-site-verification=abc"},
	}}
	e.env = map[string]string{"HERALD_DNS_SERVER": startDNS(t, z)}
	r = e.run(t, "dns", cf, "--check")
	if r.code != 1 {
		t.Fatalf("check with missing records: exit %d, want 1", r.code)
	}
	for _, line := range []string{"wrong   DKIM  rsa1._domainkey.acme.example", "missing DKIM  ed1._domainkey.acme.example", "wrong   SPF   mail.acme.example: 2 SPF records", "missing DMARC _dmarc.acme.example"} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("check output lacks %q", line)
		}
	}
	z.mu.Lock()
	for name, v := range values {
		z.txt[name+"."] = []string{v}
	}
	z.mu.Unlock()
	r = e.run(t, "dns", cf, "--check")
	if r.code != 0 || strings.Count(r.stdout, "ok ") != 4 {
		t.Fatalf("check with every record published: exit %d\n%s", r.code, r.stdout)
	}
}
