package campaign

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/heraldmail/herald/campaign/unsubscribe"
	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/templates"
)

// Renderer turns one recipient into a complete message. Templates are parsed and the
// MIME builder set up once per campaign; Message is safe for concurrent use.
type Renderer struct {
	c       *Campaign
	set     *templates.Set
	builder *templates.Builder
	signer  *unsubscribe.Signer
	columns []string
}

// NewRenderer reads and parses the campaign's templates and checks them against the
// list's columns (a missing column, or a body without the unsubscribe link, is refused).
// The check renders every template once; it stops, with ctx's error, when ctx is done.
func NewRenderer(ctx context.Context, c *Campaign, columns []string, secret []byte, now func() time.Time) (*Renderer, error) {
	src := templates.Sources{Subject: c.Subject, ToName: c.ToName}
	for _, f := range []struct {
		path     string
		into, nm *string
	}{{c.HTMLFile, &src.HTML, &src.HTMLFile}, {c.TextFile, &src.Text, &src.TextFile}} {
		if f.path == "" {
			continue
		}
		data, err := os.ReadFile(f.path)
		if err != nil {
			return nil, configErr("%s: %v", c.Path, err)
		}
		*f.into, *f.nm = string(data), filepath.Base(f.path)
	}
	set, err := templates.Parse(src)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	if err := untilDone(ctx, func() error { return set.Check(columns) }); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, err
		}
		return nil, &ConfigError{Err: err}
	}
	b, err := templates.NewBuilder(templates.BuilderOptions{
		From:              c.FromHeader,
		ReplyTo:           c.ReplyTo,
		Headers:           c.Headers,
		UnsubscribeMailto: c.UnsubscribeMailto,
		Now:               now,
	})
	if err != nil {
		return nil, &ConfigError{Err: fmt.Errorf("%s: %w", c.Path, err)}
	}
	signer, err := unsubscribe.NewSigner(secret)
	if err != nil {
		return nil, err
	}
	return &Renderer{c: c, set: set, builder: b, signer: signer, columns: columns}, nil
}

// Message renders the message for r. It returns ctx's error as soon as ctx is done,
// also in the middle of a long render: a template that loops without writing cannot be
// stopped from outside, so such a render is left to finish on its own while the caller
// goes on (the process is about to stop anyway). A render error names r's line.
func (rd *Renderer) Message(ctx context.Context, r *Recipient) (*providers.Message, error) {
	var m *providers.Message
	err := untilDone(ctx, func() (err error) {
		m, err = rd.message(ctx, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// untilDone runs fn and returns its error, or ctx's error as soon as ctx is done; fn is
// then left to finish on its own (its results are dropped).
func untilDone(ctx context.Context, fn func() error) error {
	if ctx.Done() == nil {
		return fn()
	}
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (rd *Renderer) message(ctx context.Context, r *Recipient) (*providers.Message, error) {
	unsub := unsubscribe.URL(rd.c.UnsubscribeURL, rd.signer.Token(rd.c.Name, r.Email))
	data := make(map[string]string, len(rd.columns)+3)
	for i, col := range rd.columns {
		if i < len(r.Fields) {
			data[col] = r.Fields[i]
		}
	}
	data["Email"] = r.Email
	data["UnsubscribeURL"] = unsub
	data["Campaign"] = rd.c.Name
	out, err := rd.set.RenderContext(ctx, data)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, err
		}
		return nil, fmt.Errorf("line %d (%s): %w", r.Line, r.Email, err)
	}
	built, err := rd.builder.Build(out, r.Email, out.ToName, unsub)
	if err != nil {
		return nil, fmt.Errorf("line %d (%s): %w", r.Line, r.Email, err)
	}
	m := &providers.Message{
		Campaign:    rd.c.Name,
		From:        rd.c.FromHeader,
		FromAddress: rd.c.From.Address,
		ReturnPath:  rd.c.ReturnPath,
		To:          r.Email,
		ToName:      out.ToName,
		ReplyTo:     rd.c.ReplyTo,
		Subject:     out.Subject,
		Text:        out.Text,
		HTML:        out.HTML,
		MessageID:   built.MessageID,
		Raw:         built.Raw,
		Headers:     make([]providers.Header, len(built.Headers)),
	}
	for i, h := range built.Headers {
		m.Headers[i] = providers.Header{Name: h[0], Value: h[1]}
	}
	return m, nil
}
