// Package logging sets up herald's structured logs (log/slog) for `--log-format text|json`:
// one record per line on the writer it is given (stderr), with time, level, msg and the
// record's fields; JSON lines for journald, Loki and the like.
//
// Recipient addresses are personal data: a field whose value is an Address is written as
// a short hash ("sha256:0123456789ab", the same for the same address, so that lines about
// one recipient can be found together) unless the logger runs at debug level or was
// asked for full addresses. Secrets are never handed to a logger in the first place.
package logging

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// Formats are the values of --log-format.
var Formats = []string{"text", "json"}

// Options configure a logger.
type Options struct {
	// Format is "text" (logfmt-like key=value) or "json".
	Format string
	// Level is the lowest level written.
	Level slog.Level
	// Addresses is "hash" or "full"; "" means full at debug level, hashed otherwise.
	Addresses string
}

// Address marks a recipient address in a log record (slog.Any("to", Address(a))).
type Address string

// TextWithAddress is a text that may name an address, such as a relay's reply "550
// 5.1.1 <jane@example.org>: no such user": logged as is where addresses are logged in
// full, else with every occurrence of Address (in any case) replaced by its Hash.
type TextWithAddress struct {
	Text    string
	Address string
}

// TextWithAddresses is a text that may name addresses it does not say apart (a list row's
// warning: `duplicate of line 3 (jane@example.org)`): logged as is where addresses are
// logged in full, else with every word that holds an '@' replaced by its Hash.
type TextWithAddresses string

// addressLike is a word with an '@', without the quotes, brackets or parentheses around it.
var addressLike = regexp.MustCompile(`[^\s"'<>()\[\],;]*@[^\s"'<>()\[\],;]*`)

// hideAll replaces every address-like word of text by its hash.
func hideAll(text string) string {
	return addressLike.ReplaceAllStringFunc(text, Hash)
}

// hide replaces addr in text, ignoring case, by its hash.
func hide(text, addr string) string {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return text
	}
	lower, key := strings.ToLower(text), strings.ToLower(addr)
	var b strings.Builder
	for {
		i := strings.Index(lower, key)
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		b.WriteString(text[:i])
		b.WriteString(Hash(addr))
		text, lower = text[i+len(key):], lower[i+len(key):]
	}
}

// Hash is the form an address is logged in when it is not logged in full: the first 12
// hex digits of the SHA-256 of the lower-cased address.
func Hash(addr string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(addr))))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// New returns a logger writing to w.
func New(w io.Writer, o Options) (*slog.Logger, error) {
	full := o.Level <= slog.LevelDebug
	switch o.Addresses {
	case "":
	case "full":
		full = true
	case "hash":
		full = false
	default:
		return nil, fmt.Errorf("unknown address form %q (hash or full)", o.Addresses)
	}
	ho := &slog.HandlerOptions{
		Level: o.Level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			switch v := a.Value.Any().(type) {
			case Address:
				if full {
					a.Value = slog.StringValue(string(v))
				} else {
					a.Value = slog.StringValue(Hash(string(v)))
				}
			case TextWithAddresses:
				if full {
					a.Value = slog.StringValue(string(v))
				} else {
					a.Value = slog.StringValue(hideAll(string(v)))
				}
			case TextWithAddress:
				if full {
					a.Value = slog.StringValue(v.Text)
				} else {
					a.Value = slog.StringValue(hide(v.Text, v.Address))
				}
			}
			return a
		},
	}
	switch o.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	}
	return nil, fmt.Errorf("unknown log format %q (%s)", o.Format, strings.Join(Formats, " or "))
}

// ParseLevel reads a --log-level value: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown log level %q (debug, info, warn or error)", s)
	}
	return l, nil
}
