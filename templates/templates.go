// Package templates renders a campaign's templates for one recipient and builds the
// RFC 5322 message that carries them.
//
// Rendering: the subject, the text body and the To display name are text/template
// templates, the HTML body an html/template template (list data is escaped). All run with
// missingkey=error over a map holding every list column under its header name plus the
// built-ins Email, UnsubscribeURL and Campaign. When a campaign has only an HTML body, the
// text part is derived from each rendered HTML body, keeping link URLs.
//
// Building: a Builder holds what is fixed for a campaign (From, Reply-To, extra headers,
// the List-Unsubscribe mailto) and turns a Rendered message into the raw bytes of a MIME
// message with CRLF line endings, no line over 998 octets, and header values that list
// data cannot break out of.
//
// The package works on the strings it is handed; it knows nothing of providers, lists or
// the journal.
package templates

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"sort"
	"strings"
	"sync"
	texttemplate "text/template"
	"unicode/utf8"
	"unsafe"

	"github.com/yuin/goldmark"
)

// Built-in data keys. The caller sets them in the data map of every recipient; they win
// over list columns of the same name.
const (
	KeyEmail          = "Email"
	KeyUnsubscribeURL = "UnsubscribeURL"
	KeyCampaign       = "Campaign"
	// KeyBody and KeySubject are what a layout sees besides the recipient's data: the
	// rendered HTML body and the subject.
	KeyBody    = "Body"
	KeySubject = "Subject"
)

// Names used in errors for templates that do not come from a file.
const (
	subjectName = "subject"
	toNameName  = "to_name"
)

// checkUnsubscribeURL is the UnsubscribeURL Check renders with. It uses only characters
// that no escaper rewrites, so it can be found verbatim in every rendered part.
const checkUnsubscribeURL = "https://unsubscribe.invalid/herald-check-0123456789"

// Sources are a campaign's templates, already read from disk.
type Sources struct {
	// Subject is the text/template source of the Subject line.
	Subject string
	// HTML is the html/template source of the HTML body ("" if none); HTMLFile its file
	// name, used in errors.
	HTML, HTMLFile string
	// Text is the text/template source of the text body ("" if none: derived from the
	// HTML then); TextFile its file name, used in errors.
	Text, TextFile string
	// ToName is an optional text/template for the To display name ("" = the `name`
	// column if present).
	ToName string
	// Markdown is a text/template of a Markdown body ("" if none), instead of HTML and
	// Text: both parts come from it. MarkdownFile is its file name, used in errors.
	Markdown, MarkdownFile string
	// Layout is an html/template frame for the HTML body ("" if none): it shows the body
	// with {{ .Body }} or {{ template "body" . }} and may use the recipient's data and
	// {{ .Subject }}. A Markdown body without a layout gets a small built-in one.
	Layout, LayoutFile string
	// InlineCSS moves the HTML's <style> rules into style attributes: nil means on when
	// the HTML has a <style> element.
	InlineCSS *bool
}

// Rendered is one recipient's rendered message parts.
type Rendered struct {
	// Subject is trimmed and holds no CR, LF or other control characters.
	Subject string
	// Text is the text body ("\n" line endings): rendered, or derived from HTML.
	Text string
	// HTML is the HTML body, "" when the campaign has none.
	HTML string
	// ToName is the To display name, trimmed and free of control characters; may be "".
	ToName string
	// Attachments are this recipient's own files (the caller sets them), added to the
	// campaign's by Build.
	Attachments []Attachment
}

