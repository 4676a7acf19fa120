package sendgrid

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	sgmail "github.com/sendgrid/sendgrid-go/helpers/mail"

	"github.com/heraldmail/herald/providers"
)

// Name is the provider kind and the prefix of every error.
const Name = "sendgrid"

const (
	// DefaultEndpoint is the SendGrid API base URL used when `endpoint` is not set.
	DefaultEndpoint = "https://api.sendgrid.com"
	// DefaultTimeout bounds one API request when `timeout` is not set.
	DefaultTimeout = 30 * time.Second
	// sendPath is appended to the endpoint.
	sendPath = "/v3/mail/send"
)

// Config is the `provider:` block of a campaign with kind sendgrid.
type Config struct {
	// APIKeyEnv names the environment variable that holds the API key (required).
	APIKeyEnv string `yaml:"api_key_env"`
	// Endpoint replaces https://api.sendgrid.com (scheme, host and an optional path
	// prefix); /v3/mail/send is appended.
	Endpoint string `yaml:"endpoint"`
	// Timeout bounds one API request, connection included (default 30s).
	Timeout time.Duration `yaml:"timeout"`
	// Workers is the most Send calls made at once: the connection pool keeps one
	// connection per worker (see providers.SizePool). It comes from the campaign's
	// workers, never from the provider block; 0 when not known.
	Workers int `yaml:"-"`
}

// withDefaults returns c with every unset field at its default. It is the one place
// defaults are decided.
func (c Config) withDefaults() Config {
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// validate checks c (after defaults) without touching the network or the environment.
func (c Config) validate() error {
	if c.APIKeyEnv == "" {
		return fmt.Errorf("%s: api_key_env is required (the name of the environment variable holding the API key)", Name)
	}
	if err := providers.CheckEnvName(Name, "api_key_env", c.APIKeyEnv); err != nil {
		return err
	}
	if _, err := sendURL(c.Endpoint); err != nil {
		return err
	}
	return providers.CheckTimeout(Name, c.Timeout)
}

// sendURL builds the mail send URL from an endpoint base URL.
func sendURL(endpoint string) (string, error) {
	return providers.APIURL(Name, endpoint, DefaultEndpoint, sendPath)
}

// Registration returns the sendgrid kind for a providers.Registry.
func Registration() providers.Registration {
	return providers.Registration{Kind: Name, Check: check, Open: open}
}

func decode(s providers.Spec) (Config, error) {
	var c Config
	if s.Decode != nil {
		if err := s.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("%s: provider settings: %w", Name, err)
		}
	}
	c = c.withDefaults()
	return c, c.validate()
}

func check(s providers.Spec, secrets bool) error {
	c, err := decode(s)
	if err != nil {
		return err
	}
	if err := CheckHeaders(s.Headers); err != nil {
		return err
	}
	if secrets {
		_, err = providers.SecretFromEnv(s, Name, "api_key_env", c.APIKeyEnv)
	}
	return err
}

func open(_ context.Context, s providers.Spec) (providers.Provider, error) {
	c, err := decode(s)
	if err != nil {
		return nil, err
	}
	if err := CheckHeaders(s.Headers); err != nil {
		return nil, err
	}
	key, err := providers.SecretFromEnv(s, Name, "api_key_env", c.APIKeyEnv)
	if err != nil {
		return nil, err
	}
	c.Workers = s.Workers
	return New(c, key)
}

// Provider sends through the SendGrid Mail Send API. It is safe for concurrent use.
type Provider struct {
	url       string
	key       providers.Secret
	redact    providers.Redactor
	client    *http.Client
	transport *http.Transport
	now       func() time.Time
	closed    atomic.Bool
}

