package serve

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/mandrill"
	"github.com/heraldmail/herald/providers/sendgrid"
	"github.com/heraldmail/herald/providers/ses"
)

// Environment variables that configure the provider webhooks; errors and 403 answers name them.
const (
	EnvSendGridKey = "HERALD_SENDGRID_WEBHOOK_KEY"
	EnvMandrillKey = "HERALD_MANDRILL_WEBHOOK_KEY"
	EnvSNSTopicARN = "HERALD_SNS_TOPIC_ARN"
	EnvPublicURL   = "HERALD_PUBLIC_URL"
)

// maxWebhookBody bounds a webhook request's body (SendGrid and Mandrill batch up to a
// thousand or so events per request).
const maxWebhookBody = 16 << 20

// WebhookConfig says which provider webhooks are on and how their requests are
// authenticated. A webhook whose key is empty answers POSTs with 403.
type WebhookConfig struct {
	// SendGridKey is the verification key of SendGrid's signed event webhook, base64 of
	// the DER public key (ECDSA P-256) as SendGrid shows it.
	SendGridKey string
	// MandrillKey is the Mandrill webhook's authentication key (HMAC-SHA1).
	MandrillKey providers.Secret
	// PublicURL is the address Mandrill posts to, as configured there: either the full
	// webhook URL (ending in /webhooks/mandrill, with any query) or the public base URL
	// of herald serve, to which /webhooks/mandrill is appended. Empty: the request's own
	// scheme, Host and path (right only without a reverse proxy in front).
	PublicURL string
	// SNSTopicARNs are the SNS topics whose SES notifications are accepted. Any topic's
	// message carries a valid SNS signature, so the SES webhook is off without them.
	SNSTopicARNs []string
	// FetchCert returns the PEM certificate at an SNS SigningCertURL (already checked to
	// be https on an sns.<region>.amazonaws.com host). Nil: an HTTPS GET.
	FetchCert func(ctx context.Context, url string) ([]byte, error)
	// Logf reports what the operator must act on (an SNS subscription to confirm) and
	// the events of a batch that were skipped as unusable. Nil: dropped.
	Logf func(format string, args ...any)
}

// webhooks serves the provider event webhooks. Its zero value has every webhook off.
type webhooks struct {
	sendgrid  *ecdsa.PublicKey
	mandrill  providers.Secret
	publicURL string
	topics    []string
	fetch     func(ctx context.Context, url string) ([]byte, error)
	logf      func(format string, args ...any)

	mu    sync.Mutex
	certs map[string]*x509.Certificate
}

// EnableWebhooks turns on the provider webhooks cfg configures. Call it before serving.
func (h *Handler) EnableWebhooks(cfg WebhookConfig) error {
	w := &webhooks{mandrill: cfg.MandrillKey, fetch: cfg.FetchCert, logf: cfg.Logf}
	if k := strings.TrimSpace(cfg.SendGridKey); k != "" {
		pub, err := parseSendGridKey(k)
		if err != nil {
			return fmt.Errorf("serve: %s: %w", EnvSendGridKey, err)
		}
		w.sendgrid = pub
	}
	if u := strings.TrimSpace(cfg.PublicURL); u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("serve: public URL %q is not an absolute http(s) URL", u)
		}
		w.publicURL = u // Mandrill signs the URL exactly as entered
		if !strings.HasSuffix(strings.TrimSuffix(p.Path, "/"), "/webhooks/mandrill") {
			p.Path = strings.TrimSuffix(p.Path, "/") + "/webhooks/mandrill"
			w.publicURL = p.String()
		}
	}
	for _, t := range cfg.SNSTopicARNs {
		if t = strings.TrimSpace(t); t != "" {
			w.topics = append(w.topics, t)
		}
	}
	if w.fetch == nil {
		w.fetch = fetchCert
	}
	if w.logf == nil {
		w.logf = func(string, ...any) {}
	}
	h.hooks = w
	return nil
}

func parseSendGridKey(k string) (*ecdsa.PublicKey, error) {
	if b, _ := pem.Decode([]byte(k)); b != nil {
		k = base64.StdEncoding.EncodeToString(b.Bytes)
	}
	der, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		return nil, errors.New("not base64 (paste the verification key as SendGrid shows it)")
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a public key: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("not an ECDSA public key")
	}
	return ec, nil
}