// Set is the parsed templates of one campaign; parse once, render many. It is safe for
// concurrent use.
type Set struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
	toName  *texttemplate.Template

	textFile, htmlFile string

	md         *texttemplate.Template
	mdFile     string
	markdown   goldmark.Markdown
	layout     *htmltemplate.Template
	layoutFile string
	css        *cssInliner // nil: no inlining
	warnings   []string

	// CSS inlined once into the template source (see prepareCSS): until then, or when
	// that is not safe, every message is inlined on its own.
	htmlSrc, layoutSrc string
	cssPrepared        bool
	cssPerMessage      bool
	mdTags             *strings.Replacer // the layout's styles for a Markdown body's tags

	// refs are the data keys each template reads at top level, found once by Parse.
	refs []ref

	// The text part of an HTML-only campaign derived once from the template (see
	// textonce.go), decided by Check; nil: derived from each message's HTML.
	once         *textOnce
	htmlRun      string // the source s.html was parsed from (CSS inlined or not)
	oncePrepared bool

	bufs sync.Pool // *bytes.Buffer
}

// Error is a problem in one template, located by file and line.
type Error struct {
	// File is the template's file name ("subject" or "to_name" for those templates).
	File string
	// Line is the 1-based line, 0 when not known.
	Line int
	// Column is the missing list column, for a reference to a column the list lacks.
	Column string
	// Msg is the description, without the location.
	Msg string
	// Err is the underlying template error, if any.
	Err error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// ErrNoUnsubscribeLink is wrapped by the error Check returns when a body part never
// shows the unsubscribe URL.
var ErrNoUnsubscribeLink = errors.New("bulk mail must carry a visible unsubscribe link")

func fileName(name, def string) string {
	if name == "" {
		return def
	}
	return name
}

// templateError turns an error of text/template or html/template into an *Error naming
// file and line. The packages' messages carry "template: FILE:LINE[:COL]: "; that prefix
// is parsed off into File and Line.
func templateError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "template: ")
	msg = strings.TrimPrefix(msg, "html/template:")
	e := &Error{File: file, Err: err}
	if rest, ok := strings.CutPrefix(msg, file+":"); ok {
		line, n := leadingInt(rest)
		if n > 0 && n < len(rest) && rest[n] == ':' {
			e.Line = line
			rest = rest[n+1:]
			if _, m := leadingInt(rest); m > 0 && m < len(rest) && rest[m] == ':' {
				rest = rest[m+1:] // the column
			}
			msg = rest
		}
	}
	e.Msg = strings.TrimSpace(msg)
	return e
}

// leadingInt parses the decimal digits at the start of s; n is how many there were.
func leadingInt(s string) (v, n int) {
	for n < len(s) && n < 9 && s[n] >= '0' && s[n] <= '9' {
		v = v*10 + int(s[n]-'0')
		n++
	}
	return v, n
}

