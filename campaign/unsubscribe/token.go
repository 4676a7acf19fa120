// Package unsubscribe makes and checks the tokens in herald's unsubscribe links.
//
// A token names the campaign and the recipient so that `herald serve` on any host that
// knows the store's secret (or HERALD_SECRET) can act on it without a database lookup.
// Tokens of version 2 are opaque: campaign and address are sealed with
// XChaCha20-Poly1305 (authenticated encryption) under a key derived from the secret with
// HKDF-SHA256; the 24-byte nonce is an HMAC of the plaintext under a second derived key
// (a synthetic IV, as in SIV modes), so one recipient of one campaign always gets the
// same token and nothing about the address shows:
//
//	u2.<base64url(nonce || ciphertext || tag)>
//
// Tokens of version 1, already in sent mail, keep verifying. They show the address:
//
//	u1.<base64url(campaign)>.<base64url(address)>.<base64url(mac)>
//
// where mac is an HMAC-SHA256 (cut to 128 bits) keyed with the secret itself.
//
// The token is appended to the campaign's unsubscribe URL as a last path segment, so it
// survives any path prefix a reverse proxy adds; Find locates it anywhere in a URL.
package unsubscribe

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// Token prefixes: prefix is what Token makes; prefixV1 is still verified.
const (
	prefix   = "u2."
	prefixV1 = "u1."
)

// HKDF info strings of the two derived keys.
const (
	infoSeal  = "herald unsubscribe token v2: seal"
	infoNonce = "herald unsubscribe token v2: nonce"
)

var enc = base64.RawURLEncoding.Strict()

// ErrInvalid is returned for a token that is malformed or whose signature does not match.
var ErrInvalid = errors.New("unsubscribe token is invalid or has been changed")

// Signer makes and verifies tokens with one secret. It is safe for concurrent use.
type Signer struct {
	// key is the secret itself (version 1 MACs).
	key []byte
	// aead seals version 2 tokens; nonceKey derives their nonces.
	aead     cipher.AEAD
	nonceKey []byte
	// nonceMACs holds HMACs keyed with nonceKey (hash.Hash), reset between uses: a
	// token is made for every message, and a new HMAC costs its key schedule and three
	// allocations.
	nonceMACs sync.Pool
}

// NewSigner returns a Signer keyed with secret (at least 16 bytes).
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 16 {
		return nil, errors.New("unsubscribe secret must be at least 16 bytes")
	}
	sealKey, err := hkdf.Key(sha256.New, secret, nil, infoSeal, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	nonceKey, err := hkdf.Key(sha256.New, secret, nil, infoNonce, 32)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(sealKey)
	if err != nil {
		return nil, err
	}
	sg := &Signer{key: append([]byte(nil), secret...), aead: aead, nonceKey: nonceKey}
	sg.nonceMACs.New = func() any { return hmac.New(sha256.New, sg.nonceKey) }
	return sg, nil
}

// plaintext is what a version 2 token seals: the campaign, a NUL, the address.
func plaintext(campaign, address string) []byte {
	p := make([]byte, 0, len(campaign)+1+len(address))
	p = append(p, campaign...)
	p = append(p, 0)
	return append(p, address...)
}

// nonce returns the nonce of plain, in a slice with room for the sealed token after it.
func (s *Signer) nonce(plain []byte) []byte {
	m := s.nonceMACs.Get().(hash.Hash)
	defer s.nonceMACs.Put(m)
	m.Reset()
	m.Write(plain)
	var sum [sha256.Size]byte
	out := make([]byte, 0, chacha20poly1305.NonceSizeX+len(plain)+chacha20poly1305.Overhead)
	return append(out, m.Sum(sum[:0])[:chacha20poly1305.NonceSizeX]...)
}

func (s *Signer) mac(campaign, address string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(campaign))
	m.Write([]byte{0})
	m.Write([]byte(strings.ToLower(address)))
	return m.Sum(nil)[:16]
}

// Token returns the (opaque, version 2) token for campaign and address.
func (s *Signer) Token(campaign, address string) string {
	plain := plaintext(campaign, address)
	nonce := s.nonce(plain)
	sealed := s.aead.Seal(nonce, nonce, plain, []byte(prefix))
	var tmp [192]byte // a token of a usual campaign and address, encoded, fits
	encoded := enc.AppendEncode(tmp[:0], sealed)
	var b strings.Builder
	b.Grow(len(prefix) + len(encoded))
	b.WriteString(prefix)
	b.Write(encoded)
	return b.String()
}

// tokenV1 returns the version 1 token (address visible) that herald made before.
func (s *Signer) tokenV1(campaign, address string) string {
	var b strings.Builder
	b.Grow(len(prefixV1) + enc.EncodedLen(len(campaign)) + enc.EncodedLen(len(address)) + 26)
	b.WriteString(prefixV1)
	b.WriteString(enc.EncodeToString([]byte(campaign)))
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString([]byte(address)))
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString(s.mac(campaign, address)))
	return b.String()
}

// Verify checks a token (either version) and returns the campaign and address it names.
func (s *Signer) Verify(token string) (campaign, address string, err error) {
	if strings.HasPrefix(token, prefixV1) {
		return s.verifyV1(token)
	}
	if !strings.HasPrefix(token, prefix) {
		return "", "", ErrInvalid
	}
	sealed, err := enc.DecodeString(token[len(prefix):])
	if err != nil || len(sealed) < chacha20poly1305.NonceSizeX+s.aead.Overhead() {
		return "", "", ErrInvalid
	}
	nonce, box := sealed[:chacha20poly1305.NonceSizeX], sealed[chacha20poly1305.NonceSizeX:]
	plain, err := s.aead.Open(nil, nonce, box, []byte(prefix))
	if err != nil {
		return "", "", ErrInvalid
	}
	c, a, ok := bytes.Cut(plain, []byte{0})
	if !ok || len(a) == 0 {
		return "", "", ErrInvalid
	}
	return string(c), string(a), nil
}

func (s *Signer) verifyV1(token string) (campaign, address string, err error) {
	parts := strings.Split(token[len(prefixV1):], ".")
	if len(parts) != 3 {
		return "", "", ErrInvalid
	}
	c, err1 := enc.DecodeString(parts[0])
	a, err2 := enc.DecodeString(parts[1])
	m, err3 := enc.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || len(a) == 0 {
		return "", "", ErrInvalid
	}
	if !hmac.Equal(m, s.mac(string(c), string(a))) {
		return "", "", ErrInvalid
	}
	return string(c), string(a), nil
}

// URL appends token to base as a last path segment, keeping any query string.
func URL(base, token string) string {
	path, query, hasQuery := strings.Cut(base, "?")
	if !strings.HasSuffix(path, "/") {
		path += "/"
	}
	path += token
	if hasQuery {
		return path + "?" + query
	}
	return path
}

// isToken reports whether s starts like a token of either version.
func isToken(s string) bool { return strings.HasPrefix(s, prefix) || strings.HasPrefix(s, prefixV1) }

// Find returns the first token-shaped part of u: a path segment or a query value that
// starts with a token prefix. It does not verify it.
func Find(u *url.URL) (string, bool) {
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if seg, err := url.PathUnescape(seg); err == nil && isToken(seg) {
			return seg, true
		}
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if isToken(v) {
				return v, true
			}
		}
	}
	return "", false
}
