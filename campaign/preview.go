package campaign

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers"
)

// PreviewOptions choose what `herald preview` renders.
type PreviewOptions struct {
	// Limit is how many messages to render (from the first recipient to send).
	Limit int
	// Row, when > 0, renders only the recipient on that data row (1: the first row
	// after the header), whatever its state.
	Row int
	// Store is the journal, read only when it exists (for the unsubscribe secret).
	Store string
}

var errEnough = errors.New("enough")

// Preview renders messages without sending or journalling anything.
func Preview(ctx context.Context, c *Campaign, o PreviewOptions, env Env) ([]*providers.Message, error) {
	// Preview shows what the messages look like, sent or not: the journal is not consulted.
	src, rd, err := journalFreeRenderer(ctx, c, o.Store, env)
	if err != nil {
		return nil, err
	}
	var out []*providers.Message
	if o.Row > 0 {
		rc, err := src.Row(o.Row)
		if err != nil {
			return nil, err
		}
		m, err := rd.Message(ctx, rc)
		if err != nil {
			return nil, renderFailure(ctx, err)
		}
		return []*providers.Message{m}, nil
	}
	if o.Limit <= 0 {
		return nil, nil
	}
	_, err = src.Scan(ctx, func(rc *Recipient) error {
		m, err := rd.Message(ctx, rc)
		if err != nil {
			return renderFailure(ctx, err)
		}
		out = append(out, m)
		if len(out) >= o.Limit {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return nil, err
	}
	return out, nil
}

// Row returns the recipient on data row n (1-based), or an error when the list is
// shorter or the row's address is invalid.
func (s *Source) Row(n int) (*Recipient, error) {
	f, r, err := s.open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for i := 1; ; i++ {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil, configErr("%s: --row %d: the list has only %d data row(s)", s.Campaign.ListFile, n, i-1)
		}
		if err != nil {
			return nil, &ConfigError{Err: err}
		}
		if i < n {
			continue
		}
		if row.Invalid != "" {
			return nil, configErr("%s:%d: invalid address %q: %s", s.Campaign.ListFile, row.Line, row.Email, row.Invalid)
		}
		return &Recipient{Line: row.Line, Email: row.Email, Key: row.Key, Fields: row.Fields}, nil
	}
}

// Validate checks a campaign as `herald validate` does: the file, the provider's settings
// and secret variables (without connecting), every list row, and a rendering of every
// recipient. It sends nothing.
func Validate(ctx context.Context, c *Campaign, store string, warn func(Warning), env Env) (*Summary, error) {
	if err := CheckProvider(c, env, true); err != nil {
		return &Summary{Campaign: c.Name, DryRun: true}, err
	}
	sum, err := Send(ctx, c, SendOptions{DryRun: true, Limit: -1, Store: store, Warn: warn}, env)
	var se *StopError
	if errors.As(err, &se) && se.Reason == StopInterrupted {
		return sum, err
	}
	if err != nil && !isConfigErr(err) {
		err = &ConfigError{Err: fmt.Errorf("%w", err)}
	}
	if err == nil && warn != nil {
		err = contentWarnings(ctx, c, warn, env)
	}
	return sum, err
}

// MaxAttachmentSize is the encoded size of a message's files above which `validate` warns
// (most providers refuse messages of 25–40 MB; many mailboxes far less).
const MaxAttachmentSize = 10 << 20

// contentWarnings reports what does not stop a campaign but should be fixed: CSS that
// cannot be inlined, per-recipient attachments that are missing or unreadable (with
// their lines), and messages whose files exceed MaxAttachmentSize.
func contentWarnings(ctx context.Context, c *Campaign, warn func(Warning), env Env) error {
	src := &Source{Campaign: c, Now: env.Now}
	cols, err := src.Columns()
	if err != nil {
		return err
	}
	rd, err := NewRenderer(ctx, c, cols, make([]byte, 32), env.Now)
	if err != nil {
		return err
	}
	for _, w := range rd.Warnings() {
		warn(Warning{Reason: w})
	}
	encoded := func(n int64) int64 { return (n + 2) / 3 * 4 * 78 / 76 }
	var shared int64
	for _, p := range append(append([]string(nil), c.Attachments...), mapValues(c.Inline)...) {
		if st, err := os.Stat(p); err == nil {
			shared += encoded(st.Size())
		}
	}
	if shared > MaxAttachmentSize {
		warn(Warning{Reason: fmt.Sprintf("attachments: %.1f MB encoded in every message, over %d MB (most providers refuse 25–40 MB, many mailboxes less)",
			float64(shared)/(1<<20), MaxAttachmentSize>>20)})
	}
	if rd.attCol < 0 {
		return nil
	}
	_, err = src.Scan(ctx, func(rc *Recipient) error {
		p, err := rd.RecipientAttachment(rc)
		var ae *AttachmentError
		switch {
		case errors.As(err, &ae):
			warn(Warning{Line: rc.Line, Reason: fmt.Sprintf("%s: attachment %s: %v (this recipient stays pending until the file is there)", rc.Email, ae.Path, ae.Err)})
		case err != nil:
			return err
		case p != "":
			if st, err := os.Stat(p); err == nil && shared+encoded(st.Size()) > MaxAttachmentSize {
				warn(Warning{Line: rc.Line, Reason: fmt.Sprintf("%s: the message's files are %.1f MB encoded, over %d MB",
					rc.Email, float64(shared+encoded(st.Size()))/(1<<20), MaxAttachmentSize>>20)})
			}
		}
		return nil
	})
	return err
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// renderFailure is the error of a run that could not render a recipient: a
// *ConfigError (the template or the row), or ctx's error when the run was stopped.
func renderFailure(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return err
	}
	return &ConfigError{Err: err}
}

func isConfigErr(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// journalFreeRenderer is the list and a renderer of c for commands that render without
// touching the journal (preview, test sends): the store, when there is one at
// storePath, is opened only for the unsubscribe secret and closed again.
func journalFreeRenderer(ctx context.Context, c *Campaign, storePath string, env Env) (*Source, *Renderer, error) {
	var store journal.Store
	if storePath != "" && storeExists(storePath) {
		var err error
		if store, err = OpenStore(ctx, storePath, journal.Options{Now: env.Now}); err != nil {
			return nil, nil, err
		}
		defer store.Close()
	}
	secret, err := Secret(ctx, store, env.getenv)
	if err != nil {
		return nil, nil, err
	}
	src := &Source{Campaign: c, Now: env.Now}
	cols, err := src.Columns()
	if err != nil {
		return nil, nil, err
	}
	rd, err := NewRenderer(ctx, c, cols, secret, env.Now)
	if err != nil {
		return nil, nil, err
	}
	return src, rd, nil
}
