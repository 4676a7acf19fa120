package campaign

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

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
