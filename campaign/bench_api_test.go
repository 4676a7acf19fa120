package campaign

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/apitest"
	"github.com/heraldmail/herald/providers/sendgrid"
)

// apiKind is one API provider with its instant fake, the provider block pointing at it
// and one request like the provider's (for the bare loop that is the yardstick).
type apiKind struct {
	name  string
	start func(testing.TB) *apitest.Server
	block func(url string) string
	env   map[string]string
	// request returns the path, headers and body of a request for msg as the provider
	// sends it.
	request func(tb testing.TB, msg *providers.Message) (string, http.Header, []byte)
}

// apiMessageText is the text template of the API campaigns: about 5.6 KB, so that the
// rendered message with its headers is about 6.4 KB, the size .ci/bench-api.sh sends.
var apiMessageText = "Hello {{ .first_name }} in {{ .city }}.\n" +
	strings.Repeat("Some newsletter text for the plain part, wrapped like a mail.\n", 90) +
	"\nUnsubscribe: {{ .UnsubscribeURL }}\n"

var apiKinds = []apiKind{
	{
		name:  "ses",
		start: apitest.SES,
		block: func(url string) string { return "  kind: ses\n  region: eu-west-1\n  endpoint: " + url + "\n" },
		request: func(tb testing.TB, msg *providers.Message) (string, http.Header, []byte) {
			// The SDK's JSON for SendEmail with raw content, and a signature's worth of
			// headers (the fake, like the emulator, does not check it).
			body, err := json.Marshal(map[string]any{
				"Content":          map[string]any{"Raw": map[string]any{"Data": base64.StdEncoding.EncodeToString(msg.Raw)}},
				"Destination":      map[string]any{"ToAddresses": []string{msg.To}},
				"EmailTags":        []map[string]string{{"Name": "campaign", "Value": msg.Campaign}},
				"FromEmailAddress": msg.FromAddress,
			})
			if err != nil {
				tb.Fatal(err)
			}
			return apitest.SESSendPath, http.Header{
				"Authorization": {"AWS4-HMAC-SHA256 Credential=AKIDBENCH/20260101/eu-west-1/ses/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-date, Signature=" + strings.Repeat("0", 64)},
				"X-Amz-Date":    {"20260101T000000Z"},
			}, body
		},
	},
	{
		name:  "sendgrid",
		start: apitest.SendGrid,
		block: func(url string) string { return "  kind: sendgrid\n  api_key_env: SG_KEY\n  endpoint: " + url + "\n" },
		env:   map[string]string{"SG_KEY": "SG.bench-key"},
		request: func(tb testing.TB, msg *providers.Message) (string, http.Header, []byte) {
			body, err := sendgrid.Body(msg)
			if err != nil {
				tb.Fatal(err)
			}
			return apitest.SendGridSendPath, http.Header{"Authorization": {"Bearer SG.bench-key"}}, body
		},
	},
	{
		name:  "mandrill",
		start: apitest.Mandrill,
		block: func(url string) string { return "  kind: mandrill\n  api_key_env: MD_KEY\n  endpoint: " + url + "\n" },
		env:   map[string]string{"MD_KEY": "md-bench-key"},
		request: func(tb testing.TB, msg *providers.Message) (string, http.Header, []byte) {
			body, err := json.Marshal(map[string]any{"key": "md-bench-key", "raw_message": string(msg.Raw),
				"from_email": msg.FromAddress, "from_name": "Bench", "to": []string{msg.To}, "async": false})
			if err != nil {
				tb.Fatal(err)
			}
			return apitest.MandrillSendPath, nil, body
		},
	},
}

// apiCampaign writes a text-only campaign of n recipients (about 6.4 KB per message)
// sending through block with workers workers and no rate ceiling.
func apiCampaign(tb testing.TB, n, workers int, block string) (*Campaign, string) {
	tb.Helper()
	dir := tb.TempDir()
	var list strings.Builder
	list.WriteString("email,first_name,city\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&list, "user%07d@example.org,Name%d,City%d\n", i, i, i%100)
	}
	files := map[string]string{
		"subscribers.csv": list.String(),
		"template.txt":    apiMessageText,
		"campaign.yaml": `name: bench
from: "Bench <news@example.com>"
subject: "{{ .first_name }}, our picks"
text: template.txt
list: subscribers.csv
unsubscribe: {url: "https://example.com/unsubscribe"}
provider:
` + block + `rate: "1000000/s"
workers: ` + fmt.Sprint(workers) + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	c, err := Load(filepath.Join(dir, "campaign.yaml"), testNow())
	if err != nil {
		tb.Fatal(err)
	}
	return c, filepath.Join(dir, "herald.db")
}

// awsTestCredentials gives the standard AWS chain static test credentials and nothing
// else to read.
func awsTestCredentials(tb testing.TB) {
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
		"AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_CONFIG_FILE": tb.TempDir() + "/none",
		"AWS_SHARED_CREDENTIALS_FILE": tb.TempDir() + "/none"} {
		tb.Setenv(k, v)
	}
}

