// Package campaign is where lists, templates and providers meet: the campaign file, the
// sending pipeline (read → filter → render → rate limit → worker pool → provider), the
// retry policy and the journal that makes a campaign resumable.
package campaign

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/heraldmail/herald/campaign/journal"
)

// File is the campaign file as written (PRODUCT.md "The campaign file").
type File struct {
	Name            string            `yaml:"name"`
	From            string            `yaml:"from"`
	ReplyTo         string            `yaml:"reply_to"`
	ReturnPath      string            `yaml:"return_path"`
	Subject         string            `yaml:"subject"`
	HTML            string            `yaml:"html"`
	Text            string            `yaml:"text"`
	List            string            `yaml:"list"`
	ListEncoding    string            `yaml:"list_encoding"`
	ListDelimiter   string            `yaml:"list_delimiter"`
	ListEmailColumn string            `yaml:"list_email_column"`
	ToName          string            `yaml:"to_name"`
	Suppress        []string          `yaml:"suppress"`
	Headers         map[string]string `yaml:"headers"`
	Unsubscribe     struct {
		URL    string `yaml:"url"`
		Mailto string `yaml:"mailto"`
	} `yaml:"unsubscribe"`
	Provider yaml.Node `yaml:"provider"`
	Rate     string    `yaml:"rate"`
	Workers  int       `yaml:"workers"`
	Retry    struct {
		Attempts    int    `yaml:"attempts"`
		Backoff     string `yaml:"backoff"`
		MaxBackoff  string `yaml:"max_backoff"`
		GiveUpAfter string `yaml:"give_up_after"`
	} `yaml:"retry"`
	Store    string `yaml:"store"`
	Schedule string `yaml:"schedule"`
	Timezone string `yaml:"timezone"`
	// Policy: window, recipient_timezone, not_after, warmup, pause_if.
	Policy PolicyFile `yaml:",inline"`

	// Content (README "Markdown, layouts, attachments").
	Markdown         string            `yaml:"markdown"`
	Layout           string            `yaml:"layout"`
	InlineCSS        *bool             `yaml:"inline_css"`
	Attachments      []string          `yaml:"attachments"`
	AttachmentColumn string            `yaml:"attachment_column"`
	Inline           map[string]string `yaml:"inline"`
	ListID           string            `yaml:"list_id"`
	FeedbackID       string            `yaml:"feedback_id"`

	// Domains paces recipient domains beneath the campaign's rate (domains.go).
	Domains map[string]domainSpec `yaml:"domains"`
	// Fallback is a second provider block, used when the first fails (fallback.go).
	Fallback yaml.Node `yaml:"fallback"`
}

// Retry is the retry policy of a campaign.
type Retry struct {
	// Attempts is how many times a recipient is tried within one run (≥ 1).
	Attempts int
	// Backoff is the first wait between attempts; it doubles up to MaxBackoff.
	Backoff time.Duration
	// MaxBackoff is the longest wait between attempts.
	MaxBackoff time.Duration
	// GiveUpAfter is how long after its first attempt a deferred recipient is still
	// retried by later runs before it is marked failed.
	GiveUpAfter time.Duration
}

// Campaign is a loaded, checked campaign file with every path resolved.
type Campaign struct {
	// Path is the campaign file; Dir its folder.
	Path, Dir string
	// NameTemplate is the name as written; Name is it rendered for the current date.
	NameTemplate, Name string
	From               *mail.Address
	FromHeader         string
	ReplyTo            string
	ReturnPath         string
	Subject            string
	// HTMLFile and TextFile are absolute paths ("" when absent).
	HTMLFile, TextFile string
	ListFile           string
	ListEncoding       string
	ListDelimiter      rune
	ListEmailColumn    string
	ToName             string
	SuppressFiles      []string
	Headers            map[string]string
	UnsubscribeURL     string
	UnsubscribeMailto  string
	ProviderKind       string
	// ProviderNode is the provider block (without `kind`), decoded strictly on demand.
	ProviderNode *yaml.Node
	Rate         Rate
	Workers      int
	Retry        Retry
	// StoreFile is the store as the file sets it, resolved ("" when unset).
	StoreFile string
	Schedule  string
	Location  *time.Location
	// Policy is the sending policy (window, expiry, warm-up, pause).
	Policy Policy

	// MarkdownFile and LayoutFile are absolute paths ("" when absent).
	MarkdownFile, LayoutFile string
	// InlineCSS is the inline_css key: nil when not set (on when the HTML has a <style>).
	InlineCSS *bool
	// Attachments are the files sent to everyone (absolute paths).
	Attachments []string
	// AttachmentColumn is the list column holding each recipient's file ("" when none).
	AttachmentColumn string
	// Inline maps content ids to image files (absolute paths).
	Inline map[string]string
	// ListID is the List-Id header value; FeedbackID the Feedback-ID ("" when none).
	ListID, FeedbackID string

	// Domains are the per-domain paces (none: the campaign's rate alone).
	Domains []DomainLimit
	// FallbackKind and FallbackNode are the fallback provider block ("" and nil when
	// there is none), like ProviderKind and ProviderNode.
	FallbackKind string
	FallbackNode *yaml.Node
}

