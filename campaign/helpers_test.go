package campaign

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers/all"
)

// fixture is a campaign folder in a temporary directory.
type fixture struct {
	t    *testing.T
	dir  string
	path string
}

// newFixture writes a campaign whose list has n recipients r0001@example.org … and
// whose provider block is provider (YAML lines indented by two spaces, without kind).
func newFixture(t *testing.T, n int, provider string, extra string) *fixture {
	t.Helper()
	dir := t.TempDir()
	var list strings.Builder
	list.WriteString("email,first_name\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&list, "r%04d@example.org,Name%d\n", i, i)
	}
	f := &fixture{t: t, dir: dir, path: filepath.Join(dir, "campaign.yaml")}
	f.write("subscribers.csv", list.String())
	f.write("template.txt", "Hello {{ .first_name }}\nUnsubscribe: {{ .UnsubscribeURL }}\n")
	f.write("campaign.yaml", `name: test-campaign
from: "Test <news@example.com>"
subject: "Hi {{ .first_name }}"
text: template.txt
list: subscribers.csv
unsubscribe: {url: "https://example.com/u"}
provider:
`+provider+`
rate: "10000/s"
workers: 4
retry: {attempts: 3, backoff: 1ms, max_backoff: 5ms}
`+extra)
	return f
}

func (f *fixture) write(name, content string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) load() *Campaign {
	f.t.Helper()
	c, err := Load(f.path, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fixture) store() string { return filepath.Join(f.dir, "herald.db") }

// send runs the campaign with limit (-1: none) and the other options of o.
func (f *fixture) send(limit int, o SendOptions) (*Summary, error) {
	f.t.Helper()
	if o.Store == "" {
		o.Store = f.store()
	}
	o.Limit = limit
	return Send(context.Background(), f.load(), o, testEnv(nil))
}

func testNow() time.Time { return time.Now() }

func testEnv(env map[string]string) Env {
	return Env{
		Registry: all.Registry(),
		Getenv:   func(k string) string { return env[k] },
	}
}

func (f *fixture) counts() map[journal.State]int {
	f.t.Helper()
	st, err := journal.Open(context.Background(), f.store(), journal.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	defer st.Close()
	c, err := st.Counts(context.Background(), "test-campaign")
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func checkAddsUp(t *testing.T, s *Summary) {
	t.Helper()
	sum := s.Sent + s.Failed + s.Deferred + s.Unknown + s.Pending + s.Waiting +
		s.Skipped.Invalid + s.Skipped.Duplicate + s.Skipped.Suppressed + s.Skipped.AlreadyDone
	if sum != s.Total {
		t.Errorf("summary does not add up: %d ≠ total %d: %s", sum, s.Total, s.JSON())
	}
}
