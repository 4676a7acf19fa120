package templates

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Limits that keep every header line within RFC 5322's 998 octets.
const (
	// MaxUnsubscribeURL is the longest unsubscribe URL Build accepts, in octets.
	MaxUnsubscribeURL = 900
	// MaxHeaderValue is the longest extra header value NewBuilder accepts, in octets.
	MaxHeaderValue = 900
	// MaxDisplayName is the longest To display name Build writes, in octets; longer
	// names are cut at a character boundary.
	MaxDisplayName = 256
	// maxWord is the longest space-free run a header value may hold before it is
	// written as RFC 2047 encoded words (which fold).
	maxWord = 900
)

// BuilderOptions is what is fixed for every message of a campaign.
type BuilderOptions struct {
	// From is the From header as configured, e.g. "Acme News <news@acme.example>".
	From string
	// ReplyTo is the optional Reply-To address.
	ReplyTo string
	// Headers are the campaign's extra headers. Names must be RFC 5322 field names and
	// may not override the headers herald sets itself; values may not hold CR or LF.
	Headers map[string]string
	// UnsubscribeMailto is an optional address offered as mailto: in List-Unsubscribe.
	UnsubscribeMailto string
	// Now is the clock for the Date header (nil: time.Now).
	Now func() time.Time
	// NewID generates the local part of each Message-ID (nil: 128 random bits, base32
	// lowercase, no padding).
	NewID func() string
	// ListID is the List-Id header (RFC 2919): "<id>" or "Label <id>"; a bare id is put
	// in angle brackets. "" writes none.
	ListID string
	// FeedbackID is Gmail's Feedback-ID header ("a:b:c:SenderId"); "" writes none.
	FeedbackID string
	// Attachments go to every message, Inline files to every message with an HTML body
	// (as multipart/related parts, each with a ContentID). They are encoded once here.
	Attachments []Attachment
	Inline      []Attachment
}

// Builder turns rendered messages into RFC 5322 messages. It validates the campaign's
// settings once and is safe for concurrent use.
type Builder struct {
	from     *mail.Address
	replyTo  *mail.Address
	domain   string
	mailto   string // "<mailto:addr>" or ""
	extra    [][2]string
	now      func() time.Time
	newID    func() string
	boundary string    // multipart boundary shared by the campaign's flat messages
	bufs     sync.Pool // *bytes.Buffer

	fromHeader, replyToHeader string
	listHeaders               [][2]string // List-Id, Feedback-ID
	attachments, inline       []preparedPart
}

// Built is one message ready for a provider.
type Built struct {
	// Raw is the whole RFC 5322 message, CRLF line endings.
	Raw []byte
	// MessageID is the Message-ID header value, "<id@from-domain>".
	MessageID string
	// Headers are the extra headers in order: List-Id and Feedback-ID when set,
	// List-Unsubscribe, List-Unsubscribe-Post, Precedence, then the campaign's (sorted by
	// name). Values hold no CR or LF.
	Headers [][2]string
}

// reserved reports whether herald writes the header itself (lower-case name).
func reserved(lower string) bool {
	switch lower {
	case "from", "to", "cc", "bcc", "reply-to", "sender", "subject", "date", "message-id",
		"mime-version", "list-unsubscribe", "list-unsubscribe-post", "precedence",
		"return-path", "list-id", "feedback-id":
		return true
	}
	return strings.HasPrefix(lower, "content-")
}

