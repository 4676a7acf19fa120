package unsubscribe

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

func signer(t *testing.T, secret string) *Signer {
	t.Helper()
	s, err := NewSigner([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	s := signer(t, "0123456789abcdef0123456789abcdef")
	for _, c := range []struct{ campaign, addr string }{
		{"november-news", "jane@example.org"},
		{"weekly-2026-W48", "o'brien+tag@sub.example.co.uk"},
		{"x", "üser@bücher.example"},
	} {
		tok := s.Token(c.campaign, c.addr)
		gc, ga, err := s.Verify(tok)
		if err != nil || gc != c.campaign || ga != c.addr {
			t.Errorf("Verify(Token(%q,%q)) = %q, %q, %v", c.campaign, c.addr, gc, ga, err)
		}
	}
}

// TestV1TamperedRejected: version 1 tokens (already in sent mail) keep verifying, and a
// changed one is refused.
func TestV1TamperedRejected(t *testing.T) {
	s := signer(t, "0123456789abcdef0123456789abcdef")
	other := signer(t, "another-secret-of-32-bytes-long!")
	tok := s.tokenV1("news", "jane@example.org")
	if c, a, err := s.Verify(tok); err != nil || c != "news" || a != "jane@example.org" {
		t.Fatalf("a version 1 token no longer verifies: %q %q %v", c, a, err)
	}
	forged := strings.Replace(tok, enc.EncodeToString([]byte("jane@example.org")), enc.EncodeToString([]byte("john@example.org")), 1)
	for name, bad := range map[string]string{
		"other address":  forged,
		"other secret":   other.tokenV1("news", "jane@example.org"),
		"truncated":      tok[:len(tok)-3],
		"no prefix":      strings.TrimPrefix(tok, prefixV1),
		"extra part":     tok + ".x",
		"empty":          "",
		"bad base64":     prefixV1 + "!!.!!.!!",
		"empty address":  prefixV1 + enc.EncodeToString([]byte("news")) + ".." + strings.Split(tok, ".")[3],
		"flipped mac":    tok[:len(tok)-1] + map[bool]string{true: "A", false: "B"}[tok[len(tok)-1] != 'A'],
		"other campaign": strings.Replace(tok, enc.EncodeToString([]byte("news")), enc.EncodeToString([]byte("olds")), 1),
	} {
		if _, _, err := s.Verify(bad); err == nil {
			t.Errorf("%s: Verify(%q) accepted a changed token", name, bad)
		}
	}
}

// TestTokenIsOpaque: the token made today shows nothing of the address or the campaign,
// however it is decoded. Before, it was the base64 of both.
func TestTokenIsOpaque(t *testing.T) {
	s := signer(t, "0123456789abcdef0123456789abcdef")
	addr := "jane.doe@example.org"
	tok := s.Token("november-news", addr)
	if !strings.HasPrefix(tok, prefix) {
		t.Fatalf("token %q lacks the %q prefix", tok, prefix)
	}
	body := strings.TrimPrefix(tok, prefix)
	var decoded [][]byte
	decoded = append(decoded, []byte(tok))
	for _, part := range strings.Split(body, ".") {
		for _, e := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
			if b, err := e.DecodeString(part); err == nil {
				decoded = append(decoded, b)
			}
		}
		if b, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(part)); err == nil {
			decoded = append(decoded, b)
		}
		if b, err := hex.DecodeString(part); err == nil {
			decoded = append(decoded, b)
		}
	}
	if len(decoded) < 2 {
		t.Fatalf("the token %q does not decode as base64: the test would prove nothing", tok)
	}
	for _, b := range decoded {
		low := strings.ToLower(string(b))
		for _, needle := range []string{"jane", "doe", "example", "@", "november"} {
			if strings.Contains(low, needle) {
				t.Errorf("the token %q shows %q once decoded", tok, needle)
			}
		}
	}
	// Deterministic: the same recipient of the same campaign gets the same link.
	if again := s.Token("november-news", addr); again != tok {
		t.Errorf("two tokens for one recipient differ: %q, %q", tok, again)
	}
	if s.Token("november-news", "john@example.org") == tok || s.Token("october-news", addr) == tok {
		t.Error("different recipients or campaigns share a token")
	}
}

