package campaign

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// benchFixture writes a campaign of n recipients with a personalised HTML body of about
// 10 KB and a text template (none when htmlOnly: the text part is derived from the
// HTML), sending through provider with 8 workers and no rate ceiling.
func benchFixture(b *testing.B, n int, provider string, htmlOnly bool) (*Campaign, string) {
	b.Helper()
	dir := b.TempDir()
	var list strings.Builder
	list.WriteString("email,first_name,name,city\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&list, "user%07d@example.org,Name%d,Name%d Surname,City%d\n", i, i, i, i%100)
	}
	var html strings.Builder
	html.WriteString("<html><body><h1>Hello {{ .first_name }},</h1>\n<p>Our picks for readers in {{ .city }}:</p>\n")
	for html.Len() < 10*1024 {
		html.WriteString("<p>A paragraph of newsletter text, the same for every reader, that fills the message to a realistic size.</p>\n")
	}
	html.WriteString(`<p><a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p></body></html>`)
	text := "text: template.txt\n"
	if htmlOnly {
		text = ""
	}
	files := map[string]string{
		"subscribers.csv": list.String(),
		"template.html":   html.String(),
		"template.txt":    "Hello {{ .first_name }} in {{ .city }}.\nUnsubscribe: {{ .UnsubscribeURL }}\n",
		"campaign.yaml": `name: bench
from: "Bench <news@example.com>"
subject: "{{ .first_name }}, our picks"
html: template.html
` + text + `list: subscribers.csv
unsubscribe: {url: "https://example.com/unsubscribe"}
provider:
` + provider + `
rate: "1000000/s"
workers: 8
`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	c, err := Load(filepath.Join(dir, "campaign.yaml"), testNow())
	if err != nil {
		b.Fatal(err)
	}
	return c, filepath.Join(dir, "herald.db")
}

func runBench(b *testing.B, htmlOnly bool, provider func(b *testing.B) string) {
	c, store := benchFixture(b, b.N, provider(b), htmlOnly)
	b.ReportAllocs()
	b.ResetTimer()
	sum, err := Send(context.Background(), c, SendOptions{Store: store, Limit: -1}, testEnv(nil))
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if sum.Sent != b.N {
		b.Fatalf("sent %d of %d: %s", sum.Sent, b.N, sum.JSON())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPipelineSMTP is the whole send path — list, render, MIME, journal with group
// commits, 8 workers — into an in-process SMTP server that discards what it receives.
func BenchmarkPipelineSMTP(b *testing.B) {
	runBench(b, false, smtpBenchProvider)
}

// BenchmarkPipelineSMTPHTMLOnly is BenchmarkPipelineSMTP for a campaign with no text
// template: the text part (about 9 KB) is derived from the HTML.
func BenchmarkPipelineSMTPHTMLOnly(b *testing.B) {
	runBench(b, true, smtpBenchProvider)
}

func smtpBenchProvider(b *testing.B) string {
	srv := smtptest.Start(b, smtptest.Options{Discard: true})
	return fmt.Sprintf("  kind: smtp\n  host: %s\n  port: %d\n  tls: none\n", srv.Host(), srv.Port())
}

// BenchmarkPipelineFile is the whole send path into the file provider (an fsync per file).
func BenchmarkPipelineFile(b *testing.B) {
	runBench(b, false, func(b *testing.B) string { return "  kind: file\n  dir: outbox\n" })
}
