package mandrill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
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
	// maxResponse caps how much of an answer is read (one recipient's result is small).
	maxResponse = 1 << 20
	// maxIdlePerHost lets every worker keep its own kept-alive connection.
	maxIdlePerHost = 64
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
	if _, err := sendRawURL(c.Endpoint); err != nil {
		return err
	}
	if c.Timeout < 0 {
		return fmt.Errorf("%s: timeout %s is negative", Name, c.Timeout)
	}
	return nil
}

// sendRawURL builds the send-raw URL from an endpoint base URL.
func sendRawURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s: endpoint %q is not an http(s) base URL like %s", Name, endpoint, DefaultEndpoint)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%s: endpoint %q must not carry credentials, a query or a fragment", Name, u.Redacted())
	}
	return strings.TrimRight(u.String(), "/") + sendRawPath, nil
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
	return New(c, key)
}

// Provider sends through Mandrill's messages/send-raw call. It is safe for concurrent
// use.
type Provider struct {
	url       string
	key       providers.Secret
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
	if c.Timeout < 0 {
		return nil, fmt.Errorf("%s: timeout %s is negative", Name, c.Timeout)
	}
	if key.Empty() {
		return nil, fmt.Errorf("%s: the API key is empty", Name)
	}
	tr := newTransport()
	return &Provider{
		url:       u,
		key:       key,
		transport: tr,
		client: &http.Client{
			Transport: tr,
			Timeout:   c.Timeout,
			// A redirect means the endpoint is wrong: the 3xx answer is classified
			// instead of re-posting the body (and its key) elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

func newTransport() *http.Transport {
	if d, ok := http.DefaultTransport.(*http.Transport); ok {
		tr := d.Clone()
		tr.MaxIdleConnsPerHost = maxIdlePerHost
		return tr
	}
	return &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: maxIdlePerHost}
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
	To         []string `json:"to"`
	Async      bool     `json:"async"`
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
	b, err := json.Marshal(sendRawRequest{
		Key:        key.Reveal(),
		RawMessage: string(msg.Raw),
		FromEmail:  msg.Sender(),
		To:         []string{msg.To},
		Async:      false,
	})
	if err != nil {
		return nil, &providers.Error{Provider: Name, Kind: providers.Permanent, Message: "cannot encode the message to " + msg.To}
	}
	return b, nil
}

// Send posts msg to messages/send-raw and classifies the answer (see the package
// documentation).
func (p *Provider) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	b, err := body(p.key, msg)
	if err != nil {
		return providers.Receipt{}, err
	}
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, p.url, bytes.NewReader(b))
	if err != nil {
		return providers.Receipt{}, &providers.Error{Provider: Name, Kind: providers.Fatal, Message: "cannot build the request", Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "herald")
	resp, err := p.client.Do(req)
	if err != nil {
		return providers.Receipt{}, transportError(ctx, err, wrote.Load())
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
		_ = resp.Body.Close()
	}()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		// The request was handled; only its answer was lost.
		return providers.Receipt{}, &providers.Error{Provider: Name, Kind: providers.Unknown, Code: resp.StatusCode,
			Message: "answer cut off (the message may have been accepted): " + errText(ctx, err), Err: err}
	}
	r, err := classify(resp.StatusCode, resp.Header, redact(answer, p.key), msg.To)
	if err == nil && r.MessageID == "" {
		r.MessageID = msg.MessageID
	}
	return r, err
}

// transportError classifies a failed round trip: before the request was fully written
// nothing was handed over (temporary); after it, Mandrill may have accepted the message
// (unknown, never resent automatically).
func transportError(ctx context.Context, err error, wrote bool) error {
	if wrote {
		return &providers.Error{Provider: Name, Kind: providers.Unknown,
			Message: "no answer after the request was sent (the message may have been accepted): " + errText(ctx, err), Err: err}
	}
	if ctx.Err() != nil {
		return &providers.Error{Provider: Name, Kind: providers.Temporary, Message: "not sent: " + errText(ctx, err), Err: err}
	}
	return &providers.Error{Provider: Name, Kind: providers.Temporary, Connection: true, Message: "cannot reach the API: " + errText(ctx, err), Err: err}
}

func errText(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return ctx.Err().Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return "request timed out: " + ue.Err.Error()
		}
		return ue.Err.Error()
	}
	return err.Error()
}

// redact removes the key from an answer before any of it can reach an error, should a
// confused server or proxy echo the request back.
func redact(answer []byte, key providers.Secret) []byte {
	if key.Empty() {
		return answer
	}
	return bytes.ReplaceAll(answer, []byte(key.Reveal()), []byte("[redacted]"))
}
