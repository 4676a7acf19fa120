package campaign

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers/providertest"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// delivery is what one provider's far end received for one recipient.
type delivery struct{ subject, listUnsub string }

// inbox collects deliveries by recipient.
type inbox struct {
	mu  sync.Mutex
	got map[string][]delivery
}

func (b *inbox) add(to, subject, lu string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.got == nil {
		b.got = map[string][]delivery{}
	}
	to = strings.ToLower(to)
	b.got[to] = append(b.got[to], delivery{subject, lu})
}

func (b *inbox) addRaw(t *testing.T, to string, raw []byte) {
	r, err := providertest.ParseRaw(to, raw)
	if err != nil {
		t.Errorf("unparseable message for %s: %v", to, err)
		return
	}
	b.add(to, r.Subject, r.Headers.Get("List-Unsubscribe"))
}

// TestSameCampaignThroughEveryProvider sends one campaign through each provider kind,
// changing only the provider block, to fakes that follow each service's documented
// shape: every recipient receives the same subject and unsubscribe header once,
// whichever provider carries it.
func TestSameCampaignThroughEveryProvider(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))

	const n = 12
	env := map[string]string{"SG_KEY": "sg-key", "MD_KEY": "md-key"}
	boxes := map[string]*inbox{}
	blocks := map[string]func(t *testing.T, box *inbox) string{
		"smtp": func(t *testing.T, box *inbox) string {
			srv := smtptest.Start(t, smtptest.Options{Data: func(m smtptest.Message) *gosmtp.SMTPError {
				for _, to := range m.To {
					box.addRaw(t, to, m.Raw)
				}
				return nil
			}})
			return smtpBlock(srv)
		},
		"ses": func(t *testing.T, box *inbox) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				switch r.URL.Path {
				case "/v2/email/account":
					fmt.Fprint(w, `{"SendingEnabled":true,"EnforcementStatus":"HEALTHY","SendQuota":{"Max24HourSend":1000,"MaxSendRate":500,"SentLast24Hours":0}}`)
				case "/v2/email/outbound-emails":
					var req struct {
						Destination struct{ ToAddresses []string }
						Content     struct{ Raw struct{ Data []byte } }
					}
					if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Destination.ToAddresses) != 1 {
						w.WriteHeader(400)
						return
					}
					box.addRaw(t, req.Destination.ToAddresses[0], req.Content.Raw.Data)
					fmt.Fprintf(w, `{"MessageId":"ses-%s"}`, req.Destination.ToAddresses[0])
				default:
					w.WriteHeader(404)
				}
			}))
			t.Cleanup(srv.Close)
			return "  kind: ses\n  region: eu-west-1\n  endpoint: " + srv.URL + "\n"
		},
		"sendgrid": func(t *testing.T, box *inbox) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req struct {
					Personalizations []struct {
						To      []struct{ Email string }
						Subject string
					}
					Subject string
					Headers map[string]string
				}
				if r.URL.Path != "/v3/mail/send" || r.Header.Get("Authorization") != "Bearer sg-key" ||
					json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Personalizations) != 1 {
					w.WriteHeader(400)
					fmt.Fprint(w, `{"errors":[{"message":"bad request"}]}`)
					return
				}
				p := req.Personalizations[0]
				subject := p.Subject
				if subject == "" {
					subject = req.Subject
				}
				box.add(p.To[0].Email, subject, req.Headers["List-Unsubscribe"])
				w.Header().Set("X-Message-Id", "sg-"+p.To[0].Email)
				w.WriteHeader(202)
			}))
			t.Cleanup(srv.Close)
			return "  kind: sendgrid\n  api_key_env: SG_KEY\n  endpoint: " + srv.URL + "\n"
		},
		"mandrill": func(t *testing.T, box *inbox) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req struct {
					Key        string   `json:"key"`
					RawMessage string   `json:"raw_message"`
					To         []string `json:"to"`
				}
				body, _ := io.ReadAll(r.Body)
				if r.URL.Path != "/api/1.0/messages/send-raw.json" || json.Unmarshal(body, &req) != nil || req.Key != "md-key" || len(req.To) != 1 {
					w.WriteHeader(500)
					fmt.Fprint(w, `{"status":"error","code":-2,"name":"ValidationError","message":"bad"}`)
					return
				}
				box.addRaw(t, req.To[0], []byte(req.RawMessage))
				fmt.Fprintf(w, `[{"email":%q,"status":"sent","reject_reason":null,"_id":"md-1"}]`, req.To[0])
			}))
			t.Cleanup(srv.Close)
			return "  kind: mandrill\n  api_key_env: MD_KEY\n  endpoint: " + srv.URL + "\n"
		},
		"file": func(t *testing.T, box *inbox) string { return "  kind: file\n  dir: outbox\n" },
	}
	for _, kind := range []string{"file", "smtp", "ses", "sendgrid", "mandrill"} {
		t.Run(kind, func(t *testing.T) {
			box := &inbox{}
			f := newFixture(t, n, blocks[kind](t, box), "")
			sum, err := Send(t.Context(), f.load(), SendOptions{Store: f.store(), Limit: -1}, testEnv(env))
			if err != nil {
				t.Fatalf("send through %s: %v", kind, err)
			}
			if sum.Sent != n {
				t.Fatalf("%s: %s", kind, sum.JSON())
			}
			if kind == "file" {
				files, _ := filepath.Glob(filepath.Join(f.dir, "outbox", "*.eml"))
				for _, p := range files {
					raw, _ := os.ReadFile(p)
					r, _ := providertest.ParseRaw("", raw)
					to, err := mail.ParseAddress(r.Headers.Get("To"))
					if err != nil {
						t.Fatalf("%s: To: %v", p, err)
					}
					box.addRaw(t, to.Address, raw)
				}
			}
			boxes[kind] = box
		})
	}
	ref := boxes["smtp"]
	if ref == nil || len(ref.got) != n {
		t.Fatalf("the smtp reference received %v", ref)
	}
	for kind, box := range boxes {
		for to, want := range ref.got {
			got := box.got[to]
			if len(got) != 1 {
				t.Errorf("%s: %s received %d messages, want 1", kind, to, len(got))
				continue
			}
			if got[0].subject != want[0].subject {
				t.Errorf("%s: %s got subject %q, smtp carried %q", kind, to, got[0].subject, want[0].subject)
			}
			if !strings.HasPrefix(got[0].listUnsub, "<https://example.com/u/u2.") {
				t.Errorf("%s: %s got List-Unsubscribe %q", kind, to, got[0].listUnsub)
			}
		}
	}
}

