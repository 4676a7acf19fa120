package unsubscribe

import (
	"net/url"
	"strings"
	"testing"
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

func TestTamperedRejected(t *testing.T) {
	s := signer(t, "0123456789abcdef0123456789abcdef")
	other := signer(t, "another-secret-of-32-bytes-long!")
	tok := s.Token("news", "jane@example.org")
	forged := strings.Replace(tok, enc.EncodeToString([]byte("jane@example.org")), enc.EncodeToString([]byte("john@example.org")), 1)
	for name, bad := range map[string]string{
		"other address":  forged,
		"other secret":   other.Token("news", "jane@example.org"),
		"truncated":      tok[:len(tok)-3],
		"no prefix":      strings.TrimPrefix(tok, prefix),
		"extra part":     tok + ".x",
		"empty":          "",
		"bad base64":     prefix + "!!.!!.!!",
		"empty address":  prefix + enc.EncodeToString([]byte("news")) + ".." + strings.Split(tok, ".")[3],
		"flipped mac":    tok[:len(tok)-1] + map[bool]string{true: "A", false: "B"}[tok[len(tok)-1] != 'A'],
		"other campaign": strings.Replace(tok, enc.EncodeToString([]byte("news")), enc.EncodeToString([]byte("olds")), 1),
	} {
		if _, _, err := s.Verify(bad); err == nil {
			t.Errorf("%s: Verify(%q) accepted a changed token", name, bad)
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