// TestAPIConnectionsPerWorker runs whole campaigns through each API provider and counts
// the connections its fake sees: the campaign's workers reach the provider, which keeps
// one connection per worker, even with more workers than an HTTP transport keeps idle
// by default (Go's 2, the AWS SDK's 10, herald's own 64).
func TestAPIConnectionsPerWorker(t *testing.T) {
	awsTestCredentials(t)
	for _, k := range apiKinds {
		for _, c := range []struct{ workers, n int }{{8, 400}, {80, 800}} {
			t.Run(fmt.Sprintf("%s/%d workers", k.name, c.workers), func(t *testing.T) {
				srv := k.start(t)
				camp, store := apiCampaign(t, c.n, c.workers, k.block(srv.URL))
				sum, err := Send(context.Background(), camp, SendOptions{Store: store, Limit: -1}, testEnv(k.env))
				if err != nil {
					t.Fatal(err)
				}
				if sum.Sent != c.n {
					t.Fatalf("sent %d of %d: %s", sum.Sent, c.n, sum.JSON())
				}
				apitest.CheckConns(t, srv, c.workers, c.n)
			})
		}
	}
}

// BenchmarkPipelineAPI is the whole send path — list, render, MIME, journal with group
// commits, 8 workers — into each API provider's instant fake ("herald"), beside a bare
// loop of 8 goroutines posting the same provider's request for one such message to the
// same fake through a pool of 8 kept-alive connections ("bare-loop", the yardstick:
// what the fake and the machine allow with nothing of herald's in the way).
func BenchmarkPipelineAPI(b *testing.B) {
	for _, k := range apiKinds {
		b.Run(k.name+"/herald", func(b *testing.B) {
			awsTestCredentials(b)
			srv := k.start(b)
			c, store := apiCampaign(b, b.N, 8, k.block(srv.URL))
			b.ReportAllocs()
			b.ResetTimer()
			sum, err := Send(context.Background(), c, SendOptions{Store: store, Limit: -1}, testEnv(k.env))
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if sum.Sent != b.N {
				b.Fatalf("sent %d of %d: %s", sum.Sent, b.N, sum.JSON())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
		b.Run(k.name+"/bare-loop", func(b *testing.B) {
			srv := k.start(b)
			path, header, body := k.request(b, apiMessage(b))
			client, tr := providers.NewAPIClient(0, 8)
			defer tr.CloseIdleConnections()
			b.ReportAllocs()
			b.ResetTimer()
			postLoop(b, client, srv.URL+path, header, body, 8, b.N)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// apiMessage renders one message of the API campaign through the file provider, for
// the bare loop's request.
func apiMessage(tb testing.TB) *providers.Message {
	tb.Helper()
	c, store := apiCampaign(tb, 1, 1, "  kind: file\n  dir: outbox\n")
	if _, err := Send(context.Background(), c, SendOptions{Store: store, Limit: -1}, testEnv(nil)); err != nil {
		tb.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(c.Dir, "outbox", "*.eml"))
	if err != nil || len(files) != 1 {
		tb.Fatalf("outbox: %v %v", files, err)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		tb.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw[bytes.Index(raw, []byte("\r\n\r\n"))+4:]), "\r\n", "\n")
	return &providers.Message{Campaign: "bench", From: `"Bench" <news@example.com>`, FromAddress: "news@example.com",
		To: "user0000000@example.org", Subject: "Name0, our picks", Text: text, Raw: raw}
}

// postLoop posts body n times from workers goroutines through client; a failed post
// fails b and the rest are still made.
func postLoop(b *testing.B, client *http.Client, url string, header http.Header, body []byte, workers, n int) {
	next := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					continue
				}
				for k, v := range header {
					req.Header[k] = v
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					b.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
}
