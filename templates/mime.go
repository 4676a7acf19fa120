package templates

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Attachment is a file carried by a message: an attachment (ContentID "") or an inline
// part of a multipart/related HTML body, referred to as <img src="cid:ContentID">.
type Attachment struct {
	// Name is the file name shown to the reader (no folders). Non-ASCII names are
	// written as RFC 2231 parameters.
	Name string
	// ContentType is the MIME type; "" means from the name's extension, else from the
	// content.
	ContentType string
	// ContentID makes the file an inline part referred to as cid:ContentID.
	ContentID string
	// Data is the file's content.
	Data []byte
}

// MaxFileName is the longest attachment file name, in octets.
const MaxFileName = 255

// preparedPart is a leaf MIME entity ready to be written: its header lines (without the
// final blank line) and its encoded body, both with CRLF line ends; or, for a 7bit text
// part, the text as rendered, whose line ends are made CRLF as it is written (saving
// two copies of each part of every message).
type preparedPart struct {
	header string
	body   []byte
	text   string
}

// checkAttachment validates a file for a message.
func checkAttachment(a Attachment) error {
	if a.Name == "" {
		return fmt.Errorf("attachment without a file name")
	}
	if len(a.Name) > MaxFileName {
		return fmt.Errorf("attachment %q: the file name is longer than %d octets", a.Name, MaxFileName)
	}
	if a.ContentID != "" {
		for i := 0; i < len(a.ContentID); i++ {
			c := a.ContentID[i]
			if c <= ' ' || c >= 0x7f || strings.IndexByte(`<>"()[]\,;:@`, c) >= 0 {
				return fmt.Errorf("inline %q: the content id may hold only letters, digits and . _ - + / = ! # $ %% & ' * ? ^ ` { | } ~", a.ContentID)
			}
		}
	}
	return nil
}