// TestTamperedRejected: any change to a token, or a token of another secret, is refused.
func TestTamperedRejected(t *testing.T) {
	s := signer(t, "0123456789abcdef0123456789abcdef")
	other := signer(t, "another-secret-of-32-bytes-long!")
	tok := s.Token("news", "jane@example.org")
	raw, err := enc.DecodeString(strings.TrimPrefix(tok, prefix))
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"other secret": other.Token("news", "jane@example.org"),
		"truncated":    tok[:len(tok)-3],
		"no prefix":    strings.TrimPrefix(tok, prefix),
		"v1 prefix":    prefixV1 + strings.TrimPrefix(tok, prefix),
		"extra part":   tok + ".x",
		"empty":        "",
		"prefix only":  prefix,
		"bad base64":   prefix + "!!!!",
		"short":        prefix + enc.EncodeToString(raw[:30]),
	}
	for i := range raw {
		flipped := append([]byte(nil), raw...)
		flipped[i] ^= 0x01
		bad[fmt.Sprintf("bit flipped in byte %d", i)] = prefix + enc.EncodeToString(flipped)
	}
	for name, b := range bad {
		if _, _, err := s.Verify(b); err == nil {
			t.Errorf("%s: Verify(%q) accepted a changed token", name, b)
		}
	}
}

func TestShortSecretRefused(t *testing.T) {
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("NewSigner accepted a 5-byte secret")
	}
}

func TestURLAndFind(t *testing.T) {
	s := signer(t, "0123456789abcdef0123456789abcdef")
	tok := s.Token("news", "jane@example.org")
	for base, want := range map[string]string{
		"https://x.example/unsubscribe":         "https://x.example/unsubscribe/" + tok,
		"https://x.example/unsubscribe/":        "https://x.example/unsubscribe/" + tok,
		"https://x.example/u?list=news":         "https://x.example/u/" + tok + "?list=news",
		"https://x.example/a/b/c/unsubscribe/x": "https://x.example/a/b/c/unsubscribe/x/" + tok,
	} {
		got := URL(base, tok)
		if got != want {
			t.Errorf("URL(%q) = %q, want %q", base, got, want)
		}
		u, _ := url.Parse("https://proxy.example/prefix" + strings.TrimPrefix(got, "https://x.example"))
		found, ok := Find(u)
		if !ok || found != tok {
			t.Errorf("Find(%q) = %q, %v", u, found, ok)
		}
	}
	u, _ := url.Parse("https://x.example/unsub?t=" + tok)
	if f, ok := Find(u); !ok || f != tok {
		t.Errorf("Find in query = %q, %v", f, ok)
	}
	u, _ = url.Parse("https://x.example/unsub/nothing")
	if _, ok := Find(u); ok {
		t.Errorf("Find found a token in %q", u)
	}
}

func TestTokenShort(t *testing.T) {
	s := signer(t, "0123456789abcdef0123456789abcdef")
	long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 180) + ".example"
	tok := s.Token(strings.Repeat("c", 100), long)
	if len(tok) > 600 {
		t.Errorf("token for a 254-octet address is %d bytes; List-Unsubscribe would pass 998", len(tok))
	}
}

// BenchmarkToken: the token made for every message of a send and of a dry run.
func BenchmarkToken(b *testing.B) {
	s, err := NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if tok := s.Token("november-news", "someone.long@example.org"); len(tok) < 40 {
				b.Fatal(tok)
			}
		}
	})
}

// TestTokenIsTheDocumentedConstruction: a token is u2. + base64url(nonce || sealed) with
// the nonce an HMAC-SHA256 of the plaintext under the HKDF nonce key, spelled out here
// step by step, so a link already sent is made again the same (one recipient, one link),
// also when many goroutines make tokens at once.
func TestTokenIsTheDocumentedConstruction(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	s := signer(t, string(secret))
	sealKey, _ := hkdf.Key(sha256.New, secret, nil, infoSeal, chacha20poly1305.KeySize)
	nonceKey, _ := hkdf.Key(sha256.New, secret, nil, infoNonce, 32)
	aead, err := chacha20poly1305.NewX(sealKey)
	if err != nil {
		t.Fatal(err)
	}
	want := func(campaign, addr string) string {
		plain := []byte(campaign + "\x00" + addr)
		m := hmac.New(sha256.New, nonceKey)
		m.Write(plain)
		nonce := m.Sum(nil)[:chacha20poly1305.NonceSizeX]
		return "u2." + base64.RawURLEncoding.EncodeToString(aead.Seal(append([]byte(nil), nonce...), nonce, plain, []byte("u2.")))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				addr := fmt.Sprintf("reader%d.%d@example.org", g, i)
				if i%50 == 0 {
					addr = strings.Repeat("long", 40) + addr // past the encoder's stack buffer
				}
				if got, w := s.Token("november-news", addr), want("november-news", addr); got != w {
					t.Errorf("token of %s = %q, want %q", addr, got, w)
					return
				}
			}
		}()
	}
	wg.Wait()
}