// ConfigError is a problem with the campaign file, a template or the list: nothing was sent.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(format string, args ...any) error {
	return &ConfigError{Err: fmt.Errorf(format, args...)}
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Load reads and checks a campaign file. now renders {{ .Date }} and {{ .Week }} in the
// name (in the campaign's timezone).
func Load(path string, now time.Time) (*Campaign, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, configErr("%v", err)
	}
	return Parse(path, data, now)
}

// Parse checks a campaign file's contents; path names it in errors and anchors relative paths.
func Parse(path string, data []byte, now time.Time) (*Campaign, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, configErr("%s: the file is empty", path)
		}
		return nil, configErr("%s: %s", path, yamlMessage(err))
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, configErr("%s: %v", path, err)
	}
	c := &Campaign{Path: abs, Dir: filepath.Dir(abs)}
	bad := func(key, format string, args ...any) error {
		return configErr("%s: %s: %s", path, key, fmt.Sprintf(format, args...))
	}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(c.Dir, p)
	}

	c.Location = time.Local
	if f.Timezone != "" {
		loc, err := time.LoadLocation(f.Timezone)
		if err != nil {
			return nil, bad("timezone", "unknown time zone %q", f.Timezone)
		}
		c.Location = loc
	}
	if f.Name == "" {
		return nil, bad("name", "required")
	}
	c.NameTemplate = f.Name
	name, err := RenderName(f.Name, now.In(c.Location))
	if err != nil {
		return nil, bad("name", "%v", err)
	}
	if !nameRe.MatchString(name) {
		return nil, bad("name", "%q may hold only letters, digits, '.', '_' and '-' (and {{ .Date }} or {{ .Week }})", name)
	}
	c.Name = name

	if f.From == "" {
		return nil, bad("from", "required")
	}
	from, err := mail.ParseAddress(f.From)
	if err != nil {
		return nil, bad("from", "%q is not an address: %v", f.From, err)
	}
	c.From, c.FromHeader = from, f.From
	if f.ReplyTo != "" {
		if _, err := mail.ParseAddress(f.ReplyTo); err != nil {
			return nil, bad("reply_to", "%q is not an address: %v", f.ReplyTo, err)
		}
		c.ReplyTo = f.ReplyTo
	}
	if f.ReturnPath != "" {
		a, err := mail.ParseAddress(f.ReturnPath)
		if err != nil || a.Name != "" {
			return nil, bad("return_path", "%q is not a bare address", f.ReturnPath)
		}
		c.ReturnPath = a.Address
	}
	if strings.TrimSpace(f.Subject) == "" {
		return nil, bad("subject", "required")
	}
	c.Subject = f.Subject
	if f.HTML == "" && f.Text == "" && f.Markdown == "" {
		return nil, bad("html", "a body is required: set markdown, or html, text or both")
	}
	if f.Markdown != "" && (f.HTML != "" || f.Text != "") {
		return nil, bad("markdown", "replaces html and text (both parts come from it): remove html/text or markdown")
	}
	c.HTMLFile, c.TextFile = rel(f.HTML), rel(f.Text)
	if err := c.parseContent(&f, path, rel); err != nil {
		return nil, err
	}
	if f.List == "" {
		return nil, bad("list", "required")
	}
	c.ListFile = rel(f.List)
	c.ListEncoding = f.ListEncoding
	switch f.ListDelimiter {
	case "":
	case ",", ";":
		c.ListDelimiter = rune(f.ListDelimiter[0])
	case "\t", "tab", `\t`:
		c.ListDelimiter = '\t'
	default:
		return nil, bad("list_delimiter", "%q: use \",\", \";\" or \"tab\"", f.ListDelimiter)
	}
	c.ListEmailColumn = strings.TrimSpace(f.ListEmailColumn)
	c.ToName = f.ToName
	for _, s := range f.Suppress {
		c.SuppressFiles = append(c.SuppressFiles, rel(s))
	}
	c.Headers = f.Headers
	for k, v := range f.Headers {
		if strings.ContainsAny(k+v, "\r\n") {
			return nil, bad("headers", "%q: a header may not contain a line break", k)
		}
	}

	if f.Unsubscribe.URL == "" {
		return nil, bad("unsubscribe.url", "required (an https URL; herald appends the signed token)")
	}
	u, err := url.Parse(f.Unsubscribe.URL)
	if err != nil || u.Host == "" || u.Scheme != "https" {
		return nil, bad("unsubscribe.url", "%q must be an absolute https URL", f.Unsubscribe.URL)
	}
	if u.Fragment != "" {
		return nil, bad("unsubscribe.url", "%q must not have a #fragment", f.Unsubscribe.URL)
	}
	c.UnsubscribeURL = f.Unsubscribe.URL
	if f.Unsubscribe.Mailto != "" {
		a, err := mail.ParseAddress(strings.TrimPrefix(f.Unsubscribe.Mailto, "mailto:"))
		if err != nil || a.Name != "" {
			return nil, bad("unsubscribe.mailto", "%q is not a bare address", f.Unsubscribe.Mailto)
		}
		c.UnsubscribeMailto = a.Address
	}

	if err := c.parseProvider(path, &f.Provider); err != nil {
		return nil, err
	}

	c.Rate = Rate{PerSecond: 10, Text: "10/s"}
	if f.Rate != "" {
		r, err := ParseRate(f.Rate)
		if err != nil {
			return nil, bad("rate", "%v", err)
		}
		c.Rate = r
	}
	c.Workers = 4
	if f.Workers != 0 {
		if f.Workers < 1 || f.Workers > 256 {
			return nil, bad("workers", "%d: use 1 to 256", f.Workers)
		}
		c.Workers = f.Workers
	}
	c.Retry = Retry{Attempts: 5, Backoff: time.Second, MaxBackoff: time.Minute, GiveUpAfter: 120 * time.Hour}
	if f.Retry.Attempts != 0 {
		if f.Retry.Attempts < 1 || f.Retry.Attempts > 100 {
			return nil, bad("retry.attempts", "%d: use 1 to 100", f.Retry.Attempts)
		}
		c.Retry.Attempts = f.Retry.Attempts
	}
	for _, d := range []struct {
		key, text string
		into      *time.Duration
	}{
		{"retry.backoff", f.Retry.Backoff, &c.Retry.Backoff},
		{"retry.max_backoff", f.Retry.MaxBackoff, &c.Retry.MaxBackoff},
		{"retry.give_up_after", f.Retry.GiveUpAfter, &c.Retry.GiveUpAfter},
	} {
		if d.text == "" {
			continue
		}
		v, err := time.ParseDuration(d.text)
		if err != nil || v < 0 {
			return nil, bad(d.key, "%q is not a duration (e.g. 1s, 5m, 120h)", d.text)
		}
		*d.into = v
	}
	if c.Retry.MaxBackoff < c.Retry.Backoff {
		c.Retry.MaxBackoff = c.Retry.Backoff
	}
	c.StoreFile = rel(f.Store)
	if journal.IsURL(f.Store) {
		c.StoreFile = f.Store // a database, not a path beside the file
	}
	c.Schedule = strings.TrimSpace(f.Schedule)
	if c.Domains, err = parseDomains(f.Domains); err != nil {
		return nil, bad("domains", "%v", err)
	}
	if f.Fallback.Kind != 0 {
		if c.FallbackKind, c.FallbackNode, err = providerBlock(path, "fallback", &f.Fallback); err != nil {
			return nil, err
		}
	}
	if err := c.parsePolicy(&f.Policy, bad); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Campaign) parseProvider(path string, n *yaml.Node) error {
	if n.Kind == 0 {
		c.ProviderKind = "file"
		c.ProviderNode = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
			{Kind: yaml.ScalarNode, Value: "dir"}, {Kind: yaml.ScalarNode, Value: "outbox"},
		}}
		return nil
	}
	kind, rest, err := providerBlock(path, "provider", n)
	c.ProviderKind, c.ProviderNode = kind, rest
	return err
}