// fileName cleans a file name for a Content-Disposition parameter: valid UTF-8, no
// folder, no control characters.
func cleanFileName(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, `\`, "/"))
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return '_'
		}
		return r
	}, strings.ToValidUTF8(name, "_"))
	if name == "" || name == "." || name == "/" {
		name = "attachment"
	}
	return name
}

// DetectType is the MIME type of a file: from its name's extension, else sniffed from
// its first 512 bytes.
func DetectType(name string, data []byte) string {
	if t := mime.TypeByExtension(strings.ToLower(filepath.Ext(name))); t != "" {
		return t
	}
	return http.DetectContentType(data)
}

// prepareAttachment encodes a file as a base64 MIME part wrapped at 76 characters.
func prepareAttachment(a Attachment) (preparedPart, error) {
	if err := checkAttachment(a); err != nil {
		return preparedPart{}, err
	}
	name := cleanFileName(a.Name)
	ct := a.ContentType
	if ct == "" {
		ct = DetectType(name, a.Data)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return preparedPart{}, fmt.Errorf("attachment %q: content type %q: %v", a.Name, ct, err)
	}
	params["name"] = name
	ctHeader := mime.FormatMediaType(mt, params)
	disp := "attachment"
	if a.ContentID != "" {
		disp = "inline"
	}
	dispHeader := mime.FormatMediaType(disp, map[string]string{"filename": name})
	if ctHeader == "" || dispHeader == "" {
		return preparedPart{}, fmt.Errorf("attachment %q: cannot write its MIME header", a.Name)
	}
	var h strings.Builder
	h.WriteString("Content-Type: " + ctHeader + "\r\n")
	h.WriteString("Content-Transfer-Encoding: base64\r\n")
	h.WriteString("Content-Disposition: " + dispHeader + "\r\n")
	if a.ContentID != "" {
		h.WriteString("Content-ID: <" + a.ContentID + ">\r\n")
	}
	return preparedPart{header: h.String(), body: base64Lines(a.Data)}, nil
}

// base64Lines is data in base64, in lines of 76 characters ending in CRLF.
func base64Lines(data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	out := make([]byte, 0, len(enc)+len(enc)/76*2+2)
	for len(enc) > 76 {
		out = append(out, enc[:76]...)
		out = append(out, '\r', '\n')
		enc = enc[76:]
	}
	out = append(out, enc...)
	out = append(out, '\r', '\n')
	return out
}

// textPart prepares a text/plain or text/html body. A body of printable US-ASCII whose
// lines fit in 998 octets goes out as it is under the label 7bit (CRLF line ends), which
// every relay carries unchanged (so a DKIM signature over it survives relays without
// 8BITMIME). Anything else is quoted-printable: 7-bit as well.
func textPart(mediaType, s string) preparedPart {
	p, cte := preparedPart{text: s}, "7bit"
	if !sevenBit(s) {
		p, cte = preparedPart{body: quotedPrintable(s)}, "quoted-printable"
	}
	p.header = "Content-Type: " + mediaType + "; charset=UTF-8\r\nContent-Transfer-Encoding: " + cte + "\r\n"
	return p
}

// sevenBit reports whether s can go out as it is, labelled 7bit: printable US-ASCII
// with lines of at most 998 octets.
func sevenBit(s string) bool {
	for rest := s; len(rest) > 0; {
		line := rest
		if i := strings.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
			line = strings.TrimSuffix(line, "\r")
		} else {
			rest = ""
		}
		if len(line) > 998-2 || !printableASCII(line) {
			return false
		}
	}
	return true
}

func quotedPrintable(s string) []byte {
	var b bytes.Buffer
	b.Grow(len(s) + len(s)/8)
	w := quotedprintable.NewWriter(&b)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return b.Bytes()
}

// write writes the part's body: its text with every line ended by CRLF (it has no bare
// CR), or its encoded body.
func (p *preparedPart) write(buf *bytes.Buffer) {
	if p.body != nil {
		buf.Write(p.body)
		return
	}
	for s := p.text; len(s) > 0; {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			buf.WriteString(s)
			return
		}
		if i > 0 && s[i-1] == '\r' {
			buf.WriteString(s[:i+1])
		} else {
			buf.WriteString(s[:i])
			buf.WriteString("\r\n")
		}
		s = s[i+1:]
	}
}

// entity is a MIME entity: a prepared leaf, or a multipart of entities.
type entity struct {
	leaf     *preparedPart
	subtype  string // "mixed", "related", "alternative"
	boundary string
	parts    []*entity
}

// contentHeader is the entity's Content-* header lines.
func (e *entity) contentHeader() string {
	if e.leaf != nil {
		return e.leaf.header
	}
	return "Content-Type: multipart/" + e.subtype + ";\r\n boundary=\"" + e.boundary + "\"\r\n"
}

// writeBody writes the entity's body (after its header and the blank line).
func (e *entity) writeBody(buf *bytes.Buffer) {
	if e.leaf != nil {
		e.leaf.write(buf)
		return
	}
	for _, p := range e.parts {
		buf.WriteString("--" + e.boundary + "\r\n")
		buf.WriteString(p.contentHeader())
		buf.WriteString("\r\n")
		p.writeBody(buf)
		buf.WriteString("\r\n")
	}
	buf.WriteString("--" + e.boundary + "--\r\n")
}

// size is roughly the number of octets writeBody writes.
func (e *entity) size() int {
	if e.leaf != nil {
		return len(e.leaf.header) + len(e.leaf.body) + len(e.leaf.text) + strings.Count(e.leaf.text, "\n")
	}
	n := 0
	for _, p := range e.parts {
		n += p.size() + len(e.boundary) + 8
	}
	return n
}

// needsQEncoding reports whether a header text must be written as RFC 2047 encoded
// words: it is not ASCII, it has a space-free run too long for a line, or it holds
// something a reader could take for an encoded word ("=?"), which list data must never
// be able to smuggle in.
func needsQEncoding(s string) bool {
	if !isASCII(s) || strings.Contains(s, "=?") {
		return true
	}
	for _, w := range strings.Fields(s) {
		if len(w) > maxWord {
			return true
		}
	}
	return false
}

// qEncode writes s as RFC 2047 Q-encoded words of at most 75 octets separated by
// spaces, encoding every character but letters, digits and !*+-/ (the set RFC 2047 §5
// allows in a phrase, so the words are safe in a display name as well as a Subject).
// Multi-byte characters are never split across words. The first word is at most first
// octets long (so that it fits the header's first line beside the field name).
func qEncode(s string, first int) string {
	const prefix, suffix = "=?utf-8?q?", "?="
	max := min(75, first) - len(prefix) - len(suffix)
	const hex = "0123456789ABCDEF"
	var out, word strings.Builder
	out.Grow(len(s) * 2)
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
		max = 75 - len(prefix) - len(suffix)
	}
	var enc []byte
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		enc = enc[:0]
		switch {
		case r == ' ':
			enc = append(enc, '_')
		case r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!*+-/", r)):
			enc = append(enc, byte(r))
		default:
			var p [utf8.UTFMax]byte
			n := utf8.EncodeRune(p[:], r)
			for _, c := range p[:n] {
				enc = append(enc, '=', hex[c>>4], hex[c&15])
			}
		}
		if word.Len()+len(enc) > max {
			flush()
		}
		word.Write(enc)
	}
	flush()
	return out.String()
}

// writeHeader writes "Name: value" folded at spaces so that lines stay within 78
// octets where the value allows; the first word always stays on the name's line (no
// empty first line), and no line exceeds 998 octets for the values Build accepts.
func writeHeader(buf *bytes.Buffer, name, value string) {
	buf.WriteString(name)
	buf.WriteString(":")
	lineLen := len(name) + 1
	first := true
	for len(value) > 0 {
		word := value
		rest := ""
		if i := strings.IndexByte(value, ' '); i >= 0 {
			word, rest = value[:i], value[i+1:]
		}
		if !first && lineLen+1+len(word) > 78 {
			buf.WriteString("\r\n")
			lineLen = 0
		}
		buf.WriteByte(' ')
		buf.WriteString(word)
		lineLen += 1 + len(word)
		first = false
		value = rest
	}
	buf.WriteString("\r\n")
}
