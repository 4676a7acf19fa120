package campaign

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
		err  bool
	}{
		{"10/s", 10, false},
		{"600/m", 10, false},
		{"20000/h", 20000.0 / 3600, false},
		{" 5 / sec ", 5, false},
		{"0.5/s", 0.5, false},
		{"10/min", 10.0 / 60, false},
		{"10", 0, true},
		{"10/d", 0, true},
		{"0/s", 0, true},
		{"-1/s", 0, true},
		{"abc/s", 0, true},
		{"", 0, true},
		{"NaN/s", 0, true},
		{"nan/s", 0, true},
		{"inf/s", 0, true},
		{"+Inf/s", 0, true},
		{"-inf/m", 0, true},
		{"1e400/s", 0, true},
		{"Infinity/h", 0, true},
		{"1e-300/h", 0, true},
	} {
		r, err := ParseRate(c.in)
		if (err != nil) != c.err {
			t.Errorf("ParseRate(%q) error = %v, want error %v", c.in, err, c.err)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), strings.TrimSpace(c.in)) {
			t.Errorf("ParseRate(%q) error %q does not name the value", c.in, err)
		}
		if err == nil && (r.PerSecond < c.want*0.999 || r.PerSecond > c.want*1.001) {
			t.Errorf("ParseRate(%q) = %v/s, want %v/s", c.in, r.PerSecond, c.want)
		}
	}
}

func TestRenderName(t *testing.T) {
	now := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	for in, want := range map[string]string{
		"news":                  "news",
		"daily-{{ .Date }}":     "daily-2026-11-28",
		"weekly-{{ .Week }}":    "weekly-2026-W48",
		"x-{{.Date}}-{{.Week}}": "x-2026-11-28-2026-W48",
	} {
		got, err := RenderName(in, now)
		if err != nil || got != want {
			t.Errorf("RenderName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	// ISO week of 2027-01-01 (a Friday) is 2026-W53.
	if got, _ := RenderName("{{ .Week }}", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); got != "2026-W53" {
		t.Errorf("ISO week of 2027-01-01 = %q, want 2026-W53", got)
	}
	if _, err := RenderName("{{ .Month }}", now); err == nil {
		t.Errorf("an unknown placeholder was accepted")
	}
}

const validCampaign = `name: november-news
from: "Acme News <news@acme.example>"
subject: "Hi"
text: t.txt
list: l.csv
unsubscribe: {url: "https://news.acme.example/u"}
provider: {kind: file, dir: outbox}
`

func TestParseCampaign(t *testing.T) {
	c, err := Parse("/srv/news/campaign.yaml", []byte(validCampaign), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "november-news" || c.Workers != 4 || c.Rate.PerSecond != 10 || c.Retry.Attempts != 5 ||
		c.Retry.GiveUpAfter != 120*time.Hour || c.TextFile != "/srv/news/t.txt" || c.ListFile != "/srv/news/l.csv" ||
		c.ProviderKind != "file" || c.From.Address != "news@acme.example" {
		t.Fatalf("defaults or paths wrong: %+v", c)
	}
	var pc struct {
		Dir string `yaml:"dir"`
	}
	if err := c.DecodeProvider(&pc); err != nil || pc.Dir != "outbox" {
		t.Fatalf("DecodeProvider: %v %+v", err, pc)
	}
	var strict struct{}
	if err := c.DecodeProvider(&strict); err == nil || !strings.Contains(err.Error(), "dir") {
		t.Fatalf("DecodeProvider accepted an unknown key: %v", err)
	}
}

func TestParseCampaignErrors(t *testing.T) {
	for name, c := range map[string]struct{ edit, want string }{
		"unknown key":      {"colour: blue\n", "colour"},
		"no name":          {"name: \"\"\n", "name"},
		"bad name":         {"name: \"my news\"\n", "name"},
		"bad from":         {"from: \"not an address\"\n", "from"},
		"no subject":       {"subject: \"\"\n", "subject"},
		"http unsub":       {"unsubscribe: {url: \"http://news.acme.example/u\"}\n", "https"},
		"rate":             {"rate: \"fast\"\n", "rate"},
		"workers":          {"workers: 0\nworkers: -3\n", "workers"},
		"backoff":          {"retry: {backoff: soon}\n", "retry.backoff"},
		"timezone":         {"timezone: Mars/Olympus\n", "timezone"},
		"header crlf":      {"headers: {\"X-A\": \"a\\r\\nBcc: x@y.z\"}\n", "line break"},
		"no provider kind": {"provider: {dir: outbox}\n", "provider.kind"},
		"delimiter":        {"list_delimiter: \"|\"\n", "list_delimiter"},
		"no body":          {"text: \"\"\n", "body"},
	} {
		t.Run(name, func(t *testing.T) {
			doc := replaceKeys(validCampaign, c.edit)
			_, err := Parse("campaign.yaml", []byte(doc), time.Now())
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Parse(%q) error = %v, want a *ConfigError", doc, err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "campaign.yaml") {
				t.Fatalf("error %q does not name %q and the file", err, c.want)
			}
		})
	}
	if _, err := Parse("campaign.yaml", nil, time.Now()); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
}

// replaceKeys replaces (or adds) the top-level keys of edit in doc.
func replaceKeys(doc, edit string) string {
	lines := strings.Split(strings.TrimSpace(doc), "\n")
	for _, e := range strings.Split(strings.TrimSpace(edit), "\n") {
		key, _, _ := strings.Cut(e, ":")
		replaced := false
		for i, l := range lines {
			if strings.HasPrefix(l, key+":") {
				lines[i], replaced = e, true
			}
		}
		if !replaced {
			lines = append(lines, e)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestStorePath(t *testing.T) {
	c, _ := Parse("/srv/news/campaign.yaml", []byte(validCampaign), time.Now())
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if p := StorePath(c, "", get); p != "/srv/news/herald.db" {
		t.Errorf("default store = %q", p)
	}
	c.StoreFile = "/data/file.db"
	if p := StorePath(c, "", get); p != "/data/file.db" {
		t.Errorf("file store = %q", p)
	}
	env["HERALD_STORE"] = "/env.db"
	if p := StorePath(c, "", get); p != "/env.db" {
		t.Errorf("env store = %q", p)
	}
	if p := StorePath(c, "/flag.db", get); p != "/flag.db" {
		t.Errorf("flag store = %q", p)
	}
}

func TestNewLimiterCeiling(t *testing.T) {
	for _, r := range []float64{0.5, 10, 20, 99, 100, 1000, 20000} {
		l := NewLimiter(r)
		// A closed window of w seconds holds the burst plus the whole refill intervals
		// in it; over a second (or, below 1/s, over the interval of one message) that
		// must stay within the rate.
		w := math.Max(1, 1/r)
		if max := float64(l.Burst()) + math.Floor(float64(l.Limit())*w); max > r*w {
			t.Errorf("rate %v: %v s may carry %v messages (burst %d, refill %v/s)", r, w, max, l.Burst(), l.Limit())
		}
		if float64(l.Limit()) < r*0.97 {
			t.Errorf("rate %v: refill %v is needlessly low", r, l.Limit())
		}
	}
}