// NewBuilder validates o and returns a Builder for the campaign.
func NewBuilder(o BuilderOptions) (*Builder, error) {
	b := &Builder{now: o.Now, newID: o.NewID}
	if b.now == nil {
		b.now = time.Now
	}
	if b.newID == nil {
		b.newID = randomID
	}
	from, err := parseAddress("from", o.From)
	if err != nil {
		return nil, err
	}
	b.from = from
	b.domain = from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	if o.ReplyTo != "" {
		if b.replyTo, err = parseAddress("reply_to", o.ReplyTo); err != nil {
			return nil, err
		}
	}
	if o.UnsubscribeMailto != "" {
		a, err := parseAddress("unsubscribe mailto", strings.TrimPrefix(o.UnsubscribeMailto, "mailto:"))
		if err != nil {
			return nil, err
		}
		if a.Name != "" || !isASCII(a.Address) {
			return nil, fmt.Errorf("unsubscribe mailto %q: want a bare ASCII address", o.UnsubscribeMailto)
		}
		b.mailto = "<mailto:" + a.Address + ">"
	}
	names := make([]string, 0, len(o.Headers))
	seen := make(map[string]string, len(o.Headers))
	for name, value := range o.Headers {
		if err := ValidateHeader(name, value); err != nil {
			return nil, err
		}
		l := strings.ToLower(name)
		if prev, dup := seen[l]; dup {
			return nil, fmt.Errorf("headers: %q and %q are the same header", prev, name)
		}
		seen[l] = name
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b.extra = append(b.extra, [2]string{name, strings.TrimSpace(o.Headers[name])})
	}
	b.fromHeader = addressHeader(b.from.Address, b.from.Name)
	if b.replyTo != nil {
		b.replyToHeader = addressHeader(b.replyTo.Address, b.replyTo.Name)
	}
	if o.ListID != "" {
		v, err := listIDHeader(o.ListID)
		if err != nil {
			return nil, err
		}
		b.listHeaders = append(b.listHeaders, [2]string{"List-Id", v})
	}
	if o.FeedbackID != "" {
		v := strings.TrimSpace(o.FeedbackID)
		if err := ValidateHeader("X-Feedback-ID", v); err != nil || !isASCII(v) || strings.ContainsAny(v, " \t") {
			return nil, fmt.Errorf("feedback_id %q: want printable ASCII without spaces, e.g. campaign:list:acme:herald", o.FeedbackID)
		}
		b.listHeaders = append(b.listHeaders, [2]string{"Feedback-ID", v})
	}
	for _, a := range o.Attachments {
		p, err := prepareAttachment(a)
		if err != nil {
			return nil, err
		}
		b.attachments = append(b.attachments, p)
	}
	for _, a := range o.Inline {
		if a.ContentID == "" {
			return nil, fmt.Errorf("inline %q: no content id", a.Name)
		}
		p, err := prepareAttachment(a)
		if err != nil {
			return nil, err
		}
		b.inline = append(b.inline, p)
	}
	b.boundary = newBoundary()
	b.bufs.New = func() any { return new(bytes.Buffer) }
	return b, nil
}

// listIDHeader checks and writes a List-Id value: "<id>", "id" or "Label <id>", where
// id is a dot-atom such as november-news.acme.example. A label that is not plain ASCII is
// written as encoded words, one with specials quoted.
func listIDHeader(s string) (string, error) {
	s = strings.TrimSpace(s)
	label, id := "", s
	if i := strings.LastIndexByte(s, '<'); i >= 0 && strings.HasSuffix(s, ">") {
		label, id = strings.TrimSpace(s[:i]), s[i+1:len(s)-1]
	}
	bad := func(why string) error {
		return fmt.Errorf("list_id %q: %s (e.g. \"November news <november-news.acme.example>\")", s, why)
	}
	if id == "" || len(id) > 255 || strings.HasPrefix(id, ".") || strings.HasSuffix(id, ".") || strings.Contains(id, "..") {
		return "", bad("the id must be a dot-separated name")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0) {
			return "", bad(fmt.Sprintf("the id may not hold %q", c))
		}
	}
	if label == "" {
		return "<" + id + ">", nil
	}
	if HeaderText(label) != label || len(label) > MaxDisplayName {
		return "", bad("the label must be one line of at most 256 octets")
	}
	if needsQEncoding(label) {
		return qEncode(label, 78-len("List-Id: ")) + " <" + id + ">", nil
	}
	return phrase(label) + " <" + id + ">", nil
}

