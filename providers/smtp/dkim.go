package smtp

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/heraldmail/herald/providers"
)

// DKIM key sizes: an RSA key below MinRSABits is refused (it cannot sign with Go's
// crypto/rsa, and receivers ignore such signatures); below WarnRSABits it is warned about.
const (
	MinRSABits  = 1024
	WarnRSABits = 2048
)

// DKIMConfig is the `dkim:` block of the SMTP provider. One key is set with Selector
// and PrivateKeyFile; Keys adds a second one (typically an Ed25519 key beside the RSA
// key: every message then carries both signatures, RFC 8463).
type DKIMConfig struct {
	// Domain is the signing domain (d=).
	Domain string `yaml:"domain"`
	// Selector is the key's selector (s=).
	Selector string `yaml:"selector"`
	// PrivateKeyFile is a PEM file holding an RSA (PKCS #1 or #8) or Ed25519 key.
	PrivateKeyFile string `yaml:"private_key_file"`
	// Keys are further keys of the same domain, each with its own selector.
	Keys []DKIMKey `yaml:"keys"`
}

// DKIMKey is one signing key of a DKIMConfig.
type DKIMKey struct {
	Selector       string `yaml:"selector"`
	PrivateKeyFile string `yaml:"private_key_file"`
}

// maxDKIMKeys is how many signatures a message carries at most.
const maxDKIMKeys = 2

// dkimKey is a loaded, test-signed key.
type dkimKey struct {
	selector string
	signer   crypto.Signer
	// bits is the RSA modulus size (0 for Ed25519).
	bits int
}

// namedKey is a key of the configuration with where it is set ("dkim", "dkim.keys[0]").
type namedKey struct {
	DKIMKey
	where string
}

// all returns every key of d, the first one first.
func (d *DKIMConfig) all() []namedKey {
	var ks []namedKey
	if d.Selector != "" || d.PrivateKeyFile != "" {
		ks = append(ks, namedKey{DKIMKey{Selector: d.Selector, PrivateKeyFile: d.PrivateKeyFile}, "dkim"})
	}
	for i, k := range d.Keys {
		ks = append(ks, namedKey{k, fmt.Sprintf("dkim.keys[%d]", i)})
	}
	return ks
}

// resolve returns a copy of d with every key file resolved by path.
func (d *DKIMConfig) resolve(path func(string) string) *DKIMConfig {
	r := *d
	if r.PrivateKeyFile != "" {
		r.PrivateKeyFile = path(r.PrivateKeyFile)
	}
	r.Keys = nil
	for _, k := range d.Keys {
		if k.PrivateKeyFile != "" {
			k.PrivateKeyFile = path(k.PrivateKeyFile)
		}
		r.Keys = append(r.Keys, k)
	}
	return &r
}

// load checks the DKIM settings, parses every key and signs a sample message with each,
// so that a key that cannot sign is refused before anything is sent.
func (d *DKIMConfig) load() ([]dkimKey, error) {
	keys := d.all()
	if d.Domain == "" || len(keys) == 0 {
		return nil, errors.New("smtp: dkim needs domain, selector and private_key_file")
	}
	if len(keys) > maxDKIMKeys {
		return nil, fmt.Errorf("smtp: dkim has %d keys; herald signs with at most %d (an RSA and an Ed25519 key)", len(keys), maxDKIMKeys)
	}
	seen := map[string]bool{}
	var out []dkimKey
	for _, k := range keys {
		where := k.where
		if k.Selector == "" || k.PrivateKeyFile == "" {
			return nil, fmt.Errorf("smtp: %s needs domain, selector and private_key_file", where)
		}
		if seen[strings.ToLower(k.Selector)] {
			return nil, fmt.Errorf("smtp: %s: selector %q is used twice", where, k.Selector)
		}
		seen[strings.ToLower(k.Selector)] = true
		data, err := os.ReadFile(k.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("smtp: %s private_key_file: %w", where, err)
		}
		signer, err := parseKey(data)
		if err != nil {
			return nil, fmt.Errorf("smtp: %s private_key_file %s: %w", where, k.PrivateKeyFile, err)
		}
		dk := dkimKey{selector: k.Selector, signer: signer}
		if rk, ok := signer.(*rsa.PrivateKey); ok {
			dk.bits = rk.N.BitLen()
			if dk.bits < MinRSABits {
				return nil, fmt.Errorf("smtp: %s private_key_file %s: the RSA key has %d bits; DKIM needs at least %d (%d recommended)", where, k.PrivateKeyFile, dk.bits, MinRSABits, WarnRSABits)
			}
		}
		if _, err := signWith(d.Domain, dk, []byte(sampleMessage)); err != nil {
			return nil, fmt.Errorf("smtp: %s private_key_file %s: the key cannot sign: %w", where, k.PrivateKeyFile, err)
		}
		out = append(out, dk)
	}
	return out, nil
}

