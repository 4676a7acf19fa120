// Package providers defines the contract between herald's sending pipeline and the
// services that deliver mail: an SMTP relay, Amazon SES, SendGrid, Mandrill or a local
// outbox folder.
//
// # The contract
//
// A Provider delivers one fully rendered message at a time. The pipeline calls Send from
// several worker goroutines at once (never more than Capabilities().MaxConcurrency when
// that is set), so every implementation must be safe for concurrent use. A provider keeps
// whatever connections it likes between calls (an SMTP provider keeps one per worker) and
// releases them in Close, which may be called more than once.
//
// Send answers with a Receipt (the provider's id for the accepted message) or an error.
// Every error that leaves a provider should be an *Error, whose Kind tells the pipeline
// what to do with it:
//
//   - Temporary: the message was not accepted this time; retry later with backoff
//     (honouring RetryAfter when the provider said how long to wait). SMTP 4xx, HTTP 429
//     and 5xx, timeouts, refused or dropped connections before the message went out.
//   - Permanent: this message will never be accepted; record the reason and do not retry.
//     When Bounce is set the address itself is bad (SMTP 5.1.x, 550/551/553, a provider's
//     "invalid"/"bounce" rejection) and the pipeline adds it to the suppression list.
//   - Fatal: nothing more can be sent in this run (bad credentials, account paused,
//     quota exhausted). The pipeline stops at once; recipients not yet attempted stay
//     pending.
//   - Unknown: the message may or may not have been accepted (a connection lost after
//     the data was handed over but before the answer). The pipeline never resends such
//     a recipient on its own.
//
// Kinds are decided from typed sources (SMTP reply codes, HTTP status codes, SDK error
// types, an API's error name, the field an API's error names), not by matching error
// text, except where a service leaves no other choice: SES gives a passing throttle and
// an exhausted daily quota the same error names and tells them apart only by the
// message, and names the identities that failed verification only in the message of a
// MessageRejected (see providers/ses). Such reading is kept to the few documented texts,
// in the provider's classify, with a test for each. An error that is not an *Error is
// treated as Temporary.
//
// A permanent rejection is about the recipient or about the campaign. When the service
// refuses what every message of the run carries (the sender or its domain, the account,
// the campaign's headers or settings), the next recipient would be refused the same
// way: providers report it as Fatal, so that the run stops with the rest pending rather
// than marking every recipient failed.
//
// Text from a service leaves a provider only through its Redactor (see NewRedactor):
// servers echo what they were sent, credentials included.
//
// Providers are built from a campaign's `provider:` block through a Registry; each
// provider lives in its own package below this one and imports nothing of herald's but
// this package.
package providers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Provider delivers rendered messages. See the package documentation for the contract.
type Provider interface {
	// Name is the provider kind, e.g. "smtp"; errors and logs start with it.
	Name() string
	// Capabilities says what the provider allows; zero fields mean "no limit of its own".
	Capabilities() Capabilities
	// Send delivers one message. It must return promptly when ctx is cancelled.
	Send(ctx context.Context, msg *Message) (Receipt, error)
	// Close releases connections. It is safe to call more than once.
	Close() error
}

// Capabilities describes the limits a provider imposes. The pipeline takes the lower of
// the campaign's settings and these.
type Capabilities struct {
	// MaxConcurrency is the most Send calls the provider accepts at once (0: no limit).
	MaxConcurrency int
	// MaxRate is the most messages per second the provider accepts (0: no limit).
	MaxRate float64
	// BatchSize is how many messages one API call could carry (0 or 1: one at a time).
	BatchSize int
}

