package lists

import (
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Address length limits (RFC 5321 4.5.3.1; the whole-address limit follows
// from the 256-octet path limit minus the angle brackets).
const (
	maxLocalLen   = 64
	maxAddressLen = 254
	maxLabelLen   = 63
)

// ValidateAddress returns "" when s (already trimmed) is a plain deliverable
// address, or a short reason such as "missing @", "no domain", "display name
// not allowed" or "empty address".
//
// A plain address is what net/mail.ParseAddress accepts with no display
// name, no comments and no angle brackets (the parsed address equals the
// input), whose domain has at least one dot, labels of letters, digits and
// '-' (any non-ASCII letters for internationalised domains), no empty label,
// no label starting or ending with '-', and a top-level domain that is not
// all digits. The local part is at most 64 bytes, the whole at most 254.
func ValidateAddress(s string) string {
	if plainAddress(s) {
		return ""
	}
	return validateSlow(s)
}

// plainAddress is the fast path of ValidateAddress: it reports whether s is
// an ASCII dot-atom local part, '@' and a valid domain, which
// net/mail.ParseAddress accepts unchanged with no display name. Anything
// else goes through validateSlow for a precise reason.
func plainAddress(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at > maxLocalLen || len(s) > maxAddressLen {
		return false
	}
	prevDot := true // no leading dot
	for i := 0; i < at; i++ {
		c := s[i]
		switch {
		case c == '.':
			if prevDot {
				return false
			}
			prevDot = true
			continue
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
		prevDot = false
	}
	if prevDot { // trailing dot
		return false
	}
	d := s[at+1:]
	return utf8.ValidString(d) && validateDomain(d) == ""
}

// validateSlow is ValidateAddress through net/mail, with precise reasons.
func validateSlow(s string) string {
	if s == "" {
		return "empty address"
	}
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	if len(s) > maxAddressLen {
		return "address longer than 254 characters"
	}
	parsed, err := mail.ParseAddress(s)
	if err == nil {
		if parsed.Name != "" {
			return "display name not allowed"
		}
		if parsed.Address != s {
			return "not a plain address (no angle brackets, quotes or comments)"
		}
	}
	at := strings.LastIndexByte(s, '@')
	switch {
	case at < 0:
		return "missing @"
	case at == 0:
		return "missing local part"
	case at == len(s)-1:
		return "no domain"
	}
	if err != nil && strings.ContainsAny(s, "<>") {
		return "not a plain address (no angle brackets, quotes or comments)"
	}
	if at > maxLocalLen {
		return "local part longer than 64 characters"
	}
	if reason := validateDomain(s[at+1:]); reason != "" {
		return reason
	}
	if err != nil {
		return "invalid address (" + strings.TrimPrefix(err.Error(), "mail: ") + ")"
	}
	return ""
}

// validateDomain checks the domain part of an address; see ValidateAddress.
func validateDomain(d string) string {
	if !strings.Contains(d, ".") {
		return "domain has no dot"
	}
	var label string
	for rest, last := d, false; !last; {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			label, last = rest, true
		} else {
			label, rest = rest[:i], rest[i+1:]
		}
		if label == "" {
			if last {
				return "domain ends with a dot"
			}
			return "empty label in domain"
		}
		ascii := true
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r)):
				ascii = false
			default:
				return "invalid character " + strconv.QuoteRune(r) + " in domain"
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "domain label starts or ends with '-'"
		}
		if ascii && len(label) > maxLabelLen {
			return "domain label longer than 63 characters"
		}
	}
	// label is now the top-level domain.
	if strings.Trim(label, "0123456789") == "" {
		return "top-level domain is all digits"
	}
	return ""
}