// providerBlock splits a provider block (`provider:` or `fallback:`, named key) into its
// kind and the rest.
func providerBlock(path, key string, n *yaml.Node) (kind string, rest *yaml.Node, err error) {
	if n.Kind != yaml.MappingNode {
		return "", nil, configErr("%s: line %d: %s: must be a mapping with a `kind`", path, n.Line, key)
	}
	rest = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "kind" {
			kind = v.Value
			continue
		}
		rest.Content = append(rest.Content, k, v)
	}
	if kind == "" {
		return "", nil, configErr("%s: line %d: %s.kind: required (file, smtp, ses, sendgrid or mandrill)", path, n.Line, key)
	}
	return kind, rest, nil
}

// DecodeProvider strictly decodes the provider block (without `kind`) into v; an
// unknown key is an error naming it and its line.
func (c *Campaign) DecodeProvider(v any) error {
	return c.decodeBlock("provider", c.ProviderNode, v)
}

// DecodeFallback strictly decodes the fallback block (without `kind`) into v.
func (c *Campaign) DecodeFallback(v any) error {
	return c.decodeBlock("fallback", c.FallbackNode, v)
}

func (c *Campaign) decodeBlock(key string, node *yaml.Node, v any) error {
	data, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		// Line numbers refer to the re-encoded block; point at the block instead.
		msg := lineRe.ReplaceAllString(yamlMessage(err), "")
		return fmt.Errorf("%s: %s (line %d): %s", c.relPath(), key, node.Line, msg)
	}
	return nil
}