// phrase writes ASCII text as an RFC 5322 phrase: as it is when it is atoms separated
// by single spaces, else as a quoted string.
func phrase(s string) string {
	plain := !strings.Contains(s, "  ")
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c == ' ' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
	}
	if plain {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func parseAddress(what, s string) (*mail.Address, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("%s %q: not an address: %w", what, s, err)
	}
	if i := strings.LastIndexByte(a.Address, '@'); i <= 0 || i == len(a.Address)-1 {
		return nil, fmt.Errorf("%s %q: address has no domain", what, s)
	}
	if len(a.String()) > MaxHeaderValue {
		return nil, fmt.Errorf("%s %q: longer than %d octets", what, s, MaxHeaderValue)
	}
	return a, nil
}

// ValidateHeader checks one extra header: the name must be an RFC 5322 field name
// (printable ASCII without ':') that herald does not set itself (From, To, Subject, Date,
// Message-ID, MIME-Version, Content-*, …); the value must be non-empty valid UTF-8 with
// no CR, LF or other control character (tab aside), at most MaxHeaderValue octets.
func ValidateHeader(name, value string) error {
	if name == "" {
		return fmt.Errorf("headers: empty header name")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return fmt.Errorf("headers: name %q: character %q is not allowed in a header name", name, c)
		}
	}
	l := strings.ToLower(name)
	if reserved(l) {
		return fmt.Errorf("headers: %s is set by herald and cannot be overridden", name)
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("headers: %s: value is not valid UTF-8", name)
	}
	for _, r := range value {
		switch {
		case r == '\r' || r == '\n':
			return fmt.Errorf("headers: %s: value holds a line break", name)
		case r != '\t' && (r < 0x20 || r == 0x7f):
			return fmt.Errorf("headers: %s: value holds control character %U", name, r)
		}
	}
	if strings.TrimSpace(value) == "" {
		return fmt.Errorf("headers: %s: empty value", name)
	}
	if len(value) > MaxHeaderValue {
		return fmt.Errorf("headers: %s: value is %d octets, at most %d allowed", name, len(value), MaxHeaderValue)
	}
	return nil
}

// FromAddress is the bare From address (the default envelope sender).
func (b *Builder) FromAddress() string { return b.from.Address }

// From is the From header value as written, e.g. `"Acme News" <news@acme.example>`.
func (b *Builder) From() string { return b.from.String() }

