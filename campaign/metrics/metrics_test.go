package metrics

import (
	"context"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldmail/herald/providers"
)

// Scrape returns the value of every sample in the exposition text, keyed by
// `name{label="value",…}` as printed (labels in alphabetical order).
func scrape(t *testing.T, text string) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	line := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)`)
	for _, l := range strings.Split(text, "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", l, err)
		}
		samples[m[1]] = v
	}
	return samples
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

func TestRunsCountAcrossRunsAndServe(t *testing.T) {
	m := New("v1.2.3", "schedule")
	clock := time.Unix(1_700_000_000, 0)
	m.now = func() time.Time { return clock }
	srv, err := m.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url := "http://" + srv.Addr + "/metrics"

	var c Counts
	end := m.StartRun(RunInfo{Campaign: "news", Provider: "smtp", Rate: 10, ToSend: 8}, func() Counts { return c })
	c = Counts{3, 1, 0, 0, 0}
	clock = clock.Add(2 * time.Second)
	s := scrape(t, get(t, url))
	for name, want := range map[string]float64{
		`herald_messages_total{campaign="news",outcome="sent",provider="smtp"}`:   3,
		`herald_messages_total{campaign="news",outcome="failed",provider="smtp"}`: 1,
		`herald_run_info{campaign="news",provider="smtp"}`:                        1,
		`herald_rate_limit_messages_per_second{campaign="news"}`:                  10,
		`herald_rate_messages_per_second{campaign="news"}`:                        2,
		`herald_run_recipients{campaign="news"}`:                                  8,
		`herald_run_failed_ratio{campaign="news"}`:                                0.25,
		`herald_build_info{command="schedule",version="v1.2.3"}`:                  1,
	} {
		if got, ok := s[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	c = Counts{5, 1, 1, 0, 1}
	end()
	end() // a second call changes nothing

	// A second run of the same campaign adds to the first; its gauges replace them.
	var c2 Counts
	end2 := m.StartRun(RunInfo{Campaign: "news", Provider: "smtp", Rate: 5}, func() Counts { return c2 })
	c2 = Counts{2, 0, 0, 0, 0}
	s = scrape(t, get(t, url))
	if got := s[`herald_messages_total{campaign="news",outcome="sent",provider="smtp"}`]; got != 7 {
		t.Errorf("sent over two runs = %v, want 7", got)
	}
	if got := s[`herald_messages_total{campaign="news",outcome="already_done",provider="smtp"}`]; got != 1 {
		t.Errorf("already_done = %v, want 1", got)
	}
	if got := s[`herald_rate_limit_messages_per_second{campaign="news"}`]; got != 5 {
		t.Errorf("ceiling = %v, want the second run's 5", got)
	}
	end2()
	s = scrape(t, get(t, url))
	if _, ok := s[`herald_run_info{campaign="news",provider="smtp"}`]; ok {
		t.Errorf("herald_run_info still present after the run ended")
	}
	if got := s[`herald_messages_total{campaign="news",outcome="sent",provider="smtp"}`]; got != 7 {
		t.Errorf("sent after both runs = %v, want 7", got)
	}
	if _, ok := s[`go_goroutines`]; !ok {
		t.Errorf("no Go runtime metrics")
	}
}

func TestServeBadAddress(t *testing.T) {
	m := New("v1", "send")
	if _, err := m.Serve("127.0.0.1:notaport"); err == nil {
		t.Fatal("Serve on a bad address succeeded")
	}
}

// fakeProvider answers Send with the errors queued in answers, then success.
type fakeProvider struct {
	answers []error
	n       atomic.Int32
}

func (f *fakeProvider) Name() string                         { return "fake" }
func (f *fakeProvider) Capabilities() providers.Capabilities { return providers.Capabilities{} }
func (f *fakeProvider) Close() error                         { return nil }
func (f *fakeProvider) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	i := int(f.n.Add(1)) - 1
	if i < len(f.answers) && f.answers[i] != nil {
		return providers.Receipt{}, f.answers[i]
	}
	return providers.Receipt{MessageID: "id"}, nil
}

type quotaProvider struct{ fakeProvider }

func (q *quotaProvider) Quota() (float64, bool) { return 14, true }

func TestInstrument(t *testing.T) {
	m := New("v1", "send")
	fake := &fakeProvider{answers: []error{
		&providers.Error{Provider: "fake", Kind: providers.Temporary, Code: 429, SlowDown: true},
		nil, // the retry of a@x
		&providers.Error{Provider: "fake", Kind: providers.Permanent, Code: 550, Bounce: true},
		&providers.Error{Provider: "fake", Kind: providers.Permanent, Code: 554},
	}}
	reg := m.Instrument(providers.Registry{"fake": {Kind: "fake",
		Open: func(context.Context, providers.Spec) (providers.Provider, error) { return fake, nil }}})
	p, err := reg["fake"].Open(context.Background(), providers.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(quota); ok {
		t.Errorf("a provider without Quota gained one")
	}
	ctx := context.Background()
	for _, to := range []string{"a@x", "A@x", "b@x", "c@x", "d@x"} {
		_, _ = p.Send(ctx, &providers.Message{Campaign: "news", To: to})
	}
	var out strings.Builder
	rec := httptestRecorder{w: &out}
	m.Handler().ServeHTTP(&rec, mustRequest(t))
	s := scrape(t, out.String())
	for name, want := range map[string]float64{
		`herald_send_attempts_total{provider="fake",result="ok"}`:         2,
		`herald_send_attempts_total{provider="fake",result="temporary"}`:  1,
		`herald_send_attempts_total{provider="fake",result="permanent"}`:  2,
		`herald_retries_total{provider="fake"}`:                           1,
		`herald_throttled_total{provider="fake"}`:                         1,
		`herald_bounces_total{campaign="news",provider="fake"}`:           1,
		`herald_send_duration_seconds_count{provider="fake",result="ok"}`: 2,
	} {
		if got := s[name]; got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	qp := &quotaProvider{}
	reg = m.Instrument(providers.Registry{"q": {Kind: "q",
		Open: func(context.Context, providers.Spec) (providers.Provider, error) { return qp, nil }}})
	p, _ = reg["q"].Open(ctx, providers.Spec{})
	if q, ok := p.(quota); !ok {
		t.Errorf("Quota was not passed through")
	} else if v, _ := q.Quota(); v != 14 {
		t.Errorf("Quota = %v", v)
	}
}

func TestServeCounters(t *testing.T) {
	m := New("v1", "serve")
	m.Unsubscribed()
	m.WebhookEvent("sendgrid", "bounce")
	m.WebhookEvent("sendgrid", "bounce")
	var out strings.Builder
	rec := httptestRecorder{w: &out}
	m.Handler().ServeHTTP(&rec, mustRequest(t))
	s := scrape(t, out.String())
	if s[`herald_unsubscribes_total`] != 1 || s[`herald_webhook_events_total{event="bounce",provider="sendgrid"}`] != 2 {
		t.Errorf("serve counters wrong:\n%s", out.String())
	}
}

// httptestRecorder is the smallest http.ResponseWriter.
type httptestRecorder struct {
	w      io.Writer
	header http.Header
}

func (r *httptestRecorder) Header() http.Header {
	if r.header == nil {
		r.header = http.Header{}
	}
	return r.header
}
func (r *httptestRecorder) Write(b []byte) (int, error) { return r.w.Write(b) }
func (r *httptestRecorder) WriteHeader(int)             {}

func mustRequest(t *testing.T) *http.Request {
	req, err := http.NewRequest("GET", "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestJournalCommit: each observed hand-off is one sample of herald_journal_commit_seconds,
// in seconds.
func TestJournalCommit(t *testing.T) {
	m := New("v1", "send")
	for _, d := range []time.Duration{300 * time.Microsecond, 2 * time.Millisecond, 1500 * time.Millisecond} {
		m.JournalCommit(d)
	}
	var out strings.Builder
	rec := httptestRecorder{w: &out}
	m.Handler().ServeHTTP(&rec, mustRequest(t))
	s := scrape(t, out.String())
	if got := s["herald_journal_commit_seconds_count"]; got != 3 {
		t.Errorf("herald_journal_commit_seconds_count = %v, want 3", got)
	}
	if got := s["herald_journal_commit_seconds_sum"]; math.Abs(got-1.5023) > 1e-9 {
		t.Errorf("herald_journal_commit_seconds_sum = %v, want 1.5023", got)
	}
}

// TestCampaignHealth: the bounce and complaint ratios of a running campaign come from
// its store's figures, read at scrape time at most every healthEvery; a store that cannot
// answer leaves the last figures (none before the first answer); the gauges go with the
// run.
func TestCampaignHealth(t *testing.T) {
	m := New("v1", "send")
	clock := time.Unix(1_700_000_000, 0)
	m.now = func() time.Time { return clock }
	srv, err := m.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url := "http://" + srv.Addr + "/metrics"

	var reads atomic.Int32
	var fail atomic.Bool
	h := Health{Outcomes: 200, Bounces: 10, Complaints: 1}
	health := func(ctx context.Context) (Health, error) {
		reads.Add(1)
		if _, ok := ctx.Deadline(); !ok {
			t.Errorf("the store is read without a deadline")
		}
		if fail.Load() {
			return Health{}, context.DeadlineExceeded
		}
		return h, nil
	}
	fail.Store(true)
	end := m.StartRun(RunInfo{Campaign: "news", Provider: "ses", Health: health}, func() Counts { return Counts{} })
	s := scrape(t, get(t, url))
	if _, ok := s[`herald_campaign_bounce_ratio{campaign="news"}`]; ok {
		t.Errorf("a bounce ratio before the store ever answered")
	}
	fail.Store(false)
	clock = clock.Add(healthEvery)
	s = scrape(t, get(t, url))
	for name, want := range map[string]float64{
		`herald_campaign_outcomes{campaign="news"}`:        200,
		`herald_campaign_bounce_ratio{campaign="news"}`:    0.05,
		`herald_campaign_complaint_ratio{campaign="news"}`: 0.005,
	} {
		if got, ok := s[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	// Scrapes within healthEvery are served from the last read.
	n := reads.Load()
	h = Health{Outcomes: 400, Bounces: 40}
	s = scrape(t, get(t, url))
	if reads.Load() != n || s[`herald_campaign_bounce_ratio{campaign="news"}`] != 0.05 {
		t.Errorf("store read %d more times within %v; ratio %v", reads.Load()-n, healthEvery, s[`herald_campaign_bounce_ratio{campaign="news"}`])
	}
	clock = clock.Add(healthEvery)
	s = scrape(t, get(t, url))
	if got := s[`herald_campaign_bounce_ratio{campaign="news"}`]; got != 0.1 {
		t.Errorf("bounce ratio after the next read = %v, want 0.1", got)
	}
	// A failing read keeps the last figures.
	fail.Store(true)
	clock = clock.Add(healthEvery)
	s = scrape(t, get(t, url))
	if got := s[`herald_campaign_outcomes{campaign="news"}`]; got != 400 {
		t.Errorf("outcomes after a failed read = %v, want the last 400", got)
	}
	end()
	s = scrape(t, get(t, url))
	if _, ok := s[`herald_campaign_bounce_ratio{campaign="news"}`]; ok {
		t.Errorf("the bounce ratio stays after the run ended")
	}
}

func TestFraction(t *testing.T) {
	for _, tc := range []struct {
		n, of int
		want  float64
	}{{0, 0, 0}, {5, 0, 0}, {1, 4, 0.25}, {3, 3, 1}} {
		if got := fraction(tc.n, tc.of); got != tc.want {
			t.Errorf("fraction(%d, %d) = %v, want %v", tc.n, tc.of, got, tc.want)
		}
	}
}
