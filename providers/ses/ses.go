// Package ses delivers herald's messages through Amazon SES v2 (SendEmail with raw
// content), so every header herald rendered, List-Unsubscribe included, reaches the
// recipient unchanged.
//
// Credentials come from the standard AWS chain (environment, shared files, instance or
// task roles); the campaign file names only the region, an optional configuration set
// and an optional endpoint for a local emulator. The SDK's own retries are switched off:
// herald's pipeline owns retries and rate limits.
//
// At Open the provider reads the account (ses:GetAccount) to refuse a paused or shut
// down account before anything is sent, to cap the sending rate at the account's
// maximum (Capabilities().MaxRate) and to report the remaining 24-hour quota (Quota).
// An account still in the SES sandbox (ProductionAccessEnabled false) is reported
// through the spec's warning hook; the registration's Check does not connect, so
// `herald validate` cannot tell.
//
// SES takes ASCII addresses only: internationalised domains are sent in Punycode (see
// ASCIIAddress). How SES's answers are classified, the sender rejections among them, is
// described at classify.
package ses

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"golang.org/x/net/idna"

	"github.com/heraldmail/herald/providers"
)

// Kind is the provider kind named in a campaign file.
const Kind = "ses"

// Config is the `provider:` block of a campaign file for kind ses.
type Config struct {
	// Region is the AWS region, e.g. eu-west-1. When empty, the region of the standard
	// AWS configuration (AWS_REGION, the shared config profile) is used.
	Region string `yaml:"region"`
	// ConfigurationSet is the SES configuration set every message is sent with
	// (event publishing, dedicated IPs); optional.
	ConfigurationSet string `yaml:"configuration_set"`
	// Endpoint is a base URL that replaces the SES service address, e.g.
	// http://127.0.0.1:8005 for a local emulator; optional.
	Endpoint string `yaml:"endpoint"`
	// Workers is the most Send calls made at once: the SDK's connection pool keeps one
	// connection per worker (see providers.SizePool). It comes from the campaign's
	// workers, never from the provider block; 0 when not known.
	Workers int `yaml:"-"`
}

// Validate checks the settings without contacting anything.
func (c Config) Validate() error {
	if c.Region != "" && !validRegion(c.Region) {
		return fmt.Errorf("ses: region %q is not a region name (like eu-west-1)", c.Region)
	}
	if c.ConfigurationSet != "" && !validName(c.ConfigurationSet, 64) {
		return fmt.Errorf("ses: configuration_set %q: use at most 64 letters, digits, '_' or '-'", c.ConfigurationSet)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil {
			return fmt.Errorf("ses: endpoint %q is not a URL: %v", c.Endpoint, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("ses: endpoint %q must be an http or https base URL such as http://127.0.0.1:8005", c.Endpoint)
		}
	}
	return nil
}

func validRegion(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func validName(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for _, r := range s {
		if !tagRune(r) {
			return false
		}
	}
	return true
}

// Registration returns the registration of kind ses for a providers.Registry.
func Registration() providers.Registration {
	return providers.Registration{Kind: Kind, Check: check, Open: open}
}

func decode(s providers.Spec) (Config, error) {
	var c Config
	if s.Decode != nil {
		if err := s.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("ses: provider settings: %w", err)
		}
	}
	return c, c.Validate()
}

// check validates the block. The AWS credential chain has no variable that must be
// set (a role can supply credentials), so secrets adds only the region check.
func check(s providers.Spec, secrets bool) error {
	c, err := decode(s)
	if err != nil {
		return err
	}
	if secrets && c.Region == "" && s.Env("AWS_REGION") == "" && s.Env("AWS_DEFAULT_REGION") == "" {
		return errors.New("ses: region is required (set `region:` in the provider block or AWS_REGION)")
	}
	return nil
}

func open(ctx context.Context, s providers.Spec) (providers.Provider, error) {
	c, err := decode(s)
	if err != nil {
		return nil, err
	}
	c.Workers = s.Workers
	client, err := NewClient(ctx, c)
	if err != nil {
		return nil, err
	}
	return New(ctx, client, c, s.Warn)
}

// NewClient builds an SES v2 client for c: credentials and region from the standard AWS
// chain (c.Region wins), c.Endpoint as the base endpoint, the SDK's retries off and its
// connection pool sized to c.Workers. loadOpts are handed to config.LoadDefaultConfig
// after these (tests pass static credentials here).
func NewClient(ctx context.Context, c Config, loadOpts ...func(*config.LoadOptions) error) (*sesv2.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := make([]func(*config.LoadOptions) error, 0, len(loadOpts)+2)
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	// The SDK's own client keeps 10 idle connections per host: more workers than that
	// would re-dial after nearly every request.
	opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		providers.SizePool(tr, c.Workers)
	})))
	opts = append(opts, loadOpts...)
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("ses: loading the AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("ses: no region: set `region:` in the provider block or AWS_REGION")
	}
	return sesv2.NewFromConfig(awsCfg, ClientOptions(c)), nil
}