// Parse parses a campaign's templates. A syntax error names the file and line. At least
// one of HTML and Text must be given.
func Parse(src Sources) (*Set, error) {
	s := &Set{
		textFile: fileName(src.TextFile, "text template"),
		htmlFile: fileName(src.HTMLFile, "html template"),
	}
	s.bufs.New = func() any { return new(bytes.Buffer) }
	md := strings.TrimSpace(src.Markdown) != ""
	if strings.TrimSpace(src.HTML) == "" && strings.TrimSpace(src.Text) == "" && !md {
		return nil, errors.New("templates: no body: give a markdown, html or text template")
	}
	if md && (src.HTML != "" || src.Text != "") {
		return nil, errors.New("templates: a markdown body replaces the html and text templates: give one or the other")
	}
	if src.Layout != "" && src.HTML == "" && !md {
		return nil, errors.New("templates: a layout frames an html or markdown body; this campaign has neither")
	}
	var err error
	if s.subject, err = parseText(subjectName, src.Subject); err != nil {
		return nil, err
	}
	s.refs = append(s.refs, textRefs(s.subject)...)
	if src.Text != "" {
		if s.text, err = parseText(s.textFile, src.Text); err != nil {
			return nil, err
		}
		s.refs = append(s.refs, textRefs(s.text)...)
	}
	if src.HTML != "" {
		s.html, err = htmltemplate.New(s.htmlFile).Option("missingkey=error").Parse(src.HTML)
		if err != nil {
			return nil, templateError(s.htmlFile, err)
		}
		s.refs = append(s.refs, htmlRefs(s.html)...)
	}
	if md {
		s.mdFile = fileName(src.MarkdownFile, "markdown template")
		if s.md, err = parseMarkdownTemplate(s.mdFile, src.Markdown); err != nil {
			return nil, err
		}
		s.refs = append(s.refs, textRefs(s.md)...)
		s.markdown = newMarkdown()
	}
	layout, layoutFile := src.Layout, fileName(src.LayoutFile, "layout")
	if layout == "" && md {
		layout, layoutFile = builtinLayout, "built-in layout"
	}
	if layout != "" {
		s.layoutFile = layoutFile
		if s.layout, err = parseLayout(layoutFile, layout); err != nil {
			return nil, err
		}
		for _, r := range htmlRefs(s.layout) {
			if r.key != KeyBody && r.key != KeySubject {
				s.refs = append(s.refs, r)
			}
		}
		if !strings.Contains(layout, ".Body") && !strings.Contains(layout, `template "body"`) {
			return nil, fmt.Errorf("%s: the layout never shows the body: put {{ .Body }} (or {{ template \"body\" . }}) where it goes", layoutFile)
		}
	}
	styled := src.HTML
	if layout != "" {
		styled = layout
	}
	s.htmlSrc, s.layoutSrc = src.HTML, layout
	s.htmlRun = src.HTML
	if src.InlineCSS != nil && *src.InlineCSS || src.InlineCSS == nil && hasStyleElement(styled) {
		s.css = newCSSInliner()
		s.cssPerMessage = true
		if layout != "" {
			s.warnings = append(s.warnings, cssWarnings(layoutFile, layout)...)
		}
		if src.HTML != "" {
			s.warnings = append(s.warnings, cssWarnings(s.htmlFile, src.HTML)...)
		}
	}
	if src.ToName != "" {
		if s.toName, err = parseText(toNameName, src.ToName); err != nil {
			return nil, err
		}
		s.refs = append(s.refs, textRefs(s.toName)...)
	}
	return s, nil
}

// parseLayout parses a layout and gives it a "body" template showing {{ .Body }} unless
// it defines one.
func parseLayout(file, src string) (*htmltemplate.Template, error) {
	t, err := htmltemplate.New(file).Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, templateError(file, err)
	}
	if t.Lookup("body") == nil {
		if _, err := t.New("body").Parse("{{ .Body }}"); err != nil {
			return nil, templateError(file, err)
		}
	}
	return t, nil
}

// prepareCSS inlines the CSS once into the template source when that gives the same
// message as inlining each message (checked on the sample data of Check); a Markdown
// body's tags get the layout's styles by replacement (see mdProbe). Otherwise every
// message is inlined on its own.
func (s *Set) prepareCSS(data map[string]string) {
	if s.css == nil || s.cssPrepared {
		return
	}
	s.cssPrepared = true
	want, err := s.Render(data)
	if err != nil {
		return
	}
	styled := s.htmlSrc
	if s.layout != nil {
		styled = s.layoutSrc
	}
	inl, ok := s.css.inlineSource(styled)
	if !ok {
		return
	}
	oldHTML, oldLayout := s.html, s.layout
	if s.layout != nil {
		if s.md != nil {
			if !probeSafe(s.layoutSrc) {
				return
			}
			// The Markdown body's tags get the layout's styles by replacement.
			ld := make(map[string]any, len(data)+2)
			for k, v := range data {
				ld[k] = v
			}
			ld[KeyBody] = htmltemplate.HTML(mdProbe)
			ld[KeySubject] = want.Subject
			var b strings.Builder
			if err := s.layout.Execute(&b, ld); err != nil {
				return
			}
			probe, err := s.css.inline(b.String())
			if err != nil {
				return
			}
			s.mdTags = tagReplacer(probe)
		}
		if s.layout, err = parseLayout(s.layoutFile, inl); err != nil {
			s.layout, s.mdTags = oldLayout, nil
			return
		}
	} else {
		if s.html, err = htmltemplate.New(s.htmlFile).Option("missingkey=error").Parse(inl); err != nil {
			s.html = oldHTML
			return
		}
		s.htmlRun = inl
	}
	s.cssPerMessage = false
	got, err := s.Render(data)
	if err != nil || normalizeHTML(got.HTML) != normalizeHTML(want.HTML) || got.Text != want.Text {
		s.html, s.layout, s.mdTags, s.cssPerMessage = oldHTML, oldLayout, nil, true
		s.htmlRun = s.htmlSrc
	}
}