// warnWeak reports the keys that sign but are weaker than receivers like.
func warnWeak(keys []dkimKey, warn func(format string, args ...any)) {
	for _, k := range keys {
		if k.bits != 0 && k.bits < WarnRSABits {
			warn("smtp: WARNING: the DKIM key of selector %s has %d bits; use %d or more (some receivers ignore shorter keys)", k.selector, k.bits, WarnRSABits)
		}
	}
}

// sampleMessage is what load test-signs.
const sampleMessage = "From: herald <check@example.com>\r\nTo: check@example.com\r\nSubject: key check\r\n\r\nkey check\r\n"

// parseKey reads an RSA (PKCS #1 or #8) or Ed25519 (PKCS #8) private key from PEM. Its
// errors never quote the key.
func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("malformed RSA private key")
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("malformed PKCS #8 private key")
		}
		switch k := k.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case ed25519.PrivateKey:
			return k, nil
		}
		return nil, fmt.Errorf("DKIM needs an RSA or Ed25519 key, not %T", k)
	}
	return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
}

// signedHeaders lists the header fields the DKIM signature covers: the ones mailbox
// providers look at, including the one-click unsubscribe pair they require signed.
func signedHeaders() []string {
	return []string{
		"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID", "MIME-Version",
		"Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
		"List-Id", "Precedence", "Feedback-ID",
	}
}

// headerKeys returns the h= list for raw: each signed field named once more than it
// occurs (RFC 6376 8.15, "over-signing"), so that a copy added anywhere in the header,
// or a field added that was absent, breaks the signature. (A verifier takes the
// occurrences from the bottom up; a field named only as often as it occurs lets an added
// copy above the original through.)
func headerKeys(raw []byte) []string {
	count := map[string]int{}
	header, _ := splitHeader(raw)
	for _, line := range bytes.Split(header, []byte("\n")) {
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if i := bytes.IndexByte(line, ':'); i > 0 {
			count[strings.ToLower(strings.TrimSpace(string(line[:i])))]++
		}
	}
	var keys []string
	for _, h := range signedHeaders() {
		for n := count[strings.ToLower(h)]; n >= 0; n-- {
			keys = append(keys, h)
		}
	}
	return keys
}

// signWith returns the DKIM-Signature header field (with its CRLF) of raw by key.
// Relaxed canonicalisation survives the header rewrapping relays do.
func signWith(domain string, key dkimKey, raw []byte) ([]byte, error) {
	s, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 domain,
		Selector:               key.selector,
		Signer:                 key.signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             headerKeys(raw),
	})
	if err != nil {
		return nil, err
	}
	if _, err := s.Write(raw); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	return []byte(s.Signature()), nil
}

// sign returns the DKIM-Signature header fields (one per key, each with its CRLF) for
// raw, to be sent in front of it. A key that cannot sign is a fault of the campaign, not
// of the recipient: the error is Fatal, so the run stops and nobody is marked failed.
func (p *Provider) sign(raw []byte) ([]byte, error) {
	var sigs []byte
	for _, k := range p.dkim {
		sig, err := signWith(p.cfg.DKIM.Domain, k, raw)
		if err != nil {
			return nil, &providers.Error{Provider: Kind, Kind: providers.Fatal,
				Message: fmt.Sprintf("dkim: cannot sign with selector %s: %v", k.selector, err), Err: err}
		}
		sigs = append(sigs, sig...)
	}
	return sigs, nil
}

// DKIMRecord is the DNS TXT record that publishes one DKIM key.
type DKIMRecord struct {
	// Name is <selector>._domainkey.<domain>.
	Name string
	// Value is "v=DKIM1; k=rsa|ed25519; p=<base64 public key>".
	Value string
	// Selector is the key's selector.
	Selector string
}

// Records loads the keys of d (paths relative to baseDir) and returns the TXT record
// of each.
func (d *DKIMConfig) Records(baseDir string) ([]DKIMRecord, error) {
	r := d.resolve(func(p string) string { return providers.Spec{BaseDir: baseDir}.Path(p) })
	keys, err := r.load()
	if err != nil {
		return nil, err
	}
	var out []DKIMRecord
	for _, k := range keys {
		var kt string
		var pub []byte
		switch s := k.signer.(type) {
		case *rsa.PrivateKey:
			kt = "rsa"
			if pub, err = x509.MarshalPKIXPublicKey(&s.PublicKey); err != nil {
				return nil, err
			}
		case ed25519.PrivateKey:
			kt, pub = "ed25519", s.Public().(ed25519.PublicKey)
		}
		out = append(out, DKIMRecord{
			Name:     k.selector + "._domainkey." + strings.TrimSuffix(d.Domain, "."),
			Value:    "v=DKIM1; k=" + kt + "; p=" + base64.StdEncoding.EncodeToString(pub),
			Selector: k.selector,
		})
	}
	return out, nil
}