// webhookPath returns the provider a path's last two segments name ("/…/webhooks/ses").
func webhookPath(p string) (string, bool) {
	p = strings.TrimSuffix(p, "/")
	for _, name := range []string{"sendgrid", "mandrill", "ses"} {
		if strings.HasSuffix(p, "/webhooks/"+name) {
			return name, true
		}
	}
	return "", false
}

// webhookError is an answer other than 200, with a short reason for the provider's logs.
type webhookError struct {
	code int
	msg  string
}

func (e *webhookError) Error() string { return e.msg }

func reject(code int, format string, args ...any) error {
	return &webhookError{code: code, msg: fmt.Sprintf(format, args...)}
}

func text(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// serveWebhook answers one request to provider's webhook.
func (h *Handler) serveWebhook(w http.ResponseWriter, r *http.Request, provider string) {
	hooks := h.hooks
	if hooks == nil {
		hooks = &webhooks{}
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		// Providers check that the URL answers (Mandrill sends a HEAD when the webhook is
		// added, before its key exists).
		text(w, http.StatusOK, "herald "+provider+" webhook")
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		text(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			text(w, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		text(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	var list []journal.Suppression
	switch provider {
	case "sendgrid":
		list, err = hooks.sendgridEvents(r, body, h.now())
	case "mandrill":
		list, err = hooks.mandrillEvents(r, body, h.now())
	case "ses":
		list, err = hooks.sesEvents(r.Context(), body, h.now())
	}
	if err != nil {
		var we *webhookError
		if errors.As(err, &we) {
			text(w, we.code, we.msg)
			return
		}
		text(w, http.StatusInternalServerError, provider+" webhook: internal error")
		return
	}
	if len(list) > 0 {
		if _, err := h.store.Suppress(r.Context(), list); err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, context.Canceled) {
				code = http.StatusServiceUnavailable
			}
			text(w, code, "could not record the events; retry later")
			return
		}
	}
	text(w, http.StatusOK, fmt.Sprintf("ok: %d suppressed", len(list)))
}

// --- SendGrid ---

// SendGrid signed event webhook headers, and how old (or how far ahead of this clock) a
// signed timestamp may be.
const (
	sendgridSigHeader = eventwebhook.VerificationHTTPHeader
	sendgridTSHeader  = eventwebhook.TimestampHTTPHeader
	sendgridMaxAge    = 10 * time.Minute
	sendgridMaxSkew   = 5 * time.Minute
)

// sendgridEvents verifies a SendGrid event webhook request (ECDSA P-256 with SHA-256 over
// the timestamp header followed by the raw body; the header holds the base64 ASN.1
// signature) and returns the suppressions its events call for.
func (w *webhooks) sendgridEvents(r *http.Request, body []byte, now time.Time) ([]journal.Suppression, error) {
	if w.sendgrid == nil {
		return nil, reject(http.StatusForbidden, "sendgrid webhook is off: set %s to the signed event webhook's verification key", EnvSendGridKey)
	}
	sig, ts := r.Header.Get(sendgridSigHeader), r.Header.Get(sendgridTSHeader)
	if sig == "" || ts == "" {
		return nil, reject(http.StatusUnauthorized, "sendgrid webhook: missing %s or %s header", sendgridSigHeader, sendgridTSHeader)
	}
	if ok, err := eventwebhook.VerifySignature(w.sendgrid, body, sig, ts); err != nil || !ok {
		return nil, reject(http.StatusUnauthorized, "sendgrid webhook: signature does not match")
	}
	// The signature covers the timestamp: one outside the window is a captured request
	// played again (SendGrid signs each delivery, retries included, when it sends it).
	sec, err := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
	if err != nil {
		return nil, reject(http.StatusUnauthorized, "sendgrid webhook: %s is not a Unix time", sendgridTSHeader)
	}
	if at := time.Unix(sec, 0); at.Before(now.Add(-sendgridMaxAge)) || at.After(now.Add(sendgridMaxSkew)) {
		return nil, reject(http.StatusUnauthorized, "sendgrid webhook: timestamp %s is outside the accepted window (%s old, %s ahead): a replayed request?", at.UTC().Format(time.RFC3339), sendgridMaxAge, sendgridMaxSkew)
	}
	list, skipped, err := sendgrid.ParseEvents(body)
	if err != nil {
		return nil, reject(http.StatusBadRequest, "sendgrid webhook: %v", err)
	}
	w.logSkipped("sendgrid", skipped)
	return suppressions(list, "webhook:sendgrid", now), nil
}

// --- Mandrill ---

// mandrillEvents verifies a Mandrill webhook request (X-Mandrill-Signature: base64 of
// HMAC-SHA1 with the webhook key over the configured URL followed by each POST field,
// sorted by name, as name then value) and returns the suppressions its events call for.
func (w *webhooks) mandrillEvents(r *http.Request, body []byte, now time.Time) ([]journal.Suppression, error) {
	if w.mandrill.Empty() {
		return nil, reject(http.StatusForbidden, "mandrill webhook is off: set %s to the webhook's key", EnvMandrillKey)
	}
	sig := r.Header.Get("X-Mandrill-Signature")
	if sig == "" {
		return nil, reject(http.StatusUnauthorized, "mandrill webhook: missing X-Mandrill-Signature header")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, reject(http.StatusBadRequest, "mandrill webhook: body is not a form: %v", err)
	}
	want, err := base64.StdEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(want, mandrillSignature(w.mandrill.Reveal(), w.mandrillURL(r), form)) {
		return nil, reject(http.StatusUnauthorized, "mandrill webhook: signature does not match (is the public URL the one configured in Mandrill?)")
	}
	raw, ok := form["mandrill_events"]
	if !ok || len(raw) != 1 {
		return nil, reject(http.StatusBadRequest, "mandrill webhook: no mandrill_events field")
	}
	list, skipped, err := mandrill.ParseEvents([]byte(raw[0]))
	if err != nil {
		return nil, reject(http.StatusBadRequest, "mandrill webhook: %v", err)
	}
	w.logSkipped("mandrill", skipped)
	return suppressions(list, "webhook:mandrill", now), nil
}

// mandrillURL is the URL Mandrill signs: the configured public URL, or the request's own.
func (w *webhooks) mandrillURL(r *http.Request) string {
	if w.publicURL != "" {
		return w.publicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

// mandrillSignature computes HMAC-SHA1(key, url + name1 + value1 + name2 + value2 …)
// with the form's fields sorted by name.
func mandrillSignature(key, u string, form url.Values) []byte {
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(u))
	names := make([]string, 0, len(form))
	for n := range form {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, v := range form[n] {
			m.Write([]byte(n))
			m.Write([]byte(v))
		}
	}
	return m.Sum(nil)
}

// --- SES through SNS ---

// snsMessage is an SNS HTTP(S) delivery.
type snsMessage struct {
	Type             string
	MessageId        string
	Token            string
	TopicArn         string
	Subject          *string
	Message          string
	Timestamp        string
	SignatureVersion string
	Signature        string
	SigningCertURL   string
	SubscribeURL     string
}

// canonical returns the string SNS signs: each field name and value on lines of their
// own, in the documented order (Subject only when present).
func (m *snsMessage) canonical() (string, error) {
	var b strings.Builder
	add := func(k, v string) { b.WriteString(k + "\n" + v + "\n") }
	switch m.Type {
	case "Notification":
		add("Message", m.Message)
		add("MessageId", m.MessageId)
		if m.Subject != nil {
			add("Subject", *m.Subject)
		}
		add("Timestamp", m.Timestamp)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
	case "SubscriptionConfirmation", "UnsubscribeConfirmation":
		add("Message", m.Message)
		add("MessageId", m.MessageId)
		add("SubscribeURL", m.SubscribeURL)
		add("Timestamp", m.Timestamp)
		add("Token", m.Token)
		add("TopicArn", m.TopicArn)
		add("Type", m.Type)
	default:
		return "", fmt.Errorf("unknown message type %q", m.Type)
	}
	return b.String(), nil
}

var snsCertHost = regexp.MustCompile(`^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$`)

// checkCertURL accepts only https URLs of a .pem on an sns.<region>.amazonaws.com host.
func checkCertURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Port() != "" ||
		!snsCertHost.MatchString(u.Hostname()) || !strings.HasSuffix(u.Path, ".pem") {
		return fmt.Errorf("SigningCertURL %q is not an https .pem on an sns.<region>.amazonaws.com host", raw)
	}
	return nil
}

func (w *webhooks) cert(ctx context.Context, u string) (*x509.Certificate, error) {
	w.mu.Lock()
	c, ok := w.certs[u]
	w.mu.Unlock()
	if ok {
		return c, nil
	}
	data, err := w.fetch(ctx, u)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", u)
	}
	c, err = x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate at %s: %w", u, err)
	}
	w.mu.Lock()
	if w.certs == nil || len(w.certs) >= 32 {
		w.certs = map[string]*x509.Certificate{}
	}
	w.certs[u] = c
	w.mu.Unlock()
	return c, nil
}

// fetchCert GETs an SNS signing certificate over HTTPS, without following redirects.
func fetchCert(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", u, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<10))
}

// verify checks m's signature: SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA,
// over the canonical string, with the key of the certificate at SigningCertURL.
func (w *webhooks) verify(ctx context.Context, m *snsMessage, now time.Time) error {
	canon, err := m.canonical()
	if err != nil {
		return reject(http.StatusBadRequest, "ses webhook: %v", err)
	}
	var (
		hash crypto.Hash
		sum  []byte
	)
	switch m.SignatureVersion {
	case "1":
		s := sha1.Sum([]byte(canon))
		hash, sum = crypto.SHA1, s[:]
	case "2":
		s := sha256.Sum256([]byte(canon))
		hash, sum = crypto.SHA256, s[:]
	default:
		return reject(http.StatusUnauthorized, "ses webhook: unknown SignatureVersion %q", m.SignatureVersion)
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil || len(sig) == 0 {
		return reject(http.StatusUnauthorized, "ses webhook: missing or malformed Signature")
	}
	if err := checkCertURL(m.SigningCertURL); err != nil {
		return reject(http.StatusUnauthorized, "ses webhook: %v", err)
	}
	c, err := w.cert(ctx, m.SigningCertURL)
	if err != nil {
		return reject(http.StatusServiceUnavailable, "ses webhook: signing certificate: %v", err)
	}
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return reject(http.StatusUnauthorized, "ses webhook: signing certificate is not valid now")
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return reject(http.StatusUnauthorized, "ses webhook: signing certificate has no RSA key")
	}
	if err := rsa.VerifyPKCS1v15(pub, hash, sum, sig); err != nil {
		return reject(http.StatusUnauthorized, "ses webhook: signature does not match")
	}
	return nil
}

// sesEvents verifies an SNS delivery from an allowed topic and returns the suppressions
// its SES notification calls for. A subscription confirmation is logged for the
// operator, never confirmed.
func (w *webhooks) sesEvents(ctx context.Context, body []byte, now time.Time) ([]journal.Suppression, error) {
	if len(w.topics) == 0 {
		return nil, reject(http.StatusForbidden, "ses webhook is off: set %s to the SNS topic ARN(s) SES publishes to", EnvSNSTopicARN)
	}
	var m snsMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, reject(http.StatusBadRequest, "ses webhook: body is not an SNS message: %v", err)
	}
	if m.Type == "" || m.TopicArn == "" {
		return nil, reject(http.StatusBadRequest, "ses webhook: body is not an SNS message (no Type or TopicArn)")
	}
	if !slices.Contains(w.topics, m.TopicArn) {
		return nil, reject(http.StatusForbidden, "ses webhook: topic %s is not in %s", m.TopicArn, EnvSNSTopicARN)
	}
	if err := w.verify(ctx, &m, now); err != nil {
		return nil, err
	}
	switch m.Type {
	case "SubscriptionConfirmation":
		w.logf("herald serve: SNS topic %s asks to confirm a subscription; to receive SES events, open: %s", m.TopicArn, m.SubscribeURL)
		return nil, nil
	case "UnsubscribeConfirmation":
		w.logf("herald serve: SNS topic %s ended the subscription (to subscribe again: %s)", m.TopicArn, m.SubscribeURL)
		return nil, nil
	}
	list, skipped, err := ses.ParseNotification([]byte(m.Message))
	if err != nil {
		return nil, reject(http.StatusBadRequest, "ses webhook: %v", err)
	}
	w.logSkipped("ses", skipped)
	return suppressions(list, "webhook:ses", now), nil
}

// logSkipped reports the events of a batch that could not be used; the rest of the
// batch is applied and the provider gets its 2xx (an error answer would make it retry
// the whole batch for days, and never apply the good events in it).
func (w *webhooks) logSkipped(provider string, skipped []providers.Skipped) {
	for _, sk := range skipped {
		w.logf("herald serve: %s webhook: skipped %v", provider, sk)
	}
}

// suppressions turns a provider's suppressions into the store's, from source at now.
func suppressions(list []providers.Suppress, source string, now time.Time) []journal.Suppression {
	out := make([]journal.Suppression, 0, len(list))
	for _, s := range list {
		out = append(out, journal.Suppression{Email: s.Email, Reason: s.Reason, Source: source, At: now})
	}
	return out
}