// ClientOptions returns the client settings herald needs on any SES v2 client: the
// SDK's retries off (herald's pipeline retries), c.Endpoint as the base endpoint and
// request bodies sent through bodyClient.
func ClientOptions(c Config) func(*sesv2.Options) {
	return func(o *sesv2.Options) {
		if o.HTTPClient == nil {
			o.HTTPClient = awshttp.NewBuildableClient()
		}
		o.HTTPClient = bodyClient{o.HTTPClient}
		o.Retryer = aws.NopRetryer{}
		o.RetryMaxAttempts = 1
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(strings.TrimRight(c.Endpoint, "/"))
		}
	}
}

// bodyClient sends the SDK's requests with their body seen only as an io.ReadCloser.
//
// The SDK closes a request's body as soon as the answer is back, and its body then
// answers WriteTo with io.EOF. net/http, once it has sent the body, reads on to check
// that nothing is left, through WriteTo when the body has one: when the answer arrived
// first (a fast service, a loaded machine), that read fails with EOF, and the transport
// drops the connection as if the write had failed (and reports it so to a client trace's
// WroteRequest): the next request of that worker dials again. Without WriteTo the check
// goes through Read, which answers a closed body with a plain end of data.
type bodyClient struct{ c sesv2.HTTPClient }

func (b bodyClient) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = readCloser{r.Body}
	}
	return b.c.Do(r)
}

// readCloser hides every method of its io.ReadCloser but Read and Close.
type readCloser struct{ io.ReadCloser }

// API is the part of the SES v2 client the provider uses; *sesv2.Client implements it.
type API interface {
	SendEmail(ctx context.Context, in *sesv2.SendEmailInput, optFns ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error)
	GetAccount(ctx context.Context, in *sesv2.GetAccountInput, optFns ...func(*sesv2.Options)) (*sesv2.GetAccountOutput, error)
}

// Provider sends through SES v2. It is safe for concurrent use.
type Provider struct {
	client API
	cfg    Config
	caps   providers.Capabilities
	// remaining is the 24-hour quota left when the account was read; known says
	// whether it could be read.
	remaining float64
	known     bool
	// sandbox is set when the account could be read and has no production access.
	sandbox bool
	closed  atomic.Bool
}

var _ providers.Provider = (*Provider)(nil)

