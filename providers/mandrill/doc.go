// Package mandrill delivers herald's messages through Mandrill (Mailchimp Transactional),
// one POST {endpoint}/api/1.0/messages/send-raw.json per recipient. No Go client for the
// API exists, so this package holds a small net/http client of its own.
//
// # Setup
//
// Create an API key in Mandrill (Settings → SMTP & API Info), add and verify the sending
// domain (SPF and DKIM records), and put the key in an environment variable:
//
//	provider:
//	  kind: mandrill
//	  api_key_env: MANDRILL_API_KEY   # required: the variable's name, never the key
//	  endpoint: https://mandrillapp.com  # optional base URL; /api/1.0/… is appended
//	  timeout: 30s                    # optional: the limit for one request (default 30s)
//
// Mandrill takes its key in the JSON body ("key"), so the key is never in a URL, a
// header, an error, a log line or a formatted value of the provider.
//
// Mandrill receives herald's complete rendered message ("raw_message", with herald's own
// headers, Message-ID and, when configured, DKIM signature), the From address and name
// ("from_email", "from_name": Mandrill's sender checks, sending-domain verification and
// DKIM signing key off from_email, so it is always the From address, never the bounce
// address), the domain of the campaign's return_path when one is set
// ("return_path_domain": Mandrill builds its own bounce address on that domain, which must
// be set up in Mandrill), and the one recipient ("to"), with "async": false so that the
// answer says what became of it.
//
// # Rate and quotas
//
// Mandrill sets an hourly quota from the account's reputation and volume and does not
// publish a per-second limit, so the provider declares none (Capabilities().MaxRate is 0)
// and the campaign's `rate:` governs. Over the hourly quota Mandrill queues messages
// (status "queued", queued_reason "hourly-quota-exhausted") and sends them as the quota
// allows: herald counts them as sent. An HTTP 429 lowers herald's rate and retries.
//
// # What the answers and errors mean
//
// Every error starts with "mandrill:" followed by its kind. The answer is read by its
// shape and names, not by the HTTP status alone (Mandrill answers its errors with 500):
//
//   - a result [{email, status, reject_reason, queued_reason, _id}] with status "sent",
//     "queued" or "scheduled": sent; the receipt is _id.
//   - "queued" because of sending-paused, sending-suspended, account-suspended,
//     monthly-limit-reached or free-trial-sends-exhausted: fatal; the account cannot send
//     now (resume it or add credit in Mandrill). The run stops; the message id is in the
//     error, Mandrill may still send that one message when the account is resumed.
//   - "rejected" or "invalid": permanent for this recipient, with the reject_reason. The
//     address is also suppressed (a bounce) for hard-bounce, invalid (or status invalid),
//     unsub, spam and custom (the account's own reject list): Mandrill itself will
//     refuse it again. soft-bounce, rule and unknown reasons are permanent without
//     suppression (the recipient may work in a later campaign).
//   - "rejected" because of unsigned, invalid-sender or test-mode-limit: fatal; the
//     sending domain is not verified, the From address is not allowed, or a test key
//     reached its limit. Every other message would fail the same way.
//   - an error {"status":"error","name":…}: Invalid_Key, PaymentRequired and
//     Unknown_Subaccount are fatal (wrong key, unpaid account); ValidationError is
//     permanent for this message; GeneralError and any other name are temporary.
//   - HTTP 429: temporary, herald slows down (Retry-After is honoured when present).
//   - HTTP 5xx without a known error object, and a 200 answer that is not one of the
//     shapes above: temporary.
//   - HTTP 404, 405 and redirects: fatal; `endpoint` does not point at the Mandrill API.
//   - network errors before the request was written (refused, DNS, TLS): temporary,
//     marked as a connection failure.
//   - the connection lost or the timeout hit after the request was written: unknown; the
//     message may have been accepted, so herald does not resend it on its own.
//   - a result with a status Mandrill does not document: unknown, for the same reason.
package mandrill
