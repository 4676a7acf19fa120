// Package bounces reads a bounce mailbox (IMAP, POP3, Maildir or mbox), recognises
// delivery status notifications (RFC 3464), complaint feedback reports (ARF, RFC 5965)
// and the common non-standard bounce formats, matches each to the campaign and recipient
// it is about, and records hard bounces (`failed` + suppressed) and complaints
// (suppressed) in the journal. Soft bounces change nothing; other mail is left alone.
package bounces

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"

	"github.com/emersion/go-message"
)

// Kind is what a message in the bounce mailbox is.
type Kind int

// The kinds of message.
const (
	// Other is anything that is not a bounce or a complaint: left alone.
	Other Kind = iota
	// Hard is a permanent failure caused by the address (5.1.x, 5.2.1, 550/551/553):
	// the recipient is marked failed and suppressed.
	Hard
	// Rejected is another permanent failure (policy, content, 5.7.x…): reported, no
	// state changes, since the address itself may be fine.
	Rejected
	// Soft is a delay or a temporary failure (4.x.x): reported, no state changes.
	Soft
	// Complaint is a feedback-loop report (the recipient marked the message as spam):
	// the address is suppressed.
	Complaint
)

func (k Kind) String() string {
	return [...]string{"other", "hard bounce", "rejected", "soft bounce", "complaint"}[k]
}

// Recipient is one recipient a report is about.
type Recipient struct {
	// Address is the recipient as herald sent to it (Original-Recipient when the report
	// has it, else Final-Recipient).
	Address string
	// Kind is Hard, Rejected, Soft or Complaint.
	Kind Kind
	// Status is the DSN status code (5.1.1); Code the remote SMTP code (550), 0 if none.
	Status string
	Code   int
	// Diagnostic is the remote server's text.
	Diagnostic string
}

// Report is what Parse found in one message.
type Report struct {
	// Format is "dsn", "arf", "text" (a non-standard bounce) or "" (not a report).
	Format string
	// Recipients are the recipients the report is about (none for Other).
	Recipients []Recipient
	// MessageID is the Message-ID of the original message, when the report returns it.
	MessageID string
	// Tokens are herald unsubscribe tokens found in the report (in the original's
	// List-Unsubscribe, or in a VERP return path); not yet verified.
	Tokens []string
}

// Kind is the report's kind: that of its first recipient, Other when it has none.
func (r Report) Kind() Kind {
	if len(r.Recipients) == 0 {
		return Other
	}
	return r.Recipients[0].Kind
}

// maxPart bounds what is read of any one part: reports are small, the returned
// original may be large and only its header matters.
const maxPart = 256 << 10

var (
	tokenRe  = regexp.MustCompile(`u2\.[A-Za-z0-9_-]{40,}|u1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}`)
	statusRe = regexp.MustCompile(`\b([245])\.(\d{1,3})\.(\d{1,3})\b`)
	codeRe   = regexp.MustCompile(`(?:^|[^\d.])([45]\d\d)[\s-]`)
	addrRe   = regexp.MustCompile(`[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+`)
)

// Parse reads one message and reports whether it is a DSN, a complaint or a
// non-standard bounce, and whom it is about. A message it cannot make sense of is Other,
// never an error.
func Parse(raw []byte) Report {
	var r Report
	r.Tokens = findTokens(raw)
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return r
	}
	mt, params, _ := e.Header.ContentType()
	if mt == "multipart/report" {
		switch strings.ToLower(params["report-type"]) {
		case "delivery-status", "global-delivery-status":
			parseDSN(e, &r)
		case "feedback-report":
			parseARF(e, &r)
		}
		if r.Format != "" {
			return r
		}
	}
	parseText(e, raw, &r)
	return r
}

// findTokens returns the distinct token-shaped strings in raw.
func findTokens(raw []byte) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range tokenRe.FindAll(raw, -1) {
		if s := string(m); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// eachPart calls fn with every leaf part of e, depth first.
func eachPart(e *message.Entity, fn func(mt string, p *message.Entity)) {
	mr := e.MultipartReader()
	if mr == nil {
		mt, _, _ := e.Header.ContentType()
		fn(strings.ToLower(mt), e)
		return
	}
	for {
		p, err := mr.NextPart()
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return
		}
		if p == nil {
			return
		}
		eachPart(p, fn)
	}
}

