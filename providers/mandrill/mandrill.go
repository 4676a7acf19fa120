package mandrill

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/heraldmail/herald/providers"
)

// Name is the provider kind and the prefix of every error.
const Name = "mandrill"

const (
	// DefaultEndpoint is the Mandrill API base URL used when `endpoint` is not set.
	DefaultEndpoint = "https://mandrillapp.com"
	// DefaultTimeout bounds one API request when `timeout` is not set.
	DefaultTimeout = 30 * time.Second
	// sendRawPath is appended to the endpoint.
	sendRawPath = "/api/1.0/messages/send-raw.json"
)

// Config is the `provider:` block of a campaign with kind mandrill.
type Config struct {
	// APIKeyEnv names the environment variable that holds the API key (required).
	APIKeyEnv string `yaml:"api_key_env"`
	// Endpoint replaces https://mandrillapp.com (scheme, host and an optional path
	// prefix); /api/1.0/messages/send-raw.json is appended.
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
	if _, err := sendRawURL(c.Endpoint); err != nil {
		return err
	}
	return providers.CheckTimeout(Name, c.Timeout)
}

// sendRawURL builds the send-raw URL from an endpoint base URL.
func sendRawURL(endpoint string) (string, error) {
	return providers.APIURL(Name, endpoint, DefaultEndpoint, sendRawPath)
}

// Registration returns the mandrill kind for a providers.Registry.
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
	key, err := providers.SecretFromEnv(s, Name, "api_key_env", c.APIKeyEnv)
	if err != nil {
		return nil, err
	}
	c.Workers = s.Workers
	return New(c, key)
}

// Provider sends through Mandrill's messages/send-raw call. It is safe for concurrent
// use.
type Provider struct {
	url       string
	key       providers.Secret
	redact    providers.Redactor
	client    *http.Client
	transport *http.Transport
	closed    atomic.Bool
}

// New builds a provider from c (unset fields take their defaults; APIKeyEnv is not
// read) and the API key itself. It does not contact Mandrill.
func New(c Config, key providers.Secret) (*Provider, error) {
	c = c.withDefaults()
	u, err := sendRawURL(c.Endpoint)
	if err != nil {
		return nil, err
	}
	if err := providers.CheckTimeout(Name, c.Timeout); err != nil {
		return nil, err
	}
	if key.Empty() {
		return nil, fmt.Errorf("%s: the API key is empty", Name)
	}
	// The client follows no redirect: the 3xx answer is classified instead of re-posting
	// the body (and its key) elsewhere.
	client, tr := providers.NewAPIClient(c.Timeout, c.Workers)
	return &Provider{url: u, key: key, redact: providers.NewRedactor("", key), client: client, transport: tr}, nil
}

// Name returns "mandrill".
func (p *Provider) Name() string { return Name }

// Capabilities declares no limits of Mandrill's own: the campaign's rate governs.
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

// sendRawRequest is the documented body of messages/send-raw.
type sendRawRequest struct {
	Key        string   `json:"key"`
	RawMessage string   `json:"raw_message"`
	FromEmail  string   `json:"from_email,omitempty"`
	FromName   string   `json:"from_name,omitempty"`
	To         []string `json:"to"`
	Async      bool     `json:"async"`
	// ReturnPathDomain is the domain of the campaign's return path: Mandrill builds its
	// own bounce address on it (the domain must be set up as a tracking/return-path
	// domain in Mandrill).
	ReturnPathDomain string `json:"return_path_domain,omitempty"`
}

// body builds the JSON request for msg. The raw message travels as a JSON string, so it
// must be UTF-8 (herald renders 7-bit or UTF-8 MIME); other bytes would be altered.
func body(key providers.Secret, msg *providers.Message) ([]byte, error) {
	if msg == nil {
		return nil, &providers.Error{Provider: Name, Kind: providers.Permanent, Message: "no message"}
	}
	if msg.To == "" {
		return nil, &providers.Error{Provider: Name, Kind: providers.Permanent, Message: "message has no recipient"}
	}
	if len(msg.Raw) == 0 {
		return nil, &providers.Error{Provider: Name, Kind: providers.Permanent, Message: "message to " + msg.To + " has no raw MIME content"}
	}
	if !utf8.Valid(msg.Raw) {
		return nil, &providers.Error{Provider: Name, Kind: providers.Permanent, Message: "message to " + msg.To + " is not valid UTF-8 and cannot travel in a JSON string unchanged"}
	}
	// Mandrill's sender checks, sending-domain verification and DKIM signing key off
	// from_email: it is the From address, never the bounce address.
	req := sendRawRequest{
		Key:        key.Reveal(),
		RawMessage: string(msg.Raw),
		FromEmail:  msg.FromAddress,
		To:         []string{msg.To},
		Async:      false,
	}
	if a, err := mail.ParseAddress(msg.From); err == nil {
		req.FromName = a.Name
		if req.FromEmail == "" {
			req.FromEmail = a.Address
		}
	}
	if msg.ReturnPath != "" && !strings.EqualFold(msg.ReturnPath, req.FromEmail) {
		if i := strings.LastIndexByte(msg.ReturnPath, '@'); i >= 0 && i < len(msg.ReturnPath)-1 {
			req.ReturnPathDomain = msg.ReturnPath[i+1:]
		}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, &providers.Error{Provider: Name, Kind: providers.Permanent, Message: "cannot encode the message to " + msg.To}
	}
	return b, nil
}

// Send posts msg to messages/send-raw and classifies the answer (see the package
// documentation).
func (p *Provider) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	r, err := p.send(ctx, msg)
	return p.redact.Receipt(r), p.redact.Error(err)
}

func (p *Provider) send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	b, err := body(p.key, msg)
	if err != nil {
		return providers.Receipt{}, err
	}
	a, err := providers.PostJSON(ctx, p.client, Name, p.url, nil, b)
	if err != nil {
		return providers.Receipt{}, err
	}
	if a.Cut != nil {
		// The request was handled; only its answer was lost.
		return providers.Receipt{}, a.Cut
	}
	r, err := classify(a.Status, a.Header, p.redact.Bytes(a.Body), msg.To)
	if err == nil && r.MessageID == "" {
		r.MessageID = msg.MessageID
	}
	return r, err
}