// Build renders one message. toAddr is the bare recipient address, toName its display
// name (may be empty, may hold quotes, commas, non-ASCII), unsubURL the https
// unsubscribe URL. r must have a text or an HTML body; its Attachments are added to the
// campaign's.
//
// The structure is the simplest that carries the parts: a single text or HTML part;
// multipart/alternative for both; multipart/related around the HTML and its inline
// files; multipart/mixed around the body and its attachments.
func (b *Builder) Build(r Rendered, toAddr, toName, unsubURL string) (Built, error) {
	to, err := checkRecipient(r, toAddr, unsubURL)
	if err != nil {
		return Built{}, err
	}

	listUnsub := "<" + unsubURL + ">"
	if b.mailto != "" {
		listUnsub += ", " + b.mailto
	}
	id := "<" + b.newID() + "@" + b.domain + ">"

	text, html := validUTF8(r.Text), validUTF8(r.HTML)
	body, err := b.body(text, html, r.Attachments)
	if err != nil {
		return Built{}, fmt.Errorf("building message for %s: %w", toAddr, err)
	}

	buf := b.bufs.Get().(*bytes.Buffer)
	defer b.bufs.Put(buf)
	buf.Reset()
	buf.Grow(body.size() + 2048)

	writeHeader(buf, "From", b.fromHeader)
	writeHeader(buf, "To", addressHeader(to.Address, toName))
	if b.replyTo != nil {
		writeHeader(buf, "Reply-To", b.replyToHeader)
	}
	writeHeader(buf, "Subject", subjectHeader(r.Subject))
	writeHeader(buf, "Date", b.now().Format(time.RFC1123Z))
	writeHeader(buf, "Message-ID", id)
	writeHeader(buf, "MIME-Version", "1.0")
	for _, h := range b.listHeaders {
		writeHeader(buf, h[0], h[1])
	}
	writeHeader(buf, "List-Unsubscribe", listUnsub)
	writeHeader(buf, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	writeHeader(buf, "Precedence", "bulk")
	for _, h := range b.extra {
		writeHeader(buf, h[0], h[1])
	}
	buf.WriteString(body.contentHeader())
	buf.WriteString("\r\n")
	body.writeBody(buf)

	raw := bytes.Clone(buf.Bytes())

	headers := make([][2]string, 0, 5+len(b.extra))
	headers = append(headers, b.listHeaders...)
	headers = append(headers,
		[2]string{"List-Unsubscribe", listUnsub},
		[2]string{"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
		[2]string{"Precedence", "bulk"})
	headers = append(headers, b.extra...)
	return Built{Raw: raw, MessageID: id, Headers: headers}, nil
}

// Check is Build without the message: it fails, with Build's error, exactly when Build
// would for a Rendered without Attachments of its own (those are encoded, and can be
// refused, only by Build). The To name, the subject and the bodies are written as they
// are given or cleaned, never refused, so only the address, the unsubscribe URL and an
// empty message are checked.
func (b *Builder) Check(r Rendered, toAddr, unsubURL string) error {
	_, err := checkRecipient(r, toAddr, unsubURL)
	return err
}

// checkRecipient checks what Build takes from one recipient and can refuse, and returns
// the parsed address.
func checkRecipient(r Rendered, toAddr, unsubURL string) (*mail.Address, error) {
	to, err := mail.ParseAddress(toAddr)
	if err != nil || to.Name != "" || !strings.Contains(to.Address, "@") {
		return nil, fmt.Errorf("building message: recipient %q is not a bare address", toAddr)
	}
	if err := checkUnsubURL(unsubURL); err != nil {
		return nil, err
	}
	if r.Text == "" && r.HTML == "" {
		return nil, fmt.Errorf("building message for %s: no body", toAddr)
	}
	return to, nil
}

// body assembles the MIME structure of a message.
func (b *Builder) body(text, html string, own []Attachment) (*entity, error) {
	var content *entity
	var leaves []*entity
	if text != "" {
		p := textPart("text/plain", text)
		leaves = append(leaves, &entity{leaf: &p})
	}
	var htmlEntity *entity
	if html != "" {
		p := textPart("text/html", html)
		htmlEntity = &entity{leaf: &p}
		leaves = append(leaves, htmlEntity)
	}
	nested := (len(b.inline) > 0 && htmlEntity != nil) || len(b.attachments) > 0 || len(own) > 0

	// One boundary shared by the campaign's flat messages (no random draw per message);
	// nested messages get fresh ones, a different one at each level.
	base := b.boundary
	if nested || strings.Contains(text, base) || strings.Contains(html, base) {
		base = newBoundary()
	}
	if len(leaves) == 2 {
		content = &entity{subtype: "alternative", boundary: base, parts: leaves}
		if nested {
			content.boundary = "alt-" + base
		}
	} else {
		content = leaves[0]
	}
	if len(b.inline) > 0 && htmlEntity != nil {
		rel := &entity{subtype: "related", boundary: "rel-" + base}
		if len(leaves) == 2 {
			// text and (HTML + its images): the related part replaces the HTML leaf.
			rel.parts = append(rel.parts, htmlEntity)
			content.parts[1] = rel
		} else {
			rel.parts = append(rel.parts, content)
			content = rel
		}
		for i := range b.inline {
			rel.parts = append(rel.parts, &entity{leaf: &b.inline[i]})
		}
	}
	if len(b.attachments) > 0 || len(own) > 0 {
		mixed := &entity{subtype: "mixed", boundary: "mix-" + base, parts: []*entity{content}}
		for i := range b.attachments {
			mixed.parts = append(mixed.parts, &entity{leaf: &b.attachments[i]})
		}
		for _, a := range own {
			p, err := prepareAttachment(a)
			if err != nil {
				return nil, err
			}
			mixed.parts = append(mixed.parts, &entity{leaf: &p})
		}
		content = mixed
	}
	return content, nil
}

// addressHeader writes an address with its display name: as it is when it is plain
// ASCII, quoted when it needs quoting, as RFC 2047 encoded words when it is not ASCII or
// holds "=?" (list data must not pass off an encoded word of its own).
func addressHeader(addr, name string) string {
	name = displayName(name)
	if name == "" {
		return "<" + addr + ">"
	}
	a := &mail.Address{Name: name, Address: addr}
	if needsQEncoding(name) {
		s := qEncode(name, 78-len("Reply-To: ")) + " <" + addr + ">"
		if got, err := mail.ParseAddress(s); err == nil && got.Name == name && got.Address == addr {
			return s
		}
		return "<" + addr + ">"
	}
	if !roundTrips(a) {
		return "<" + addr + ">"
	}
	return a.String()
}

// printableASCII reports whether s holds only printable US-ASCII and tabs. It looks at
// eight bytes at a time: most of a body passes without a per-byte test.
func printableASCII(s string) bool {
	const (
		high  = 0x8080808080808080
		ones  = 0x0101010101010101
		space = 0x2020202020202020
	)
	for len(s) >= 8 {
		w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		// No byte ≥ 0x80, none < 0x20 (w-space borrows into the high bit), none 0x7f
		// (w+ones carries into it).
		if w&high != 0 || (w-space)&^w&high != 0 || (w+ones)&high != 0 {
			if !printableBytes(s[:8]) {
				return false
			}
		}
		s = s[8:]
	}
	return printableBytes(s)
}

func printableBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x7f || (c < ' ' && c != '\t') {
			return false
		}
	}
	return true
}