// fieldBlocks reads the blank-line-separated blocks of header fields of a
// message/delivery-status or message/feedback-report body.
func fieldBlocks(body io.Reader) []textproto.MIMEHeader {
	br := bufio.NewReader(io.LimitReader(body, maxPart))
	var out []textproto.MIMEHeader
	for {
		// Skip blank lines between blocks.
		for {
			b, err := br.Peek(1)
			if err != nil {
				return out
			}
			if b[0] != '\r' && b[0] != '\n' {
				break
			}
			br.ReadByte()
		}
		h, err := textproto.NewReader(br).ReadMIMEHeader()
		if len(h) > 0 {
			out = append(out, h)
		}
		if err != nil {
			return out
		}
	}
}

// originalHeader reads the header of a returned original message (message/rfc822 or
// text/rfc822-headers) for its Message-ID and To.
func originalHeader(body io.Reader) (messageID, to string) {
	br := bufio.NewReader(io.LimitReader(body, maxPart))
	h, _ := textproto.NewReader(br).ReadMIMEHeader()
	messageID = strings.TrimSpace(h.Get("Message-Id"))
	if a, err := mail.ParseAddress(h.Get("To")); err == nil {
		to = a.Address
	}
	return messageID, to
}

func isOriginal(mt string) bool {
	switch mt {
	case "message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global", "message/global-headers":
		return true
	}
	return false
}

func parseDSN(e *message.Entity, r *Report) {
	eachPart(e, func(mt string, p *message.Entity) {
		switch {
		case mt == "message/delivery-status" || mt == "message/global-delivery-status":
			blocks := fieldBlocks(p.Body)
			if len(blocks) < 2 {
				return
			}
			r.Format = "dsn"
			for _, h := range blocks[1:] {
				if rc, ok := dsnRecipient(h); ok {
					r.Recipients = append(r.Recipients, rc)
				}
			}
		case isOriginal(mt):
			id, _ := originalHeader(p.Body)
			if r.MessageID == "" {
				r.MessageID = id
			}
		}
	})
}

// dsnRecipient reads one per-recipient block of a DSN.
func dsnRecipient(h textproto.MIMEHeader) (Recipient, bool) {
	addr := typedAddress(h.Get("Original-Recipient"))
	if addr == "" {
		addr = typedAddress(h.Get("Final-Recipient"))
	}
	if addr == "" {
		return Recipient{}, false
	}
	rc := Recipient{Address: addr, Status: strings.TrimSpace(h.Get("Status"))}
	if f := strings.Fields(rc.Status); len(f) > 0 {
		rc.Status = f[0]
	}
	diag := h.Get("Diagnostic-Code")
	if _, text, ok := strings.Cut(diag, ";"); ok {
		diag = text
	}
	rc.Diagnostic = strings.Join(strings.Fields(diag), " ")
	if m := codeRe.FindStringSubmatch(" " + rc.Diagnostic + " "); m != nil {
		rc.Code, _ = strconv.Atoi(m[1])
	}
	action := strings.ToLower(strings.TrimSpace(h.Get("Action")))
	switch {
	case action == "delivered" || action == "relayed" || action == "expanded":
		return Recipient{}, false
	case action == "delayed" || strings.HasPrefix(rc.Status, "4."):
		rc.Kind = Soft
	case strings.HasPrefix(rc.Status, "5."), action == "failed":
		rc.Kind = classify(rc.Status, rc.Code)
	default:
		return Recipient{}, false
	}
	return rc, true
}

// classify tells a hard bounce (the address is bad) from another permanent failure:
// the same rule as the SMTP provider's immediate answers.
func classify(status string, code int) Kind {
	switch {
	case strings.HasPrefix(status, "5.1."), status == "5.2.1":
		return Hard
	case (status == "" || status == "5.0.0") && (code == 550 || code == 551 || code == 553):
		return Hard
	case strings.HasPrefix(status, "4."):
		return Soft
	}
	return Rejected
}

// typedAddress reads "rfc822; user@example.com" (RFC 3464 address-type; address).
func typedAddress(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	if t, a, ok := strings.Cut(v, ";"); ok {
		if !strings.EqualFold(strings.TrimSpace(t), "rfc822") && !strings.EqualFold(strings.TrimSpace(t), "utf-8") {
			return ""
		}
		v = a
	}
	return strings.Trim(strings.TrimSpace(v), "<>")
}

