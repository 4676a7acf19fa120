package ses

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/heraldmail/herald/providers"
)

// codeKind says what an error name (smithy.APIError ErrorCode) means for the pipeline.
// SES v2 names its own exceptions; the AWS front end adds the generic ones (Throttling,
// AccessDenied, InvalidClientTokenId, …), which come back as smithy.GenericAPIError.
func codeKind(code string) (kind providers.Kind, slowDown, ok bool) {
	switch code {
	case "TooManyRequestsException", "Throttling", "ThrottlingException":
		// The sending rate is exceeded: retry later and lower the rate.
		return providers.Temporary, true, true
	case "LimitExceededException", "LimitExceeded":
		// Not throttling: a resource limit of the account (SES documents it as "there are
		// too many instances of the specified resource type"). Waiting and sending slower
		// does not lift it; the run stops until the limit is raised.
		return providers.Fatal, false, true
	case "SendingPausedException", "AccountSuspendedException", "MailFromDomainNotVerifiedException",
		"NotFoundException", // the configuration set
		"AccessDenied", "AccessDeniedException", "InvalidClientTokenId", "UnrecognizedClientException",
		"SignatureDoesNotMatch", "InvalidSignatureException", "IncompleteSignature",
		"MissingAuthenticationToken", "ExpiredToken", "ExpiredTokenException":
		// The account, its credentials or its configuration stop every message.
		return providers.Fatal, false, true
	case "MessageRejected", "BadRequestException":
		// This message will never be accepted; classify decides from the text whether
		// the campaign (Fatal) or the recipient (Permanent) is the cause.
		return providers.Permanent, false, true
	case "InternalFailure", "InternalServiceErrorException", "ServiceUnavailable", "ServiceUnavailableException":
		// SES itself failed: retry later.
		return providers.Temporary, false, true
	}
	return 0, false, false
}

// unnamed is what the SDK calls an error answer that carries no error name.
const unnamed = "UnknownError"

// apiCode returns the API's error name in err's chain, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// ids are the addresses a message involves, to tell a rejection of the sender from one
// of the recipient.
type ids struct {
	// from and returnPath are the campaign's own identities (the From address and the
	// bounce address); to is the recipient.
	from, returnPath, to string
}