// TestSenderRejectionStopsTheRun: each API provider's fake refuses the campaign's sender
// the way the service does (SendGrid 400 on from, SES MessageRejected naming the
// unverified return path, Mandrill "unsigned"): the run stops as fatal with nobody
// failed and everyone pending; once the sender is verified, a second run sends everyone.
func TestSenderRejectionStopsTheRun(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	const n = 20
	env := map[string]string{"SG_KEY": "sg-key", "MD_KEY": "md-key"}
	// Each fake refuses every message while verified is false.
	fakes := map[string]func(t *testing.T, verified *atomic.Bool, sent *atomic.Int64) string{
		"sendgrid": func(t *testing.T, verified *atomic.Bool, sent *atomic.Int64) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if !verified.Load() {
					w.WriteHeader(400)
					fmt.Fprint(w, `{"errors":[{"field":"from","message":"The from address does not match a verified Sender Identity."}]}`)
					return
				}
				sent.Add(1)
				w.WriteHeader(202)
			}))
			t.Cleanup(srv.Close)
			return "  kind: sendgrid\n  api_key_env: SG_KEY\n  endpoint: " + srv.URL + "\n"
		},
		"ses": func(t *testing.T, verified *atomic.Bool, sent *atomic.Int64) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				switch {
				case r.URL.Path == "/v2/email/account":
					fmt.Fprint(w, `{"SendingEnabled":true,"EnforcementStatus":"HEALTHY","ProductionAccessEnabled":true,"SendQuota":{"Max24HourSend":1000,"MaxSendRate":500,"SentLast24Hours":0}}`)
				case !verified.Load():
					w.Header().Set("X-Amzn-ErrorType", "MessageRejected")
					w.WriteHeader(400)
					fmt.Fprint(w, `{"message":"Email address is not verified. The following identities failed the check in region EU-WEST-1: bounces@bounce.example.com"}`)
				default:
					sent.Add(1)
					fmt.Fprintf(w, `{"MessageId":"ses-%d"}`, sent.Load())
				}
			}))
			t.Cleanup(srv.Close)
			return "  kind: ses\n  region: eu-west-1\n  endpoint: " + srv.URL + "\n"
		},
		"mandrill": func(t *testing.T, verified *atomic.Bool, sent *atomic.Int64) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req struct {
					To []string `json:"to"`
				}
				_ = json.NewDecoder(r.Body).Decode(&req)
				if len(req.To) != 1 {
					w.WriteHeader(500)
					return
				}
				status, reason := "rejected", `"unsigned"`
				if verified.Load() {
					status, reason = "sent", "null"
					sent.Add(1)
				}
				fmt.Fprintf(w, `[{"email":%q,"status":%q,"reject_reason":%s,"_id":"md-1"}]`, req.To[0], status, reason)
			}))
			t.Cleanup(srv.Close)
			return "  kind: mandrill\n  api_key_env: MD_KEY\n  endpoint: " + srv.URL + "\n"
		},
	}
	for _, kind := range []string{"sendgrid", "ses", "mandrill"} {
		t.Run(kind, func(t *testing.T) {
			var verified atomic.Bool
			var sent atomic.Int64
			f := newFixture(t, n, fakes[kind](t, &verified, &sent), "return_path: bounces@bounce.example.com\n")
			sum, err := Send(t.Context(), f.load(), SendOptions{Store: f.store(), Limit: -1}, testEnv(env))
			var se *StopError
			if !errors.As(err, &se) || se.Reason != "fatal" {
				t.Fatalf("first run: err = %v, want a fatal stop", err)
			}
			if sum == nil || sum.Stopped != "fatal" || sum.Failed != 0 || sum.Sent != 0 || sum.Pending != n {
				t.Fatalf("first run summary: %+v", sum)
			}
			if c := f.counts(); c[journal.Failed] != 0 || c[journal.Sent] != 0 || c[journal.Unknown] != 0 || c[journal.Sending] != 0 {
				t.Fatalf("journal after the stop: %v, want nobody failed, sent or in flight", c)
			}
			verified.Store(true)
			sum, err = Send(t.Context(), f.load(), SendOptions{Store: f.store(), Limit: -1}, testEnv(env))
			if err != nil || sum.Sent != n || sum.Failed != 0 {
				t.Fatalf("second run: %v, %+v", err, sum)
			}
			if got := sent.Load(); got != n {
				t.Errorf("the service accepted %d messages, want %d", got, n)
			}
		})
	}
}

// TestValidateRefusesSendGridReservedHeaders: the provider's check, which `validate`
// runs, sees the campaign's headers and refuses those SendGrid reserves.
func TestValidateRefusesSendGridReservedHeaders(t *testing.T) {
	block := "  kind: sendgrid\n  api_key_env: SG_KEY\n"
	f := newFixture(t, 1, block, "headers:\n  X-SG-EID: forged\n  X-Campaign: nov\n")
	err := CheckProvider(f.load(), testEnv(map[string]string{"SG_KEY": "SG.key"}), true)
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "X-SG-EID") {
		t.Fatalf("CheckProvider = %v, want a config error naming X-SG-EID", err)
	}
	f = newFixture(t, 1, block, "headers:\n  X-Campaign: nov\n")
	if err := CheckProvider(f.load(), testEnv(map[string]string{"SG_KEY": "SG.key"}), true); err != nil {
		t.Fatalf("CheckProvider with an ordinary header = %v", err)
	}
}
