package campaign

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// dryRunFixture writes .ci/bench.sh's campaign (a personalised HTML body of about 10 KB
// and a text part of about 3.7 KB) with a list of n rows.
func dryRunFixture(b *testing.B, n int) *Campaign {
	b.Helper()
	dir := b.TempDir()
	var list strings.Builder
	list.WriteString("email,first_name,name,city\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&list, "user%07d@example.org,Name%d,Name%d Surname,City%d\n", i, i, i, i%100)
	}
	para := "<p>A paragraph of newsletter text, the same for every reader, that fills the message to a realistic size.</p>\n"
	html := "<html><body><h1>Hello {{ .first_name }},</h1>\n<p>Our picks for readers in {{ .city }}:</p>\n" +
		strings.Repeat(para, 90) + "<p><a href=\"{{ .UnsubscribeURL }}\">Unsubscribe</a></p></body></html>\n"
	text := "Hello {{ .first_name }} in {{ .city }}.\n" +
		strings.Repeat("Some newsletter text for the plain part, wrapped like a mail.\n", 60) +
		"\nUnsubscribe: {{ .UnsubscribeURL }}\n"
	files := map[string]string{
		"subscribers.csv": list.String(),
		"template.html":   html,
		"template.txt":    text,
		"campaign.yaml": `name: bench
from: "Bench <news@example.com>"
subject: "{{ .first_name }}, our picks"
html: template.html
text: template.txt
list: subscribers.csv
unsubscribe: {url: "https://example.com/unsubscribe"}
provider: {kind: file, dir: outbox}
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
	return c
}

// BenchmarkDryRun is `herald send --dry-run` over a 20,000-row list of .ci/bench.sh's
// campaign (no store): the list scan and every recipient rendered. rows/s and
// allocs/row are per list row.
func BenchmarkDryRun(b *testing.B) {
	const rows = 20000
	c := dryRunFixture(b, rows)
	store := filepath.Join(b.TempDir(), "herald.db")
	env := testEnv(map[string]string{"HERALD_SECRET": strings.Repeat("s", 32)})
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		sum, err := Send(b.Context(), c, SendOptions{DryRun: true, Limit: -1, Store: store}, env)
		if err != nil {
			b.Fatal(err)
		}
		if sum.Pending != rows {
			b.Fatalf("dry run: %s", sum.JSON())
		}
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*rows), "allocs/row")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N*rows), "B/row")
}