// New builds a provider from c (unset fields take their defaults; APIKeyEnv is not
// read) and the API key itself. It does not contact SendGrid.
func New(c Config, key providers.Secret) (*Provider, error) {
	c = c.withDefaults()
	u, err := sendURL(c.Endpoint)
	if err != nil {
		return nil, err
	}
	if err := providers.CheckTimeout(Name, c.Timeout); err != nil {
		return nil, err
	}
	if key.Empty() {
		return nil, fmt.Errorf("%s: the API key is empty", Name)
	}
	if strings.ContainsFunc(key.Reveal(), func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return nil, fmt.Errorf("%s: the API key contains spaces or control characters", Name)
	}
	// The client follows no redirect: the 3xx answer itself is classified.
	client, tr := providers.NewAPIClient(c.Timeout, c.Workers)
	return &Provider{url: u, key: key, redact: providers.NewRedactor("", key), client: client, transport: tr, now: time.Now}, nil
}

// Name returns "sendgrid".
func (p *Provider) Name() string { return Name }

// Capabilities declares no limits of SendGrid's own: the campaign's rate governs.
func (p *Provider) Capabilities() providers.Capabilities { return providers.Capabilities{} }

// Close releases idle connections. It is safe to call more than once; Send keeps working
// afterwards (it opens new connections).
func (p *Provider) Close() error {
	if !p.closed.Swap(true) {
		p.transport.CloseIdleConnections()
	}
	return nil
}

// String describes the provider without its key.
func (p *Provider) String() string { return fmt.Sprintf("%s(%s)", Name, p.url) }

// Format makes every fmt verb (%v, %+v, %#v, %s, …) print String, so the key held in an
// unexported field can never be printed.
func (p *Provider) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

// Send posts msg to /v3/mail/send and classifies the answer (see the package
// documentation). The request is built per call: the library's own client keeps its
// request (and body) in shared fields and is not safe for concurrent use.
func (p *Provider) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	r, err := p.send(ctx, msg)
	return p.redact.Receipt(r), p.redact.Error(err)
}

func (p *Provider) send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	body, err := Body(msg)
	if err != nil {
		return providers.Receipt{}, err
	}
	// Plain net/http rather than sendgrid.MakeRequestWithContext: the library sends
	// through a package-level client without a timeout and hides whether the request
	// reached the server; here each provider owns a client with a timeout and a
	// transport it can close, and PostJSON tells "not sent" from "maybe sent". An answer
	// cut off is classified by what arrived: the status decides.
	a, err := providers.PostJSON(ctx, p.client, Name, p.url, http.Header{"Authorization": {"Bearer " + p.key.Reveal()}}, body)
	if err != nil {
		return providers.Receipt{}, err
	}
	r, err := classify(a.Status, a.Header, p.redact.Bytes(a.Body), p.now())
	if err == nil && r.MessageID == "" {
		// SendGrid always sends X-Message-Id; a proxy might drop it.
		r.MessageID = msg.MessageID
	}
	return r, err
}