// prepareText derives the text part of an HTML-only campaign once from the template
// when that gives every message the text its own HTML would (see textonce.go), and
// checks it on the sample data of Check. Otherwise each message's text is derived from
// its HTML.
func (s *Set) prepareText(data map[string]string) {
	if s.oncePrepared {
		return
	}
	s.oncePrepared = true
	if s.html == nil || s.text != nil || s.md != nil || s.layout != nil || s.CSSPerMessage() {
		return
	}
	want, err := s.Render(data)
	if err != nil {
		return
	}
	once, ok := compileTextOnce(s.htmlFile, s.htmlRun, data)
	if !ok {
		return
	}
	s.once = once
	if got, err := s.Render(data); err != nil || got.HTML != want.HTML || got.Text != want.Text {
		s.once = nil
	}
}

// TextPerMessage reports whether an HTML-only campaign's text part is derived from each
// message's HTML (true) or was derived once from the template (false; also false when
// the campaign has a text or Markdown template).
func (s *Set) TextPerMessage() bool {
	return s.html != nil && s.text == nil && s.md == nil && s.once == nil
}

// CSSPerMessage reports whether the CSS is inlined into every message (true) or was
// inlined once into the templates (false, also when there is nothing to inline).
func (s *Set) CSSPerMessage() bool { return s.css != nil && s.cssPerMessage }

func parseText(name, src string) (*texttemplate.Template, error) {
	t, err := texttemplate.New(name).Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, templateError(name, err)
	}
	return t, nil
}

// HasHTML reports whether the campaign has an HTML body.
func (s *Set) HasHTML() bool { return s.html != nil }

// HasText reports whether the campaign has its own text template (false: the text part
// is derived from the HTML).
func (s *Set) HasText() bool { return s.text != nil }

// Check renders every template once with a data map holding exactly columns plus the
// built-ins. It returns an error naming the missing column and the template file
// (`template.html:3: no column "frist_name" in the list (columns: email, first_name)`),
// or the refusal when a body part never shows the UnsubscribeURL. With only HTML, the
// derived text must keep the link URL. Check also decides, on its sample data, whether
// the CSS can be inlined once into the templates and whether the text part of an
// HTML-only campaign can be derived once from the template (call it before rendering
// concurrently).
func (s *Set) Check(columns []string) error {
	have := make(map[string]bool, len(columns)+3)
	data := make(map[string]string, len(columns)+3)
	for _, c := range columns {
		have[c] = true
		data[c] = c
	}
	for _, k := range []string{KeyEmail, KeyUnsubscribeURL, KeyCampaign} {
		have[k] = true
	}
	data[KeyEmail] = "recipient@example.invalid"
	data[KeyUnsubscribeURL] = checkUnsubscribeURL
	data[KeyCampaign] = "campaign"

	for _, r := range s.refs {
		if !have[r.key] {
			return &Error{
				File:   r.file,
				Line:   r.line,
				Column: r.key,
				Msg:    fmt.Sprintf("no column %q in the list (columns: %s)", r.key, columnList(columns)),
			}
		}
	}
	out, err := s.Render(data)
	if err != nil {
		return err
	}
	if s.md != nil && !strings.Contains(out.HTML, checkUnsubscribeURL) {
		file := s.mdFile
		if s.layoutFile != "" && s.layoutFile != "built-in layout" {
			file += " (or " + s.layoutFile + ")"
		}
		return fmt.Errorf("%s never shows {{ .UnsubscribeURL }}: %w", file, ErrNoUnsubscribeLink)
	}
	if s.text != nil && !strings.Contains(out.Text, checkUnsubscribeURL) {
		return fmt.Errorf("%s never shows {{ .UnsubscribeURL }}: %w", s.textFile, ErrNoUnsubscribeLink)
	}
	if s.html != nil {
		if !strings.Contains(out.HTML, checkUnsubscribeURL) {
			file := s.htmlFile
			if s.layoutFile != "" {
				file += " (or " + s.layoutFile + ")"
			}
			return fmt.Errorf("%s never shows {{ .UnsubscribeURL }}: %w", file, ErrNoUnsubscribeLink)
		}
		if s.text == nil && !strings.Contains(out.Text, checkUnsubscribeURL) {
			return fmt.Errorf("%s: the text part derived from it loses {{ .UnsubscribeURL }} (put it in an <a href> or in the text): %w",
				s.htmlFile, ErrNoUnsubscribeLink)
		}
	}
	s.prepareCSS(data)
	s.prepareText(data)
	return nil
}