func parseARF(e *message.Entity, r *Report) {
	var rc Recipient
	found := false
	var origTo string
	eachPart(e, func(mt string, p *message.Entity) {
		switch {
		case mt == "message/feedback-report":
			blocks := fieldBlocks(p.Body)
			if len(blocks) == 0 {
				return
			}
			h := blocks[0]
			found = true
			rc.Kind = Complaint
			rc.Diagnostic = "complaint: " + strings.ToLower(strings.TrimSpace(h.Get("Feedback-Type")))
			rc.Address = strings.Trim(strings.TrimSpace(h.Get("Original-Rcpt-To")), "<>")
		case isOriginal(mt):
			id, to := originalHeader(p.Body)
			if r.MessageID == "" {
				r.MessageID = id
			}
			origTo = to
		}
	})
	if !found {
		return
	}
	r.Format = "arf"
	if rc.Address == "" {
		rc.Address = origTo
	}
	r.Recipients = append(r.Recipients, rc)
}

// bounceSubjects are subjects of non-standard bounces (qmail, old Exim, Gmail-like).
var bounceSubjects = []string{
	"undeliver", "delivery status notification", "delivery failure", "mail delivery failed",
	"returned mail", "failure notice", "delivery has failed", "could not be delivered",
	"mail system error", "non remis", "unzustellbar",
}

// parseText recognises non-standard bounces: from a mailer daemon or with a bounce
// subject, with a failed address and a status or reply code in the text.
func parseText(e *message.Entity, raw []byte, r *Report) {
	from := strings.ToLower(e.Header.Get("From"))
	subject := strings.ToLower(decodeWord(e.Header.Get("Subject")))
	daemon := strings.Contains(from, "mailer-daemon") || strings.Contains(from, "postmaster") || strings.Contains(from, "mail delivery")
	bounceSubject := false
	for _, s := range bounceSubjects {
		bounceSubject = bounceSubject || strings.Contains(subject, s)
	}
	if !daemon && !bounceSubject {
		return
	}
	var text bytes.Buffer
	eachPart(e, func(mt string, p *message.Entity) {
		switch {
		case strings.HasPrefix(mt, "text/plain") || mt == "":
			io.Copy(&text, io.LimitReader(p.Body, maxPart))
			text.WriteByte('\n')
		case isOriginal(mt):
			if id, _ := originalHeader(p.Body); r.MessageID == "" {
				r.MessageID = id
			}
		}
	})
	body := text.String()
	if r.MessageID == "" {
		// An original quoted inline.
		if i := strings.Index(strings.ToLower(body), "\nmessage-id:"); i >= 0 {
			line, _, _ := strings.Cut(body[i+len("\nmessage-id:"):], "\n")
			r.MessageID = strings.TrimSpace(line)
		}
	}
	// The failed addresses: Exim's X-Failed-Recipients, else addresses in the text
	// before the returned original (a quoted original names the sender too).
	var addrs []string
	if x := e.Header.Get("X-Failed-Recipients"); x != "" {
		for _, a := range strings.Split(x, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
	}
	head := body
	for _, marker := range []string{"------ This is a copy of the message", "--- Below this line is a copy of the message", "----- Original message -----", "Original message follows", "\nReceived:", "\nReturn-Path:"} {
		if i := strings.Index(head, marker); i >= 0 {
			head = head[:i]
		}
	}
	if len(addrs) == 0 {
		seen := map[string]bool{}
		for _, a := range addrRe.FindAllString(head, -1) {
			la := strings.ToLower(a)
			if seen[la] || strings.HasPrefix(la, "mailer-daemon@") || strings.HasPrefix(la, "postmaster@") {
				continue
			}
			seen[la] = true
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return
	}
	status, code := "", 0
	if m := statusRe.FindString(head); m != "" {
		status = m
	}
	if m := codeRe.FindStringSubmatch(" " + head + " "); m != nil {
		code, _ = strconv.Atoi(m[1])
	}
	var kind Kind
	switch {
	case status != "":
		kind = classify(status, code)
	case code != 0:
		kind = classify("", code)
		if code/100 == 4 {
			kind = Soft
		}
	default:
		return
	}
	if strings.HasPrefix(status, "2.") {
		return
	}
	diag := strings.Join(strings.Fields(firstLineWith(head, status, code)), " ")
	r.Format = "text"
	for _, a := range addrs {
		r.Recipients = append(r.Recipients, Recipient{Address: a, Kind: kind, Status: status, Code: code, Diagnostic: diag})
	}
}

// firstLineWith returns the first line of text holding the status or the code.
func firstLineWith(text, status string, code int) string {
	c := ""
	if code != 0 {
		c = strconv.Itoa(code)
	}
	for _, line := range strings.Split(text, "\n") {
		if (status != "" && strings.Contains(line, status)) || (c != "" && strings.Contains(line, c)) {
			return line
		}
	}
	return ""
}

var wordDecoder = new(mime.WordDecoder)

func decodeWord(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}
