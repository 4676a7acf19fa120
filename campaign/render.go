package campaign

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldmail/herald/campaign/unsubscribe"
	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/templates"
)

// Renderer turns one recipient into a complete message. Templates are parsed, the
// campaign's files read and the MIME builder set up once per campaign; Message is safe
// for concurrent use.
type Renderer struct {
	c       *Campaign
	set     *templates.Set
	builder *templates.Builder
	signer  *unsubscribe.Signer
	columns []string
	attCol  int // index of attachment_column in columns, -1 when none
	// files are the campaign's attachments and inline images, for providers that build
	// the message themselves.
	files []providers.Attachment
}

// AttachmentError is a recipient's own attachment (attachment_column) that cannot be
// read: a content problem of that recipient, fixed by providing the file. It leaves the
// recipient pending at send time and is a warning in `validate`.
type AttachmentError struct {
	Line  int
	Email string
	// Path is the cell's value as written in the list.
	Path string
	Err  error
}

func (e *AttachmentError) Error() string {
	return fmt.Sprintf("line %d (%s): attachment %s: %v", e.Line, e.Email, e.Path, e.Err)
}

func (e *AttachmentError) Unwrap() error { return e.Err }

// readSource reads a template file named by the campaign.
func readSource(c *Campaign, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", configErr("%s: %v", c.Path, err)
	}
	return string(data), nil
}

// NewRenderer reads and parses the campaign's templates and files and checks them against
// the list's columns (a missing column, or a body without the unsubscribe link, is
// refused). The check renders every template once; it stops, with ctx's error, when ctx
// is done.
func NewRenderer(ctx context.Context, c *Campaign, columns []string, secret []byte, now func() time.Time) (*Renderer, error) {
	src := templates.Sources{Subject: c.Subject, ToName: c.ToName, InlineCSS: c.InlineCSS}
	for _, f := range []struct {
		path     string
		into, nm *string
	}{
		{c.HTMLFile, &src.HTML, &src.HTMLFile},
		{c.TextFile, &src.Text, &src.TextFile},
		{c.MarkdownFile, &src.Markdown, &src.MarkdownFile},
		{c.LayoutFile, &src.Layout, &src.LayoutFile},
	} {
		if f.path == "" {
			continue
		}
		data, err := readSource(c, f.path)
		if err != nil {
			return nil, err
		}
		*f.into, *f.nm = data, filepath.Base(f.path)
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
	rd := &Renderer{c: c, set: set, columns: columns, attCol: -1}
	if c.AttachmentColumn != "" {
		for i, col := range columns {
			if strings.EqualFold(col, c.AttachmentColumn) {
				rd.attCol = i
				break
			}
		}
		if rd.attCol < 0 {
			return nil, configErr("%s: attachment_column: no column %q in the list (columns: %s)",
				c.Path, c.AttachmentColumn, strings.Join(columns, ", "))
		}
	}
	opts := templates.BuilderOptions{
		From:              c.FromHeader,
		ReplyTo:           c.ReplyTo,
		Headers:           c.Headers,
		UnsubscribeMailto: c.UnsubscribeMailto,
		Now:               now,
		ListID:            c.ListID,
		FeedbackID:        c.FeedbackID,
	}
	for _, p := range c.Attachments {
		a, err := readAttachment(p)
		if err != nil {
			return nil, configErr("%s: attachments: %v", c.Path, err)
		}
		opts.Attachments = append(opts.Attachments, a)
	}
	for id, p := range c.Inline {
		a, err := readAttachment(p)
		if err != nil {
			return nil, configErr("%s: inline: %s: %v", c.Path, id, err)
		}
		a.ContentID = id
		opts.Inline = append(opts.Inline, a)
	}
	for _, a := range append(append([]templates.Attachment(nil), opts.Attachments...), opts.Inline...) {
		rd.files = append(rd.files, providerFile(a))
	}
	if rd.builder, err = templates.NewBuilder(opts); err != nil {
		return nil, &ConfigError{Err: fmt.Errorf("%s: %w", c.Path, err)}
	}
	if rd.signer, err = unsubscribe.NewSigner(secret); err != nil {
		return nil, err
	}
	return rd, nil
}

func providerFile(a templates.Attachment) providers.Attachment {
	return providers.Attachment{Name: a.Name, ContentType: templates.DetectType(a.Name, a.Data), ContentID: a.ContentID, Data: a.Data}
}

// readAttachment reads one file for a message.
func readAttachment(path string) (templates.Attachment, error) {
	st, err := os.Stat(path)
	if err != nil {
		return templates.Attachment{}, err
	}
	if !st.Mode().IsRegular() {
		return templates.Attachment{}, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return templates.Attachment{}, err
	}
	return templates.Attachment{Name: filepath.Base(path), Data: data}, nil
}

// Warnings are the campaign's content warnings (CSS the inliner cannot apply, …),
// found once when the templates were parsed.
func (rd *Renderer) Warnings() []string { return rd.set.Warnings() }

// RecipientAttachment returns the path of r's own attachment ("" when the campaign has
// none or the cell is empty), checked to be inside the campaign folder and readable.
func (rd *Renderer) RecipientAttachment(r *Recipient) (string, error) {
	if rd.attCol < 0 || rd.attCol >= len(r.Fields) {
		return "", nil
	}
	cell := strings.TrimSpace(r.Fields[rd.attCol])
	if cell == "" {
		return "", nil
	}
	p, err := InsideDir(rd.c.Dir, cell)
	if err == nil {
		var f *os.File
		if f, err = os.Open(p); err == nil {
			f.Close()
		}
	}
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the cell names the file already
		}
		return "", &AttachmentError{Line: r.Line, Email: r.Email, Path: cell, Err: err}
	}
	return p, nil
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