// checkUnsubURL accepts an https URL of printable ASCII without <, > or quotes that fits
// a List-Unsubscribe line.
func checkUnsubURL(u string) error {
	if !strings.HasPrefix(u, "https://") || len(u) <= len("https://") {
		return fmt.Errorf("building message: unsubscribe URL %q is not an https URL", u)
	}
	if len(u) > MaxUnsubscribeURL {
		return fmt.Errorf("building message: unsubscribe URL is %d octets, at most %d fit a header line", len(u), MaxUnsubscribeURL)
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' {
			return fmt.Errorf("building message: unsubscribe URL %q holds %q", u, c)
		}
	}
	return nil
}

// roundTrips reports whether a's written form parses back to a.
func roundTrips(a *mail.Address) bool {
	got, err := mail.ParseAddress(a.String())
	return err == nil && got.Name == a.Name && got.Address == a.Address
}

// displayName cleans a To display name and cuts it to MaxDisplayName octets.
func displayName(s string) string {
	s = HeaderText(s)
	if len(s) <= MaxDisplayName {
		return s
	}
	cut := MaxDisplayName
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimSpace(s[:cut])
}

// subjectHeader cleans a subject and writes it as RFC 2047 encoded words when it is not
// plain ASCII, has a run too long to fold, or holds "=?".
func subjectHeader(s string) string {
	s = HeaderText(s)
	if needsQEncoding(s) {
		return qEncode(s, 78-len("Subject: "))
	}
	return s
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// randomID is the default Message-ID local part: 128 random bits, base32 lowercase.
func randomID() string {
	return strings.ToLower(rand.Text())
}

// newBoundary is a random multipart boundary.
func newBoundary() string {
	var p [20]byte
	_, _ = rand.Read(p[:])
	return hex.EncodeToString(p[:])
}