func columnList(columns []string) string {
	if len(columns) == 0 {
		return "none"
	}
	c := append([]string(nil), columns...)
	sort.Strings(c)
	return strings.Join(c, ", ")
}

// Render renders one recipient. data holds every CSV column under its header name plus
// the built-ins Email, UnsubscribeURL and Campaign (the caller sets them; built-ins win).
func (s *Set) Render(data map[string]string) (Rendered, error) {
	return s.RenderContext(context.Background(), data)
}

// RenderContext is Render that stops when ctx is done (returning ctx's error) and
// refuses output past MaxHeaderOutput or MaxBodyOutput.
func (s *Set) RenderContext(ctx context.Context, data map[string]string) (Rendered, error) {
	var out Rendered
	err := s.render(ctx, data, false, func(r Rendered) error {
		out = r
		return nil
	})
	if err != nil {
		return Rendered{}, err
	}
	return out, nil
}

// RenderFunc renders like RenderContext and calls fn with the result, whose strings may
// be views of buffers that are reused once fn returns: fn must not keep them, nor
// anything made from them without a copy. It returns the render's error, or fn's. A
// caller that only looks at a recipient's parts (a dry run checking every row) saves
// copying the bodies out of the buffers they were rendered into.
func (s *Set) RenderFunc(ctx context.Context, data map[string]string, fn func(Rendered) error) error {
	return s.render(ctx, data, true, fn)
}