// Message is one rendered message for one recipient.
type Message struct {
	// Campaign is the campaign's journal name (used for tags and event correlation).
	Campaign string
	// From is the From header value, e.g. `"Acme News" <news@acme.example>`.
	From string
	// FromAddress is the bare From address.
	FromAddress string
	// ReturnPath is the envelope sender (SMTP MAIL FROM); defaults to FromAddress.
	ReturnPath string
	// To is the bare recipient address (the envelope recipient).
	To string
	// ToName is the recipient's display name, possibly empty.
	ToName string
	// ReplyTo is the Reply-To address, possibly empty.
	ReplyTo string
	// Subject is the decoded subject line.
	Subject string
	// Text and HTML are the decoded bodies; either may be empty, not both.
	Text string
	HTML string
	// MessageID is the Message-ID header value including angle brackets.
	MessageID string
	// Headers are the extra headers that API providers must carry over when they build
	// the message themselves: List-Unsubscribe, List-Unsubscribe-Post, Precedence and the
	// campaign's own headers. Values never contain CR or LF.
	Headers []Header
	// Raw is the complete RFC 5322 message with CRLF line endings, exactly as herald
	// rendered (and, when configured, signed) it. Providers that accept raw MIME (SMTP,
	// SES, Mandrill, file) send these bytes unchanged.
	Raw []byte
	// Attachments are the message's files (already in Raw), for the providers that build
	// the message themselves: attachments, and inline images (ContentID set).
	Attachments []Attachment
}

// Attachment is a file of a message.
type Attachment struct {
	Name, ContentType, ContentID string
	Data                         []byte
}

// Header is one extra header field.
type Header struct {
	Name  string
	Value string
}

// Sender returns the envelope sender: ReturnPath when set, else FromAddress.
func (m *Message) Sender() string {
	if m.ReturnPath != "" {
		return m.ReturnPath
	}
	return m.FromAddress
}

// Receipt is the provider's acknowledgement of an accepted message.
type Receipt struct {
	// MessageID is the provider's id for the message (SMTP: the Message-ID or the queue
	// id the server returned; APIs: their own id).
	MessageID string
}

// Kind classifies a provider error by what the pipeline should do with it.
type Kind int

const (
	// Temporary failures are retried with backoff, within the run and by later runs.
	Temporary Kind = iota
	// Permanent failures are recorded and never retried.
	Permanent
	// Fatal errors stop the run at once.
	Fatal
	// Unknown means the message may have been delivered; it is never resent automatically.
	Unknown
)