// message renders the message for r in the caller's goroutine.
func (rd *Renderer) message(ctx context.Context, r *Recipient) (*providers.Message, error) {
	return rd.messageFor(ctx, r, r.Email, r.Email, "")
}

// fill puts row r's template data into data (emptied first): its columns and the
// built-ins, with the unsubscribe link of tokenFor's token, which it returns.
func (rd *Renderer) fill(data map[string]string, r *Recipient, tokenFor string) (unsub string) {
	clear(data)
	unsub = unsubscribe.URL(rd.c.UnsubscribeURL, rd.signer.Token(rd.c.Name, tokenFor))
	for i, col := range rd.columns {
		if i < len(r.Fields) {
			data[col] = r.Fields[i]
		}
	}
	data["Email"] = r.Email
	data["UnsubscribeURL"] = unsub
	data["Campaign"] = rd.c.Name
	return unsub
}

// messageFor renders row r for the address to, with the unsubscribe token of tokenFor
// and prefix before the subject.
func (rd *Renderer) messageFor(ctx context.Context, r *Recipient, to, tokenFor, prefix string) (*providers.Message, error) {
	data := make(map[string]string, len(rd.columns)+3)
	unsub := rd.fill(data, r, tokenFor)
	out, err := rd.set.RenderContext(ctx, data)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, err
		}
		return nil, fmt.Errorf("line %d (%s): %w", r.Line, r.Email, err)
	}
	out.Subject = prefix + out.Subject
	path, err := rd.RecipientAttachment(r)
	if err != nil {
		return nil, err
	}
	if path != "" {
		a, err := readAttachment(path)
		if err != nil {
			return nil, &AttachmentError{Line: r.Line, Email: r.Email, Path: r.Fields[rd.attCol], Err: err}
		}
		out.Attachments = append(out.Attachments, a)
	}
	built, err := rd.builder.Build(out, to, out.ToName, unsub)
	if err != nil {
		return nil, fmt.Errorf("line %d (%s): %w", r.Line, r.Email, err)
	}
	m := &providers.Message{
		Campaign:    rd.c.Name,
		From:        rd.c.FromHeader,
		FromAddress: rd.c.From.Address,
		ReturnPath:  rd.c.ReturnPath,
		To:          to,
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
	if len(rd.files) > 0 || len(out.Attachments) > 0 {
		m.Attachments = make([]providers.Attachment, 0, len(rd.files)+len(out.Attachments))
		m.Attachments = append(m.Attachments, rd.files...)
		for _, a := range out.Attachments {
			m.Attachments = append(m.Attachments, providerFile(a))
		}
	}
	return m, nil
}