var (
	lineRe    = regexp.MustCompile(`line \d+: `)
	unknownRe = regexp.MustCompile(`field (\S+) not found in type \S+`)
	typeRe    = regexp.MustCompile(` into [a-z]+\.[A-Za-z.]+`)
)

// yamlMessage words a YAML error for a user: "unknown key" rather than Go type names.
func yamlMessage(err error) string {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := make([]string, len(msgs))
	for i, m := range msgs {
		m = unknownRe.ReplaceAllString(m, `unknown key "$1"`)
		out[i] = typeRe.ReplaceAllString(m, "")
	}
	return strings.Join(out, "; ")
}

func (c *Campaign) relPath() string {
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, c.Path); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
	}
	return c.Path
}

// RenderName renders the {{ .Date }} (YYYY-MM-DD) and {{ .Week }} (YYYY-Www, ISO week)
// placeholders of a campaign name.
func RenderName(name string, now time.Time) (string, error) {
	if !strings.Contains(name, "{{") {
		return name, nil
	}
	t, err := template.New("name").Option("missingkey=error").Parse(name)
	if err != nil {
		return "", err
	}
	y, w := now.ISOWeek()
	var b strings.Builder
	if err := t.Execute(&b, map[string]string{
		"Date": now.Format("2006-01-02"),
		"Week": fmt.Sprintf("%04d-W%02d", y, w),
	}); err != nil {
		return "", fmt.Errorf("only {{ .Date }} and {{ .Week }} may appear: %v", err)
	}
	return b.String(), nil
}

// Rate is a sending ceiling.
type Rate struct {
	// PerSecond is the ceiling in messages per second.
	PerSecond float64
	// Text is the rate as written ("600/m").
	Text string
}

// ParseRate reads "10/s", "600/m" or "20000/h" (also "10/sec", "10/min", "10/hour").
func ParseRate(s string) (Rate, error) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("%q: write it as N/s, N/m or N/h (e.g. 10/s)", s)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 || v > 1e6 {
		// NaN compares false with everything: without its own test it would pass as
		// "no ceiling at all".
		return Rate{}, fmt.Errorf("%q: %q is not a finite positive number (at most 1000000)", s, strings.TrimSpace(n))
	}
	var per float64
	switch strings.ToLower(strings.TrimSpace(unit)) {
	case "s", "sec", "second":
		per = 1
	case "m", "min", "minute":
		per = 60
	case "h", "hour":
		per = 3600
	default:
		return Rate{}, fmt.Errorf("%q: unit %q: use s, m or h", s, unit)
	}
	if v/per < minRate {
		return Rate{}, fmt.Errorf("%q: below one message a day", s)
	}
	return Rate{PerSecond: v / per, Text: strings.TrimSpace(s)}, nil
}

// minRate is the lowest rate herald takes, in messages per second: one a day.
const minRate = 1.0 / 86400