func (k Kind) String() string {
	switch k {
	case Temporary:
		return "temporary"
	case Permanent:
		return "permanent"
	case Fatal:
		return "fatal"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the one error type providers return.
type Error struct {
	// Provider is the provider's name; Error() starts with it.
	Provider string
	// Kind says what to do with the failure.
	Kind Kind
	// Code is the SMTP reply code or HTTP status, when there is one.
	Code int
	// Enhanced is the SMTP enhanced status code ("5.1.1") or the API's error name.
	Enhanced string
	// Message is the server's or API's own text (never a secret).
	Message string
	// RetryAfter is how long the provider asked to wait before retrying (0: not said).
	RetryAfter time.Duration
	// Bounce marks a permanent failure caused by the address itself: suppress it.
	Bounce bool
	// Connection marks a temporary failure of the connection or service as a whole
	// (refused, dropped, timed out) rather than of this message; the pipeline uses it
	// to detect a relay that is down.
	Connection bool
	// SlowDown asks the pipeline to lower its sending rate (a provider's throttling).
	SlowDown bool
	// Err is the underlying error, if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Provider)
	b.WriteString(": ")
	b.WriteString(e.Kind.String())
	if e.Code != 0 {
		fmt.Fprintf(&b, " %d", e.Code)
	}
	if e.Enhanced != "" {
		b.WriteString(" ")
		b.WriteString(e.Enhanced)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	} else if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf classifies any error: the Kind of an *Error in its chain; Temporary otherwise,
// and for context cancellation as well (the recipient was not handed over).
func KindOf(err error) Kind {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return Temporary
}

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// Spec is what a provider is built from: its block of the campaign file and the world
// around it. It is handed to a Registration's Check and Open.
type Spec struct {
	// Kind is the provider kind named in the campaign file.
	Kind string
	// Decode strictly decodes the provider block (all keys but `kind`) into the
	// provider's own config struct (yaml tags); an unknown key is an error.
	Decode func(into any) error
	// BaseDir is the campaign file's folder; relative paths in the block are relative to it.
	BaseDir string
	// Getenv reads the environment (secrets come only from there).
	Getenv func(string) string
	// Warnf reports a warning for the human watching (insecure settings, capped rate).
	Warnf func(format string, args ...any)
	// Campaign is the campaign's journal name.
	Campaign string
	// Headers are the campaign's own extra headers (its `headers:`), for the providers
	// that restrict which headers may be sent (SendGrid reserves some names).
	Headers map[string]string
	// Workers is the most Send calls the pipeline will make at once (the campaign's
	// workers); providers that keep connections size their pool to it. 0: not known
	// (a preview or a test send), the provider's own default applies.
	Workers int
}

// Path resolves p relative to BaseDir.
func (s Spec) Path(p string) string {
	if p == "" || strings.HasPrefix(p, "/") || s.BaseDir == "" {
		return p
	}
	return s.BaseDir + "/" + p
}

// Warn calls Warnf when it is set.
func (s Spec) Warn(format string, args ...any) {
	if s.Warnf != nil {
		s.Warnf(format, args...)
	}
}

// Env reads a variable through Getenv (or returns "" when Getenv is nil).
func (s Spec) Env(name string) string {
	if s.Getenv == nil {
		return ""
	}
	return s.Getenv(name)
}

// Registration ties a provider kind to its constructor.
type Registration struct {
	Kind string
	// Check validates the settings without connecting. With secrets set it also checks
	// that the secret environment variables the settings name are present.
	Check func(s Spec, secrets bool) error
	// Open builds a provider ready to send. It may contact the service (to read quotas).
	Open func(ctx context.Context, s Spec) (Provider, error)
}

// Registry maps kinds to registrations. It is built explicitly (see providers/all),
// never by init-time side effects.
type Registry map[string]Registration

// Kinds lists the registered kinds, sorted.
func (r Registry) Kinds() []string {
	out := make([]string, 0, len(r))
	for k := range r {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the registration of kind or an error naming the known kinds.
func (r Registry) Lookup(kind string) (Registration, error) {
	reg, ok := r[kind]
	if !ok {
		return Registration{}, fmt.Errorf("unknown provider kind %q (known: %s)", kind, strings.Join(r.Kinds(), ", "))
	}
	return reg, nil
}

// Secret holds a credential. It formats as "[redacted]" with every fmt verb, so it can
// never leak into a log, an error or a journal by accident; Reveal returns the value.
// The value sits behind a function: even where fmt cannot call Format (a Secret in an
// unexported field of a struct printed with %+v), it prints a function's address.
type Secret struct{ v func() string }

// NewSecret wraps a credential.
func NewSecret(v string) Secret { return Secret{v: func() string { return v }} }

// Reveal returns the credential itself; call it only where the credential is used.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return s.v()
}

// Empty reports whether no credential is set.
func (s Secret) Empty() bool { return s.Reveal() == "" }

// String implements fmt.Stringer.
func (s Secret) String() string { return "[redacted]" }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return "[redacted]" }

// Format implements fmt.Formatter so that every verb redacts.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[redacted]")) }

// MarshalText implements encoding.TextMarshaler (JSON, YAML) with the redacted form.
func (s Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// SecretFromEnv reads the secret named by variable, with an error naming the variable
// (never the value) when it is empty. A variable that does not look like a name is
// refused without being echoed (see CheckEnvName).
func SecretFromEnv(s Spec, provider, key, variable string) (Secret, error) {
	if variable == "" {
		return Secret{}, fmt.Errorf("%s: %s is required (the name of the environment variable holding the secret)", provider, key)
	}
	if err := CheckEnvName(provider, key, variable); err != nil {
		return Secret{}, err
	}
	v := s.Env(variable)
	if v == "" {
		return Secret{}, fmt.Errorf("%s: environment variable %s (named by %s) is not set", provider, variable, key)
	}
	return NewSecret(v), nil
}
