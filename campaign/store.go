package campaign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"sort"

	"github.com/heraldmail/herald/campaign/journal"
)

// OpenStore opens the store at location (a file path or a postgres:// URL). A malformed
// URL is a *ConfigError (exit 2); an unreachable or refusing database a plain error
// (exit 1). Errors never show the URL's password.
func OpenStore(ctx context.Context, location string, o journal.Options) (journal.Store, error) {
	st, err := journal.Open(ctx, location, o)
	if err != nil {
		var ue *journal.URLError
		if errors.As(err, &ue) {
			return nil, &ConfigError{Err: err}
		}
		return nil, err
	}
	return st, nil
}

// storeExists reports whether there is a store to read at location: a database always,
// a file when it exists.
func storeExists(location string) bool {
	if journal.IsURL(location) {
		return true
	}
	_, err := os.Stat(location)
	return err == nil
}

// TemplateHash identifies what a campaign's messages are made of (subject, sender,
// headers, template files): runs of one campaign on several hosts must agree on it.
func TemplateHash(c *Campaign) string {
	h := sha256.New()
	w := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	w(c.Subject)
	w(c.ToName)
	w(c.FromHeader)
	w(c.ReplyTo)
	keys := make([]string, 0, len(c.Headers))
	for k := range c.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w(k + ": " + c.Headers[k])
	}
	w(c.UnsubscribeMailto)
	for _, p := range []string{c.HTMLFile, c.TextFile} {
		if p == "" {
			w("")
			continue
		}
		b, _ := os.ReadFile(p)
		w(string(b))
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}
