package smtp

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"syscall"

	"github.com/heraldmail/herald/providers"
)

// stage is the step of the SMTP dialogue an error happened in; it decides what a reply
// code means (a 5xx to AUTH is fatal, to RCPT permanent).
type stage int

const (
	stageDial stage = iota
	stageGreeting
	stageHello
	stageTLS
	stageAuth
	stageReset
	stageMail
	stageRcpt
	stageData
	stageBody   // writing the message; the final dot has not gone out
	stageAnswer // waiting for the answer after the final dot
)

func (s stage) String() string {
	return [...]string{"connect", "greeting", "EHLO", "STARTTLS/TLS", "AUTH", "RSET", "MAIL FROM", "RCPT TO", "DATA", "message data", "answer to DATA"}[s]
}

// replyOf extracts an SMTP reply from err's chain: its code, its enhanced status code
// (RFC 3463, when the reply starts with one of the code's class) and the rest of its
// text on one line. code is 0 when err holds no reply.
func replyOf(err error) (code int, enhanced, text string) {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return 0, "", ""
	}
	code = te.Code
	text = strings.Join(strings.Fields(strings.ReplaceAll(te.Msg, "\n", " ")), " ")
	first, rest, _ := strings.Cut(text, " ")
	if isEnhanced(first, code/100) {
		return code, first, rest
	}
	return code, "", text
}

// isEnhanced reports whether s is an enhanced status code "class.subject.detail" of class.
func isEnhanced(s string, class int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || len(p) > 3 || p == "" {
			return false
		}
		if i == 0 && n != class {
			return false
		}
	}
	return true
}

// isBounce reports whether a permanent reply condemns the address itself.
func isBounce(code int, enhanced string) bool {
	if enhanced != "" {
		return strings.HasPrefix(enhanced, "5.1.")
	}
	return code == 550 || code == 551 || code == 553
}

// isConnErr reports whether err is a failure of the connection itself (refused, reset,
// closed, timed out) rather than an answer or a TLS problem.
func isConnErr(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// classify turns an error of stage st into a *providers.Error. Kinds come from reply
// codes and error types only, never from the server's text.
func classify(st stage, err error) *providers.Error {
	code, enh, text := replyOf(err)
	pe := &providers.Error{Provider: Kind, Code: code, Enhanced: enh, Err: err}
	if code == 0 {
		return classifyNoReply(st, err, pe)
	}
	pe.Message = text
	if st != stageRcpt && st != stageData && st != stageAnswer {
		pe.Message = st.String() + ": " + text
	}
	switch {
	case code == 421:
		// The server is closing the connection (shutting down, or a limit).
		pe.Kind, pe.Connection = providers.Temporary, true
	case code/100 == 4:
		pe.Kind = providers.Temporary
		pe.Connection = st <= stageHello
	case code/100 == 5:
		switch st {
		case stageRcpt, stageData, stageBody, stageAnswer:
			pe.Kind = providers.Permanent
			pe.Bounce = isBounce(code, enh)
		case stageReset:
			pe.Kind, pe.Connection = providers.Temporary, true
		default:
			// Refused at the greeting, EHLO, STARTTLS, AUTH or MAIL FROM: the relay will
			// take no message of this run (bad credentials, refused sender, no service).
			pe.Kind = providers.Fatal
		}
	default:
		// An answer that makes no sense at this point: drop the connection, try again.
		pe.Kind, pe.Connection = providers.Temporary, true
		pe.Message = fmt.Sprintf("%s: unexpected reply %d %s", st, code, text)
	}
	return pe
}

func classifyNoReply(st stage, err error, pe *providers.Error) *providers.Error {
	conn := isConnErr(err)
	var dnsErr *net.DNSError
	switch {
	case st == stageDial && errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		pe.Kind = providers.Fatal
		pe.Message = "connect: " + err.Error()
	case st == stageAnswer:
		pe.Kind, pe.Connection = providers.Unknown, true
		pe.Message = "connection lost after the message was sent, before the server answered (it may have been accepted): " + err.Error()
	case conn:
		pe.Kind, pe.Connection = providers.Temporary, true
		pe.Message = st.String() + ": " + err.Error()
	case st == stageTLS:
		pe.Kind = providers.Fatal
		pe.Message = "TLS: " + err.Error()
	case st == stageAuth, st == stageGreeting, st == stageHello:
		// Refused before sending credentials, or not an SMTP server at all.
		pe.Kind = providers.Fatal
		pe.Message = st.String() + ": " + err.Error()
	default:
		pe.Kind, pe.Connection = providers.Temporary, true
		pe.Message = st.String() + ": " + err.Error()
	}
	return pe
}