// ours reports whether identity (an address or a domain, as SES names them) is one of
// the campaign's own: the From or return path address, or the domain of either.
func (m ids) ours(identity string) bool {
	identity = strings.ToLower(strings.Trim(strings.TrimSpace(identity), ".,;<>\"'"))
	if identity == "" {
		return false
	}
	for _, a := range []string{m.from, m.returnPath} {
		a = strings.ToLower(a)
		if a == "" {
			continue
		}
		if identity == a || identity == domainOf(a) {
			return true
		}
	}
	return false
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// classify turns an error of the SES v2 client into a *providers.Error. wrote says
// whether the request had been completely written to the server; m names the message's
// addresses.
//
// Kinds are decided from the SDK's typed errors: the API's error name (X-Amzn-ErrorType),
// the HTTP status, a transport failure (smithyhttp.RequestSendError) or a cancellation
// (smithy.CanceledError). SES leaves no choice but to read the message text in three
// places, because it tells these cases apart by nothing else (same error name, same
// status):
//   - "Daily message quota exceeded" comes with the same error names as a passing
//     throttle (Throttling, TooManyRequestsException) but stops the run (Fatal) where the
//     throttle only slows it down;
//   - MessageRejected "Email address is not verified. The following identities failed
//     the check in region …: a, b" is about the campaign when one of the identities is
//     ours (the From or return path address, or their domain): Fatal, since every
//     message would be rejected the same way. Naming only the recipient (the SES
//     sandbox) it is Permanent for that recipient;
//   - BadRequestException is about the recipient (Permanent) when it names the
//     recipient's address, is one of the address parser's complaints ("Illegal address",
//     "Missing final '@domain'", "Local address contains …", "Domain contains …") not
//     naming an address of ours, or concerns the size of this one message; any other
//     BadRequest concerns what every message of the run carries (the From, the
//     feedback address, the configuration set, the tags, the headers): Fatal.
//
// Other MessageRejected answers are Permanent without Bounce: SES rejects at the API for
// the content or identities, not for a mailbox that does not exist (that arrives later
// as a bounce event), so the recipient's address is not suppressed.
func classify(err error, wrote bool, m ids) *providers.Error {
	if pe := providers.AsError(err); pe != nil {
		return pe
	}
	e := &providers.Error{Provider: Kind, Kind: providers.Temporary, Err: err}

	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		e.Code = re.HTTPStatusCode()
		e.RetryAfter = retryAfter(re.Response.Header.Get("Retry-After"))
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		e.Enhanced, e.Message = ae.ErrorCode(), ae.ErrorMessage()
		// The SDK's filler when the answer named no error.
		if e.Enhanced == unnamed {
			e.Enhanced = ""
		}
		if e.Message == unnamed {
			e.Message = ""
		}
	}

	if e.Code == 0 && e.Enhanced == "" {
		// No answer from SES.
		var canceled *smithy.CanceledError
		var send *smithyhttp.RequestSendError
		var params smithy.InvalidParamsError
		switch {
		case errors.As(err, &canceled) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			e.Message = "request cut short: " + cause(err).Error()
			if wrote {
				e.Kind = providers.Unknown
				e.Message = "no answer before the request was cut short (SES may have accepted the message): " + cause(err).Error()
			}
		case errors.As(err, &send):
			e.Message = send.Err.Error()
			if wrote {
				e.Kind = providers.Unknown
				e.Message = "connection lost after the message was sent (SES may have accepted it): " + e.Message
			} else {
				e.Connection = true
			}
		case errors.As(err, &params):
			e.Kind = providers.Permanent
			e.Message = params.Error()
		case wrote:
			e.Kind = providers.Unknown
			e.Message = err.Error()
		default:
			// Failed before anything was sent, the same way for every message:
			// credentials that cannot be found or signed with, an unusable endpoint.
			e.Kind = providers.Fatal
			e.Message = "cannot send a request to SES: " + err.Error()
		}
		return e
	}

	if e.Code >= 200 && e.Code < 300 {
		// SES answered success but the answer could not be read.
		e.Kind = providers.Unknown
		if e.Message == "" {
			e.Message = "SES answered " + strconv.Itoa(e.Code) + " with an unreadable body: " + cause(err).Error()
		}
		return e
	}
	if e.Message == "" {
		e.Message = http.StatusText(e.Code)
	}

	lower := strings.ToLower(e.Message)
	if kind, slowDown, ok := codeKind(e.Enhanced); ok {
		e.Kind, e.SlowDown = kind, slowDown
		switch {
		case strings.Contains(lower, "daily message quota exceeded"):
			e.Kind, e.SlowDown = providers.Fatal, false
		case e.Enhanced == "MessageRejected" && strings.Contains(lower, "not verified") && namesOurs(e.Message, m):
			e.Kind = providers.Fatal
			e.Message = "SES refused the campaign's sender, not the recipient: " + e.Message
		case e.Enhanced == "BadRequestException" && !recipientBadRequest(lower, m):
			e.Kind = providers.Fatal
			e.Message = "SES refused the request for what every message carries: " + e.Message
		}
		return e
	}
	if strings.Contains(lower, "maximum sending rate exceeded") {
		e.Kind, e.SlowDown = providers.Temporary, true
		return e
	}
	switch {
	case e.Code == http.StatusTooManyRequests:
		e.Kind, e.SlowDown = providers.Temporary, true
	case e.Code == http.StatusRequestTimeout || e.Code >= 500:
		e.Kind = providers.Temporary
	case e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden || e.Code == http.StatusNotFound:
		// Credentials, permissions, or an endpoint that is not SES: the same for every message.
		e.Kind = providers.Fatal
	case e.Code >= 400:
		e.Kind = providers.Permanent
	}
	return e
}

// namesOurs reports whether a "not verified" rejection lists one of the campaign's own
// identities: the text after the last ':' is the list of identities that failed, and
// one of ours may be named anywhere else in the text too.
func namesOurs(msg string, m ids) bool {
	if i := strings.LastIndexByte(msg, ':'); i >= 0 {
		for _, id := range strings.FieldsFunc(msg[i+1:], func(r rune) bool { return r == ',' || r == ' ' }) {
			if m.ours(id) {
				return true
			}
		}
	}
	lower := strings.ToLower(msg)
	for _, a := range []string{m.from, m.returnPath} {
		if a != "" && strings.Contains(lower, strings.ToLower(a)) {
			return true
		}
	}
	return false
}

// recipientBadRequest reports whether a BadRequestException's text (lower case) is
// about this message's recipient or size rather than the campaign.
func recipientBadRequest(lower string, m ids) bool {
	for _, a := range []string{m.from, m.returnPath} {
		if a != "" && strings.Contains(lower, strings.ToLower(a)) {
			return false
		}
	}
	if m.to != "" && strings.Contains(lower, strings.ToLower(m.to)) {
		return true
	}
	for _, s := range []string{"illegal address", "missing final '@domain'", "local address", "domain contains", "domain ends with", "domain starts with", "domain name", "message length", "megabytes", "too large"} {
		if strings.Contains(lower, s) {
			return true
		}
	}
	return false
}

// cause strips the SDK's operation wrapper from err for a shorter message.
func cause(err error) error {
	var oe *smithy.OperationError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// retryAfter reads a Retry-After header: delay seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