// New builds a provider around client and reads the account (ses:GetAccount):
//   - not allowed to read it: warns through warn and goes on at the campaign's rate;
//   - sending disabled or enforcement status SHUTDOWN: refuses with a Fatal error;
//   - bad credentials or signature: refuses with a Fatal error;
//   - SES unreachable: returns a Temporary error marked Connection;
//   - any other failure to read it: warns and goes on;
//   - otherwise: the account's maximum send rate becomes Capabilities().MaxRate and its
//     remaining 24-hour quota is reported by Quota; an account in the sandbox
//     (ProductionAccessEnabled false) is reported through warn and by Sandbox.
//
// warn may be nil.
func New(ctx context.Context, client API, c Config, warn func(format string, args ...any)) (*Provider, error) {
	if client == nil {
		return nil, errors.New("ses: no SES client")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if warn == nil {
		warn = func(string, ...any) {}
	}
	p := &Provider{client: client, cfg: c, caps: providers.Capabilities{BatchSize: 1}}
	if err := p.readAccount(ctx, warn); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Provider) readAccount(ctx context.Context, warn func(string, ...any)) error {
	var wrote atomic.Bool
	acct, err := p.client.GetAccount(providers.TraceRequestWritten(ctx, &wrote), &sesv2.GetAccountInput{})
	if err != nil {
		if code := apiCode(err); code == "AccessDenied" || code == "AccessDeniedException" {
			warn("cannot read the SES account (ses:GetAccount not allowed); sending at the campaign's rate")
			return nil
		}
		pe := classify(err, wrote.Load(), ids{})
		switch {
		case ctx.Err() != nil:
			return &providers.Error{Provider: Kind, Kind: providers.Temporary, Message: "reading the SES account: " + ctx.Err().Error(), Err: err}
		case pe.Kind == providers.Fatal:
			pe.Message = "reading the SES account: " + pe.Message
			return pe
		case pe.Connection || pe.Kind == providers.Unknown:
			return &providers.Error{Provider: Kind, Kind: providers.Temporary, Connection: true,
				Message: fmt.Sprintf("cannot reach SES%s: %s", p.where(), pe.Message), Err: err}
		}
		warn("cannot read the SES account (%s); sending at the campaign's rate", pe.Message)
		return nil
	}
	if !acct.SendingEnabled {
		return &providers.Error{Provider: Kind, Kind: providers.Fatal, Enhanced: "SendingDisabled",
			Message: "sending is disabled for this SES account" + p.regionNote()}
	}
	if st := aws.ToString(acct.EnforcementStatus); strings.EqualFold(st, "SHUTDOWN") {
		return &providers.Error{Provider: Kind, Kind: providers.Fatal, Enhanced: "SHUTDOWN",
			Message: "the SES account is shut down (enforcement status SHUTDOWN)" + p.regionNote()}
	}
	if !acct.ProductionAccessEnabled {
		p.sandbox = true
		warn("the SES account%s is in the sandbox (GetAccount: ProductionAccessEnabled false): it sends only to verified addresses and domains and rejects every other recipient; request production access in the SES console before sending a campaign", p.regionNote())
	}
	if q := acct.SendQuota; q != nil {
		if q.MaxSendRate > 0 {
			p.caps.MaxRate = q.MaxSendRate
		}
		switch {
		case q.Max24HourSend < 0: // SES reports an unlimited quota as -1
			p.remaining, p.known = math.Inf(1), true
		default:
			p.remaining, p.known = math.Max(0, q.Max24HourSend-q.SentLast24Hours), true
		}
	}
	return nil
}

func (p *Provider) where() string {
	if p.cfg.Endpoint != "" {
		return " at " + p.cfg.Endpoint
	}
	return p.regionNote()
}

func (p *Provider) regionNote() string {
	if p.cfg.Region != "" {
		return " in " + p.cfg.Region
	}
	return ""
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Kind }

// Capabilities implements providers.Provider: MaxRate is the account's maximum send rate
// when it could be read.
func (p *Provider) Capabilities() providers.Capabilities { return p.caps }

// Quota returns the account's remaining 24-hour sending quota (Max24HourSend minus
// SentLast24Hours, +Inf when the quota is unlimited) as read at Open; known is false when
// the account could not be read.
func (p *Provider) Quota() (remaining float64, known bool) { return p.remaining, p.known }

// Sandbox reports whether the account, as read at Open, is in the SES sandbox (it can
// send only to verified identities). It is false when the account could not be read.
func (p *Provider) Sandbox() bool { return p.sandbox }

// Send implements providers.Provider: one SendEmail call with msg.Raw as raw content.
func (p *Provider) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	if p.closed.Load() {
		return providers.Receipt{}, &providers.Error{Provider: Kind, Kind: providers.Fatal, Message: "provider is closed"}
	}
	if msg == nil || len(msg.Raw) == 0 || msg.To == "" {
		return providers.Receipt{}, &providers.Error{Provider: Kind, Kind: providers.Permanent, Message: "message has no recipient or no raw content"}
	}
	in, err := p.input(msg)
	if err != nil {
		return providers.Receipt{}, err
	}
	var wrote atomic.Bool
	out, err := p.client.SendEmail(providers.TraceRequestWritten(ctx, &wrote), in)
	if err != nil {
		return providers.Receipt{}, classify(err, wrote.Load(), ids{from: msg.FromAddress, returnPath: msg.ReturnPath, to: msg.To})
	}
	id := aws.ToString(out.MessageId)
	if id == "" {
		return providers.Receipt{}, &providers.Error{Provider: Kind, Kind: providers.Unknown,
			Message: "SES accepted the request but returned no message id"}
	}
	return providers.Receipt{MessageID: id}, nil
}

