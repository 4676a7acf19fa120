package providers

import (
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Redacted is what a secret is replaced with in provider text.
const Redacted = "[redacted]"

// Redactor removes secrets from the text a provider hands on: an SMTP reply, an API's
// answer, an error. Servers do echo what they were sent (a relay answering a failed
// AUTH with the decoded or encoded credentials, a proxy reflecting the request), so
// every provider passes its errors and receipts through its Redactor before they leave
// its package. The zero Redactor removes nothing.
type Redactor struct {
	// forms holds every spelling of every secret, longest first, so that a longer form
	// is replaced before a shorter one inside it could break it up.
	forms []string
}

// NewRedactor returns a Redactor for secrets (a password, an API key): each secret
// itself and its base64 forms (padded and unpadded, standard and URL alphabets). When
// user is set, the AUTH PLAIN and AUTH LOGIN blobs built from user and each secret are
// covered as well: base64 of "user\0secret", "\0user\0secret", "user\0user\0secret"
// and of the user name alone (AUTH LOGIN's first answer). Empty secrets are ignored.
func NewRedactor(user string, secrets ...Secret) Redactor {
	seen := map[string]bool{}
	var forms []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			forms = append(forms, s)
		}
	}
	addB64 := func(s string) {
		b := []byte(s)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			add(enc.EncodeToString(b))
		}
	}
	have := false
	for _, s := range secrets {
		v := s.Reveal()
		if v == "" {
			continue
		}
		have = true
		add(v)
		addB64(v)
		if user != "" {
			addB64(user + "\x00" + v)
			addB64("\x00" + user + "\x00" + v)
			addB64(user + "\x00" + user + "\x00" + v)
		}
	}
	if have && user != "" {
		addB64(user)
	}
	sort.SliceStable(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	return Redactor{forms: forms}
}

// String returns s with every form of every secret replaced by "[redacted]".
func (r Redactor) String(s string) string {
	for _, f := range r.forms {
		if strings.Contains(s, f) {
			s = strings.ReplaceAll(s, f, Redacted)
		}
	}
	return s
}

// Bytes is String for a byte slice (an API answer's body).
func (r Redactor) Bytes(b []byte) []byte {
	if len(r.forms) == 0 {
		return b
	}
	return []byte(r.String(string(b)))
}

// Receipt returns rc with its message id redacted.
func (r Redactor) Receipt(rc Receipt) Receipt {
	rc.MessageID = r.String(rc.MessageID)
	return rc
}

// Error returns err fit to leave a provider: an *Error is copied with its Message and
// Enhanced redacted and its Err replaced by a plain error holding the redacted text of
// the original (the typed chain below it could still print the secret, so it does not
// travel on); any other error becomes a plain error of its redacted text. Nil stays nil;
// an error that holds no secret is returned unchanged.
func (r Redactor) Error(err error) error {
	if err == nil || len(r.forms) == 0 {
		return err
	}
	pe := AsError(err)
	if pe == nil {
		if s := err.Error(); r.String(s) != s {
			return errors.New(r.String(s))
		}
		return err
	}
	if !r.leaks(pe) && r.String(err.Error()) == err.Error() {
		return err
	}
	c := *pe
	c.Message = r.String(c.Message)
	c.Enhanced = r.String(c.Enhanced)
	if c.Err != nil {
		if s := c.Err.Error(); r.String(s) != s {
			c.Err = errors.New(r.String(s))
		}
	}
	if err != error(pe) {
		// pe was wrapped: keep the outer text, redacted, around the cleaned *Error.
		return &wrapped{text: r.String(err.Error()), pe: &c}
	}
	return &c
}

func (r Redactor) leaks(pe *Error) bool {
	for _, s := range []string{pe.Message, pe.Enhanced} {
		if r.String(s) != s {
			return true
		}
	}
	return pe.Err != nil && r.String(pe.Err.Error()) != pe.Err.Error()
}

// wrapped is a redacted error around an *Error that had been wrapped.
type wrapped struct {
	text string
	pe   *Error
}

func (w *wrapped) Error() string { return w.text }
func (w *wrapped) Unwrap() error { return w.pe }

// envName reports whether s looks like an environment variable name.
func envName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// CheckEnvName refuses a setting (key, e.g. "password_env") whose value is not an
// environment variable name ([A-Za-z_][A-Za-z0-9_]*). The value is not echoed: a value
// that is not a name is most often the secret itself, pasted in the wrong place. An
// empty value passes (whether it is required is the caller's decision).
func CheckEnvName(provider, key, value string) error {
	if value == "" || envName(value) {
		return nil
	}
	return fmt.Errorf("%s: provider.%s does not look like an environment variable name (did you paste the secret itself? it must be the name of the variable that holds it, like %s)", provider, key, exampleEnv(key))
}

func exampleEnv(key string) string {
	if strings.Contains(key, "password") {
		return "SMTP_PASSWORD"
	}
	return "API_KEY"
}