// render renders one recipient and hands the result to fn; with views, the bodies are
// views of pooled buffers, valid until fn returns.
func (s *Set) render(ctx context.Context, data map[string]string, views bool, fn func(Rendered) error) error {
	var out Rendered
	buf := s.bufs.Get().(*bytes.Buffer)
	held := []*bytes.Buffer{buf} // back to the pool after fn
	defer func() {
		for _, b := range held {
			s.bufs.Put(b)
		}
	}()

	exec := func(file string, t interface {
		Execute(io.Writer, any) error
	}, data any) (string, error) {
		if views && buf.Len() > 0 {
			// The last part is a view of buf: the next one goes into a buffer of its own.
			buf = s.bufs.Get().(*bytes.Buffer)
			held = append(held, buf)
		}
		buf.Reset()
		max := MaxBodyOutput
		if file == subjectName || file == toNameName {
			max = MaxHeaderOutput
		}
		if err := t.Execute(&boundedWriter{ctx: ctx, buf: buf, max: max}, data); err != nil {
			var tl errTooLong
			switch {
			case ctx.Err() != nil && errors.Is(err, ctx.Err()):
				return "", err
			case errors.As(err, &tl):
				return "", &Error{File: file, Msg: tl.Error(), Err: err}
			}
			return "", templateError(file, err)
		}
		if views {
			return view(buf.Bytes()), nil
		}
		return buf.String(), nil
	}

	var err error
	if out.Subject, err = exec(subjectName, s.subject, data); err != nil {
		return err
	}
	out.Subject = HeaderText(out.Subject)
	derived := false // the text part too, with the HTML
	if s.once != nil {
		// A failure here (a template error) is left to the template itself to report.
		var run *textRun
		run, out.HTML, out.Text, err = s.once.render(ctx, data, views)
		if run != nil {
			defer s.once.runs.Put(run) // after fn: the views are its buffers
		}
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		derived = err == nil
	}
	if s.html != nil && !derived {
		if out.HTML, err = exec(s.htmlFile, s.html, data); err != nil {
			return err
		}
	}
	if s.md != nil {
		mdData := make(map[string]any, len(data))
		for k, v := range data {
			mdData[k] = v
		}
		if u, ok := data[KeyUnsubscribeURL]; ok {
			mdData[KeyUnsubscribeURL] = mdSafe(u)
		}
		src, err := exec(s.mdFile, s.md, mdData)
		if err != nil {
			return err
		}
		if out.HTML, out.Text, err = renderMarkdown(s.markdown, []byte(src)); err != nil {
			return fmt.Errorf("%s: %w", s.mdFile, err)
		}
	}
	if s.mdTags != nil && !s.cssPerMessage {
		out.HTML = s.mdTags.Replace(out.HTML)
	}
	if s.layout != nil {
		ld := make(map[string]any, len(data)+2)
		for k, v := range data {
			ld[k] = v
		}
		ld[KeyBody] = htmltemplate.HTML(out.HTML)
		ld[KeySubject] = out.Subject
		if out.HTML, err = exec(s.layoutFile, s.layout, ld); err != nil {
			return err
		}
	}
	if s.css != nil && s.cssPerMessage && out.HTML != "" {
		if out.HTML, err = s.css.inline(out.HTML); err != nil {
			return fmt.Errorf("inlining CSS: %w", err)
		}
	}
	switch {
	case s.text != nil:
		if out.Text, err = exec(s.textFile, s.text, data); err != nil {
			return err
		}
	case s.md != nil:
		// The text part comes from the Markdown; an unsubscribe link that only the
		// layout shows (Check makes sure the HTML has it) gets a line of its own.
		if u := data[KeyUnsubscribeURL]; u != "" && !strings.Contains(out.Text, u) {
			out.Text += "\n--\nUnsubscribe: " + u + "\n"
		}
	case derived:
	default:
		out.Text = DeriveText(out.HTML)
	}
	if s.toName != nil {
		if out.ToName, err = exec(toNameName, s.toName, data); err != nil {
			return err
		}
	} else {
		out.ToName = nameColumn(data)
	}
	out.ToName = HeaderText(out.ToName)
	return fn(out)
}

// Warnings are problems found when parsing that do not stop a campaign: CSS that
// inlining cannot carry over.
func (s *Set) Warnings() []string { return s.warnings }

// nameColumn is the default To display name: the `name` column, matched
// case-insensitively, or "".
// view is b as a string without a copy: valid while b's memory is not written again.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func nameColumn(data map[string]string) string {
	if v, ok := data["name"]; ok {
		return v
	}
	for k, v := range data {
		if strings.EqualFold(k, "name") {
			return v
		}
	}
	return ""
}

// DeriveText converts a rendered HTML body into its text part in a single pass, keeping
// every link's URL after its text ("unsubscribe <https://…>").
func DeriveText(html string) string {
	return htmlToText(html)
}

// HeaderText makes s safe as a header value: it is made valid UTF-8, every run of
// control characters (CR, LF, tab, NUL, …) becomes a single space, and it is trimmed.
// List data can then never start a new header line.
func HeaderText(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean {
		return strings.TrimSpace(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	replaced := false // the last byte written stands for a run of control characters
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029':
			if b.Len() == 0 || b.String()[b.Len()-1] != ' ' {
				b.WriteByte(' ')
			}
			replaced = true
		case r == ' ' && replaced:
			// a space next to a replaced run joins it
		default:
			replaced = false
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}
