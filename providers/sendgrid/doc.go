// Package sendgrid delivers herald's messages through the SendGrid v3 Mail Send API
// (POST /v3/mail/send), one API request per recipient.
//
// # Setup
//
// Create an API key in the SendGrid console with the "Mail Send" permission, verify the
// sender address or domain you send From, and put the key in an environment variable:
//
//	provider:
//	  kind: sendgrid
//	  api_key_env: SENDGRID_API_KEY   # required: the variable's name, never the key
//	  endpoint: https://api.eu.sendgrid.com  # optional base URL; /v3/mail/send is appended
//	  timeout: 30s                    # optional: the limit for one request (default 30s)
//
// The key is sent only in the Authorization header (Bearer) and never appears in an
// error, a log line or a formatted value of the provider.
//
// SendGrid builds the MIME message itself from the parts herald hands over: the From and
// Reply-To addresses, the recipient and their name, the subject, the text and HTML bodies
// (text/plain first), and the extra headers (List-Unsubscribe, List-Unsubscribe-Post,
// Precedence and the campaign's own). herald's own Message-ID and DKIM signature are not
// used: SendGrid assigns its own id (returned in X-Message-Id, which herald records as
// the receipt) and signs with the domain authenticated in the account.
//
// What the Mail Send reference asks, and herald does:
//   - names cannot include ',' or ';' (SendGrid accepts such a request with 202 and drops
//     the mail later as "Invalid"): herald removes those characters from the recipient's,
//     the From and the Reply-To names ("Smith, Ann" is sent as "Smith Ann");
//   - custom_args are stored long term and must hold no personal data: herald sends only
//     {campaign}; the event webhook's events carry the address already;
//   - tracking_settings.subscription_tracking.enable is false in every request, so an
//     account with subscription tracking on does not add its own unsubscribe link and
//     List-Unsubscribe header next to (or instead of) herald's one-click pair;
//   - the reserved header names x-sg-id, x-sg-eid, received, dkim-signature,
//     content-type, content-transfer-encoding, to, from, subject, reply-to, cc and bcc
//     cannot be set: a campaign whose `headers:` name one is refused by `herald validate`
//     and before sending;
//   - header values must be encoded by the sender: a non-ASCII value is sent as an RFC
//     2047 encoded word (UTF-8, Q encoding);
//   - the category (the campaign's name) is at most 255 printable ASCII characters: other
//     characters become '_' and the rest is cut.
//
// # Rate and quotas
//
// SendGrid states no fixed per-second limit for mail send, so the provider declares none
// (Capabilities().MaxRate is 0) and the campaign's `rate:` governs. When SendGrid
// throttles (HTTP 429) herald waits until the time in X-RateLimit-Reset and lowers its
// rate. A plan's daily or monthly credits, when exhausted, show up as 401/403 or 429
// answers, see below.
//
// # What the errors mean
//
// Every error starts with "sendgrid:" followed by its kind:
//
//   - 202 Accepted: sent; the receipt is the X-Message-Id header.
//   - 429 Too Many Requests: temporary; retried after X-RateLimit-Reset, rate lowered.
//   - 408 and 5xx: temporary; retried with backoff (502/503/504 count as an outage).
//   - network errors before the request was written (refused, DNS, TLS): temporary,
//     marked as a connection failure.
//   - the connection lost or the timeout hit after the request was written: unknown; the
//     message may have been accepted, so herald does not resend it on its own.
//   - 400 about the campaign: fatal. When the errors name fields and none of them lies in
//     the personalization's to (from, reply_to, headers, categories, custom_args,
//     subject, content, tracking_settings, mail_settings, …), every message of the run
//     would be refused the same way: the run stops and the recipients not yet sent stay
//     pending (nobody is marked failed).
//   - 400 about the recipient, 400 without a field, and 413: permanent for this message;
//     the reason is SendGrid's first error message (and the field it names). A rejected
//     recipient address (personalizations.N.to.N.email) also marks the address as a
//     bounce, so it is suppressed.
//   - 401 and 403: fatal; the key is wrong, revoked, lacks the Mail Send permission, or
//     the account cannot send (for instance an unverified sender). The run stops.
//   - 404, 405 and redirects: fatal; `endpoint` does not point at the SendGrid API.
//   - any other 4xx: permanent for this message.
package sendgrid
