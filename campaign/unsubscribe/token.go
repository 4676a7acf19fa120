// Package unsubscribe makes and checks the signed tokens in herald's unsubscribe links.
//
// A token names the campaign and the recipient and carries an HMAC-SHA256 signature (cut
// to 128 bits) keyed with the store's secret (or HERALD_SECRET):
//
//	u1.<base64url(campaign)>.<base64url(address)>.<base64url(mac)>
//
// The token is appended to the campaign's unsubscribe URL as a last path segment, so it
// survives any path prefix a reverse proxy adds; Find locates it anywhere in a URL.
package unsubscribe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
)

const prefix = "u1."

var enc = base64.RawURLEncoding.Strict()

// ErrInvalid is returned for a token that is malformed or whose signature does not match.
var ErrInvalid = errors.New("unsubscribe token is invalid or has been changed")

// Signer signs and verifies tokens with one secret.
type Signer struct{ key []byte }

// NewSigner returns a Signer keyed with secret (at least 16 bytes).
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 16 {
		return nil, errors.New("unsubscribe secret must be at least 16 bytes")
	}
	return &Signer{key: append([]byte(nil), secret...)}, nil
}

func (s *Signer) mac(campaign, address string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(campaign))
	m.Write([]byte{0})
	m.Write([]byte(strings.ToLower(address)))
	return m.Sum(nil)[:16]
}

// Token returns the token for campaign and address.
func (s *Signer) Token(campaign, address string) string {
	var b strings.Builder
	b.Grow(len(prefix) + enc.EncodedLen(len(campaign)) + enc.EncodedLen(len(address)) + 26)
	b.WriteString(prefix)
	b.WriteString(enc.EncodeToString([]byte(campaign)))
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString([]byte(address)))
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString(s.mac(campaign, address)))
	return b.String()
}

// Verify checks a token and returns the campaign and address it names.
func (s *Signer) Verify(token string) (campaign, address string, err error) {
	if !strings.HasPrefix(token, prefix) {
		return "", "", ErrInvalid
	}
	parts := strings.Split(token[len(prefix):], ".")
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

// Find returns the first token-shaped part of u: a path segment or a query value that
// starts with the token prefix. It does not verify it.
func Find(u *url.URL) (string, bool) {
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if seg, err := url.PathUnescape(seg); err == nil && strings.HasPrefix(seg, prefix) {
			return seg, true
		}
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if strings.HasPrefix(v, prefix) {
				return v, true
			}
		}
	}
	return "", false
}