// input builds the SendEmail request. SES takes only ASCII addresses in its parameters:
// an internationalised domain is sent in its Punycode form (xn--…); an address whose
// local part is not ASCII cannot be sent through SES (Permanent for a recipient, Fatal
// for the campaign's own addresses).
func (p *Provider) input(msg *providers.Message) (*sesv2.SendEmailInput, error) {
	to, err := ASCIIAddress(msg.To)
	if err != nil {
		return nil, &providers.Error{Provider: Kind, Kind: providers.Permanent, Message: "recipient " + err.Error()}
	}
	in := &sesv2.SendEmailInput{
		Content:     &types.EmailContent{Raw: &types.RawMessage{Data: msg.Raw}},
		Destination: &types.Destination{ToAddresses: []string{to}},
	}
	if msg.FromAddress != "" {
		from, err := ASCIIAddress(msg.FromAddress)
		if err != nil {
			return nil, &providers.Error{Provider: Kind, Kind: providers.Fatal, Message: "from " + err.Error()}
		}
		in.FromEmailAddress = aws.String(from)
	}
	// SES v2 has no envelope sender of its own choosing; the nearest is the address
	// bounces and complaints are forwarded to.
	if msg.ReturnPath != "" && !strings.EqualFold(msg.ReturnPath, msg.FromAddress) {
		rp, err := ASCIIAddress(msg.ReturnPath)
		if err != nil {
			return nil, &providers.Error{Provider: Kind, Kind: providers.Fatal, Message: "return_path " + err.Error()}
		}
		in.FeedbackForwardingEmailAddress = aws.String(rp)
	}
	if p.cfg.ConfigurationSet != "" {
		in.ConfigurationSetName = aws.String(p.cfg.ConfigurationSet)
	}
	if v := TagValue(msg.Campaign); v != "" {
		in.EmailTags = []types.MessageTag{{Name: aws.String("campaign"), Value: aws.String(v)}}
	}
	return in, nil
}

// ASCIIAddress returns addr with its domain in ASCII (IDNA Punycode, e.g.
// jose@xn--bcher-kva.example for jose@bücher.example), or an error naming the address
// when its local part is not ASCII or its domain is not a valid IDN.
func ASCIIAddress(addr string) (string, error) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", fmt.Errorf("address %q has no local part or domain", addr)
	}
	local, domain := addr[:i], addr[i+1:]
	if !isASCII(local) {
		return "", fmt.Errorf("address %q: SES accepts only ASCII before the @", addr)
	}
	if isASCII(domain) {
		return addr, nil
	}
	d, err := idna.Lookup.ToASCII(domain)
	if err != nil {
		return "", fmt.Errorf("address %q: the domain is not a valid internationalised domain name: %v", addr, err)
	}
	return local + "@" + d, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Close implements providers.Provider. The SDK keeps no connection that needs closing;
// after Close, Send refuses. It is safe to call more than once.
func (p *Provider) Close() error {
	p.closed.Store(true)
	return nil
}

// TagValue turns s into a valid SES message tag value: every character other than ASCII
// letters, digits, '_' and '-' becomes '_', and the result is cut to 256 characters.
func TagValue(s string) string {
	if len(s) > 256 {
		s = s[:256]
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if !tagRune(rune(s[i])) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if tagRune(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() == 256 {
			break
		}
	}
	return b.String()
}

func tagRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
}
