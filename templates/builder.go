package templates

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"
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
	boundary string    // multipart boundary shared by the campaign's messages
	bufs     sync.Pool // *bytes.Buffer
}

// Built is one message ready for a provider.
type Built struct {
	// Raw is the whole RFC 5322 message, CRLF line endings.
	Raw []byte
	// MessageID is the Message-ID header value, "<id@from-domain>".
	MessageID string
	// Headers are the extra headers in order: List-Unsubscribe, List-Unsubscribe-Post,
	// Precedence, then the campaign's (sorted by name). Values hold no CR or LF.
	Headers [][2]string
}

// reserved reports whether herald writes the header itself (lower-case name).
func reserved(lower string) bool {
	switch lower {
	case "from", "to", "cc", "bcc", "reply-to", "sender", "subject", "date", "message-id",
		"mime-version", "list-unsubscribe", "list-unsubscribe-post", "precedence",
		"return-path":
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
	b.boundary = newBoundary()
	b.bufs.New = func() any { return new(bytes.Buffer) }
	return b, nil
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
// unsubscribe URL. r must have a text or an HTML body.
func (b *Builder) Build(r Rendered, toAddr, toName, unsubURL string) (Built, error) {
	to, err := mail.ParseAddress(toAddr)
	if err != nil || to.Name != "" || !strings.Contains(to.Address, "@") {
		return Built{}, fmt.Errorf("building message: recipient %q is not a bare address", toAddr)
	}
	to.Name = displayName(toName)
	if to.Name != "" && !isASCII(to.Name) && !roundTrips(to) {
		// net/mail writes some non-ASCII names (with a backslash) as encoded words it
		// cannot read back; such a name loses its backslashes, or else is left out.
		to.Name = strings.TrimSpace(strings.ReplaceAll(to.Name, `\`, ""))
		if !roundTrips(to) {
			to.Name = ""
		}
	}
	if err := checkUnsubURL(unsubURL); err != nil {
		return Built{}, err
	}
	if r.Text == "" && r.HTML == "" {
		return Built{}, fmt.Errorf("building message for %s: no body", toAddr)
	}

	listUnsub := "<" + unsubURL + ">"
	if b.mailto != "" {
		listUnsub += ", " + b.mailto
	}
	id := "<" + b.newID() + "@" + b.domain + ">"

	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	m.FromMailAddress(b.from)
	m.ToMailAddress(to)
	if b.replyTo != nil {
		m.ReplyToMailAddress(b.replyTo)
	}
	m.Subject(subjectHeader(r.Subject))
	m.SetDateWithValue(b.now())
	m.SetGenHeader(gomail.HeaderMessageID, id)
	m.SetGenHeader(gomail.HeaderPrecedence, "bulk")
	m.SetGenHeader(gomail.HeaderListUnsubscribePost, "List-Unsubscribe=One-Click")
	// The only preformatted header (go-mail writes those in map order): folded between
	// its URIs so that a long URL keeps the line under 998 octets.
	m.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribe, strings.Replace(listUnsub, ", ", ",\r\n ", 1))
	for _, h := range b.extra {
		m.SetGenHeader(gomail.Header(h[0]), h[1])
	}

	text, html := validUTF8(r.Text), validUTF8(r.HTML)
	boundary := b.boundary
	if strings.Contains(text, boundary) || strings.Contains(html, boundary) {
		boundary = newBoundary() // the body shows the campaign's boundary: use a fresh one
	}
	m.SetBoundary(boundary)
	if text != "" {
		body, enc := partBody(text)
		m.SetBodyWriter(gomail.TypeTextPlain, stringWriter(body), gomail.WithPartEncoding(enc))
	}
	if html != "" {
		body, enc := partBody(html)
		if text != "" {
			m.AddAlternativeWriter(gomail.TypeTextHTML, stringWriter(body), gomail.WithPartEncoding(enc))
		} else {
			m.SetBodyWriter(gomail.TypeTextHTML, stringWriter(body), gomail.WithPartEncoding(enc))
		}
	}

	buf := b.bufs.Get().(*bytes.Buffer)
	defer b.bufs.Put(buf)
	buf.Reset()
	buf.Grow(len(text) + len(html) + len(text)/8 + len(html)/8 + 2048)
	if _, err := m.WriteTo(buf); err != nil {
		return Built{}, fmt.Errorf("building message for %s: %w", toAddr, err)
	}
	raw := make([]byte, buf.Len())
	copy(raw, buf.Bytes())

	headers := make([][2]string, 0, 3+len(b.extra))
	headers = append(headers,
		[2]string{"List-Unsubscribe", listUnsub},
		[2]string{"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"},
		[2]string{"Precedence", "bulk"})
	headers = append(headers, b.extra...)
	return Built{Raw: raw, MessageID: id, Headers: headers}, nil
}

// partBody chooses a body part's transfer encoding. A body of printable US-ASCII whose
// lines fit in 998 octets needs no encoding: it goes out as it is, with CRLF line ends
// (quoted-printable would cost a pass over every byte of every message for nothing).
// Anything else is quoted-printable. go-mail writes an unencoded part only under the
// "8bit" label (its "7bit" still encodes); 7-bit content under that label is valid.
func partBody(s string) (string, gomail.Encoding) {
	crlf := true
	for rest := s; len(rest) > 0; {
		line := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
			if strings.HasSuffix(line, "\r") {
				line = line[:len(line)-1]
			} else {
				crlf = false
			}
		} else {
			rest = ""
		}
		if len(line) > 998-2 || !printableASCII(line) {
			return s, gomail.EncodingQP
		}
	}
	if !crlf {
		s = toCRLF(s)
	}
	return s, gomail.NoEncoding
}

// toCRLF ends every line of s with CRLF (s has no bare CR).
func toCRLF(s string) string {
	var b strings.Builder
	b.Grow(len(s) + strings.Count(s, "\n"))
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			b.WriteString(s)
			break
		}
		if i > 0 && s[i-1] == '\r' {
			b.WriteString(s[:i+1])
		} else {
			b.WriteString(s[:i])
			b.WriteString("\r\n")
		}
		s = s[i+1:]
	}
	return b.String()
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

func stringWriter(s string) func(io.Writer) (int64, error) {
	return func(w io.Writer) (int64, error) {
		n, err := io.WriteString(w, s)
		return int64(n), err
	}
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

// subjectHeader cleans a subject. go-mail folds header values at spaces and encodes
// non-ASCII text as RFC 2047 words; a plain ASCII run too long for one line is encoded
// here so that it folds too.
func subjectHeader(s string) string {
	s = HeaderText(s)
	if !isASCII(s) {
		return s
	}
	for _, w := range strings.Fields(s) {
		if len(w) > maxWord {
			return forceQEncode(s)
		}
	}
	return s
}

// forceQEncode writes ASCII s as RFC 2047 Q-encoded words of at most 75 octets,
// separated by spaces.
func forceQEncode(s string) string {
	const prefix, suffix = "=?utf-8?q?", "?="
	const max = 75 - len(prefix) - len(suffix)
	var out, word strings.Builder
	flush := func() {
		if word.Len() == 0 {
			return
		}
		if out.Len() > 0 {
			out.WriteByte(' ')
		}
		out.WriteString(prefix)
		out.WriteString(word.String())
		out.WriteString(suffix)
		word.Reset()
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		var enc string
		switch {
		case c == ' ':
			enc = "_"
		case c == '=' || c == '?' || c == '_' || c < ' ' || c > '~':
			enc = fmt.Sprintf("=%02X", c)
		default:
			enc = string(c)
		}
		if word.Len()+len(enc) > max {
			flush()
		}
		word.WriteString(enc)
	}
	flush()
	return out.String()
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