// Body builds the JSON request body for msg with the library's mail helpers. It is
// exported for tests and tools that want to see what herald sends.
//
// What SendGrid's API reference asks of a request, and herald does:
//   - names (to, from, reply_to) "cannot include ; or ,": those characters are removed
//     from the name (SendGrid accepts such a request with 202 and drops the mail later);
//   - custom_args hold no personal data: only {campaign};
//   - tracking_settings.subscription_tracking.enable is false, so an account with
//     subscription tracking on does not add its own unsubscribe links and
//     List-Unsubscribe headers next to herald's one-click pair;
//   - header values are ASCII: a non-ASCII value is RFC 2047 encoded (Q encoding);
//   - the reserved header names (see Reserved) are refused: a Fatal error, since every
//     message of the campaign carries the same headers;
//   - a category is at most 255 ASCII characters.
func Body(msg *providers.Message) ([]byte, error) {
	if msg == nil {
		return nil, &providers.Error{Provider: Name, Kind: providers.Permanent, Message: "no message"}
	}
	if msg.To == "" {
		return nil, &providers.Error{Provider: Name, Kind: providers.Permanent, Message: "message has no recipient"}
	}
	if msg.Text == "" && msg.HTML == "" {
		return nil, &providers.Error{Provider: Name, Kind: providers.Permanent, Message: "message to " + msg.To + " has neither a text nor an html body"}
	}
	m := sgmail.NewV3Mail()
	m.SetFrom(address(msg.From, msg.FromAddress))
	p := sgmail.NewPersonalization()
	p.AddTos(sgmail.NewEmail(DisplayName(msg.ToName), msg.To))
	p.Subject = msg.Subject
	m.AddPersonalizations(p)
	if msg.Text != "" {
		m.AddContent(sgmail.NewContent("text/plain", msg.Text))
	}
	if msg.HTML != "" {
		m.AddContent(sgmail.NewContent("text/html", msg.HTML))
	}
	for _, a := range msg.Attachments {
		att := sgmail.NewAttachment().SetFilename(a.Name).SetType(a.ContentType).
			SetContent(base64.StdEncoding.EncodeToString(a.Data)).SetDisposition("attachment")
		if a.ContentID != "" {
			att.SetDisposition("inline").SetContentID(a.ContentID)
		}
		m.AddAttachment(att)
	}
	for _, h := range msg.Headers {
		if Reserved(h.Name) {
			return nil, &providers.Error{Provider: Name, Kind: providers.Fatal, Enhanced: "headers",
				Message: "header " + h.Name + " is reserved by SendGrid and cannot be sent (remove it from `headers:`)"}
		}
		m.SetHeader(h.Name, headerValue(h.Value))
	}
	if msg.ReplyTo != "" {
		m.SetReplyTo(address(msg.ReplyTo, msg.ReplyTo))
	}
	if msg.Campaign != "" {
		m.SetCustomArg("campaign", msg.Campaign)
		if c := Category(msg.Campaign); c != "" {
			m.AddCategories(c)
		}
	}
	m.SetTrackingSettings(sgmail.NewTrackingSettings().
		SetSubscriptionTracking(sgmail.NewSubscriptionTrackingSetting().SetEnable(false)))
	// json.Marshal rather than mail.GetRequestBody, which logs a failure through the
	// global logger and returns nil instead of an error.
	b, err := json.Marshal(m)
	if err != nil {
		return nil, &providers.Error{Provider: Name, Kind: providers.Permanent, Message: "cannot encode the message to " + msg.To, Err: err}
	}
	return b, nil
}

// address parses a header value like `"Acme News" <news@acme.example>` into a name (with
// ',' and ';' removed) and an address; when it does not parse, bare is used as the address.
func address(header, bare string) *sgmail.Email {
	if a, err := mail.ParseAddress(header); err == nil {
		return sgmail.NewEmail(DisplayName(a.Name), a.Address)
	}
	return sgmail.NewEmail("", bare)
}

// DisplayName returns a display name fit for SendGrid, whose API reference says a name "cannot
// include ; or ,": those characters are removed and the spaces around them folded, so
// "Smith, Ann" becomes "Smith Ann". A name left empty is left out.
func DisplayName(name string) string {
	if !strings.ContainsAny(name, ",;") {
		return name
	}
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r == ',' || r == ';' {
			return ' '
		}
		return r
	}, name)), " ")
}

// reserved are the header names SendGrid's Mail Send reference does not let a request
// set in `headers` (compared without regard to case).
var reserved = []string{
	"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
	"content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc",
}

// Reserved reports whether SendGrid refuses name in a request's headers.
func Reserved(name string) bool {
	return slices.Contains(reserved, strings.ToLower(strings.TrimSpace(name)))
}

// CheckHeaders refuses a campaign whose `headers:` name a header SendGrid reserves.
func CheckHeaders(headers map[string]string) error {
	var bad []string
	for k := range headers {
		if Reserved(k) {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("%s: headers: SendGrid does not let a request set %s (reserved: %s); remove it from `headers:`",
		Name, strings.Join(bad, ", "), strings.Join(reserved, ", "))
}

// headerValue returns v as SendGrid wants header values: ASCII, with anything else
// encoded as an RFC 2047 encoded word (UTF-8, Q encoding).
func headerValue(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			return mime.QEncoding.Encode("utf-8", v)
		}
	}
	return v
}

// maxCategory is the longest category SendGrid accepts.
const maxCategory = 255

// Category turns a campaign name into a SendGrid category: printable ASCII only (any
// other character becomes '_') and at most 255 characters.
func Category(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() == maxCategory {
			break
		}
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}
