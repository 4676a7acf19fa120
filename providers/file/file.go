// Package file is herald's local outbox provider: it writes every message, unchanged, as
// one .eml file in a folder. It is the provider `herald init` scaffolds, handy for
// previewing a whole campaign and for tests.
//
// Files are named so that they sort by time and say who they are for, e.g.
//
//	20261128T101500.123-000042-jane.doe_example.org.eml
//
// (UTC time, a per-run sequence number, the recipient reduced to [A-Za-z0-9._-]). A file
// is written under a temporary name, synced, then hard-linked to its final name, which
// fails rather than replaces when that name exists; so a re-run never overwrites an
// earlier message and a crash never leaves a half-written .eml behind.
package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heraldmail/herald/providers"
)

// Kind is the provider kind named in a campaign file.
const Kind = "file"

// maxNameTries bounds how many names Send tries before it gives up on a message.
const maxNameTries = 1000

// maxRecipientLen caps the recipient part of a file name.
const maxRecipientLen = 100

// Config is the `provider:` block of a campaign using the file provider.
type Config struct {
	// Dir is the outbox folder, relative to the campaign file; it is created if missing.
	Dir string `yaml:"dir"`
}

// validate checks c without touching the file system.
func (c Config) validate() error {
	if strings.TrimSpace(c.Dir) == "" {
		return errors.New("file: dir is required (the folder the .eml files are written to)")
	}
	return nil
}

// Registration returns the file provider's registration for a providers.Registry.
func Registration() providers.Registration {
	return providers.Registration{Kind: Kind, Check: check, Open: open}
}

func decode(s providers.Spec) (Config, error) {
	var c Config
	if s.Decode != nil {
		if err := s.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("file: provider settings: %w", err)
		}
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	c.Dir = s.Path(c.Dir)
	return c, nil
}

func check(s providers.Spec, _ bool) error {
	c, err := decode(s)
	if err != nil {
		return err
	}
	// The folder may not exist yet (Open creates it), but it must not be a file.
	if fi, err := os.Stat(c.Dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("file: dir %s is not a folder", c.Dir)
	}
	return nil
}

func open(_ context.Context, s providers.Spec) (providers.Provider, error) {
	c, err := decode(s)
	if err != nil {
		return nil, err
	}
	return New(c)
}

// Option adjusts a Provider built by New.
type Option func(*Provider)

// WithClock makes the provider name files by now instead of the wall clock.
func WithClock(now func() time.Time) Option {
	return func(p *Provider) { p.now = now }
}

// Provider writes messages into a folder. It is safe for concurrent use.
type Provider struct {
	dir string
	now func() time.Time
	seq atomic.Uint64
}

// New returns a provider writing into cfg.Dir (used as given: resolve it against the
// campaign folder first), creating the folder when it is missing.
func New(cfg Config, opts ...Option) (*Provider, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Provider{dir: cfg.Dir, now: time.Now}
	for _, o := range opts {
		o(p)
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, fmt.Errorf("file: create outbox %s: %w", p.dir, err)
	}
	return p, nil
}

// Dir returns the outbox folder.
func (p *Provider) Dir() string { return p.dir }

// Name returns "file".
func (p *Provider) Name() string { return Kind }

// Capabilities returns no limits.
func (p *Provider) Capabilities() providers.Capabilities { return providers.Capabilities{} }

// Close does nothing; the provider holds no open files between calls.
func (p *Provider) Close() error { return nil }

// Send writes msg.Raw to a new file and returns its name as the receipt id. A failure of
// the file system is Fatal (no later message could be written either); a cancelled
// context before the write is Temporary.
func (p *Provider) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return providers.Receipt{}, &providers.Error{Provider: Kind, Kind: providers.Temporary, Message: "not written: " + err.Error(), Err: err}
	}
	tmp, err := p.writeTemp(msg.Raw)
	if err != nil {
		return providers.Receipt{}, p.fatal("write temporary file", err)
	}
	defer os.Remove(tmp)
	stamp := p.now().UTC().Format("20060102T150405.000")
	who := Sanitize(msg.To)
	for i := 0; i < maxNameTries; i++ {
		name := fmt.Sprintf("%s-%06d-%s.eml", stamp, p.seq.Add(1), who)
		err := os.Link(tmp, filepath.Join(p.dir, name))
		if err == nil {
			if err := syncDir(p.dir); err != nil {
				return providers.Receipt{}, p.fatal("sync outbox", err)
			}
			return providers.Receipt{MessageID: name}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return providers.Receipt{}, p.fatal("link "+name, err)
		}
	}
	return providers.Receipt{}, p.fatal("name message for "+who, fmt.Errorf("%d names taken", maxNameTries))
}

func (p *Provider) writeTemp(raw []byte) (name string, err error) {
	f, err := os.CreateTemp(p.dir, ".herald-*.tmp")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(raw); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

func (p *Provider) fatal(what string, err error) error {
	return &providers.Error{
		Provider: Kind,
		Kind:     providers.Fatal,
		Message:  fmt.Sprintf("%s in %s: %v", what, p.dir, err),
		Err:      err,
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Sanitize reduces a recipient address to the characters a file name may carry:
// '@' and every character outside [A-Za-z0-9._-] become '_', and the result is cut to
// 100 bytes ("jane.doe@example.org" → "jane.doe_example.org").
func Sanitize(addr string) string {
	var b strings.Builder
	for i := 0; i < len(addr) && b.Len() < maxRecipientLen; i++ {
		c := addr[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}
