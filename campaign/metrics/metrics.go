// Package metrics holds herald's Prometheus metrics: one Metrics per process (a `send`, a
// `schedule` or a `serve`), registered on its own registry, never on a global one, and
// served over HTTP by Serve.
//
// The metrics come from three places, none of which knows about Prometheus:
//   - a run's live counters (StartRun reads them at scrape time): messages by outcome,
//     the rate ceiling and the achieved rate, a run-info gauge;
//   - the provider, wrapped by Instrument: send latency, attempts by result, retries,
//     throttling answers, bounces;
//   - the HTTP server of `herald serve`: unsubscribes and webhook events (Unsubscribed,
//     WebhookEvent).
//
// Names follow Prometheus conventions (herald_ prefix, _total counters, _seconds
// durations). README.md lists them with two example alerts.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes are the values of the outcome label of herald_messages_total, in the order of
// the summary.
var Outcomes = []string{"sent", "failed", "deferred", "unknown", "already_done"}

// Metrics are one process's metrics. The zero value is not usable; call New.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	sendDuration *prometheus.HistogramVec
	attempts     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	throttled    *prometheus.CounterVec
	bounces      *prometheus.CounterVec
	unsubscribes prometheus.Counter
	webhooks     *prometheus.CounterVec
	commit       prometheus.Histogram

	runs *runs
}

// New makes the metrics of a process running command (send, schedule, serve) of herald
// version, with Go runtime and process metrics beside herald's own.
func New(version, command string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		now: time.Now,
		sendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_send_duration_seconds",
			Help: "Time the provider took to accept or refuse one message, by provider and result (ok, temporary, permanent, fatal, unknown).",
			// From a fast local relay (a millisecond) to an API near its timeout.
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"provider", "result"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_send_attempts_total",
			Help: "Messages handed to the provider, by provider and result (ok, temporary, permanent, fatal, unknown).",
		}, []string{"provider", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_retries_total",
			Help: "Attempts to send to a recipient whose previous attempt in this process failed temporarily.",
		}, []string{"provider"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_throttled_total",
			Help: "Throttling answers of the provider (HTTP 429, SMTP rate limits): each slows the run down.",
		}, []string{"provider"}),
		bounces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_bounces_total",
			Help: "Permanent failures caused by the address itself (hard bounces), by campaign and provider.",
		}, []string{"campaign", "provider"}),
		unsubscribes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_unsubscribes_total",
			Help: "One-click and confirmed unsubscribes received by herald serve.",
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_webhook_events_total",
			Help: "Provider webhook events received by herald serve, by provider and event (bounce, complaint, unsubscribe, ignored).",
		}, []string{"provider", "event"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herald_journal_commit_seconds",
			Help: "Time a recipient's hand-off waited to be durable in the journal before its message could go.",
			// From a group commit on a fast disk (a tenth of a millisecond) to a stalled store.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}),
	}
	m.runs = &runs{m: m, totals: map[runKey]*[5]int64{}}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "herald_build_info",
		Help:        "Always 1; the labels say which herald runs which command.",
		ConstLabels: prometheus.Labels{"version": version, "command": command},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo, m.sendDuration, m.attempts, m.retries, m.throttled, m.bounces,
		m.unsubscribes, m.webhooks, m.commit, m.runs,
	)
	return m
}

// Registry is the registry the metrics are registered on (for tests and for adding
// collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text or OpenMetrics format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: true})
}

// Unsubscribed counts one unsubscribe received by herald serve.
func (m *Metrics) Unsubscribed() { m.unsubscribes.Inc() }

// WebhookEvent counts one provider webhook event.
func (m *Metrics) WebhookEvent(provider, event string) {
	m.webhooks.WithLabelValues(provider, event).Inc()
}

// JournalCommit observes how long one recipient's hand-off waited to be durable in the
// journal.
func (m *Metrics) JournalCommit(d time.Duration) { m.commit.Observe(d.Seconds()) }

// Server serves /metrics on its own listener.
type Server struct {
	// Addr is the address actually listened on (useful with port 0).
	Addr string
	srv  *http.Server
	done chan error
}

// Serve listens on addr (HOST:PORT) at once, so that a bad address is an error before
// the run starts, and serves the metrics at /metrics until Close.
func (m *Metrics) Serve(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("herald metrics: /metrics\n"))
	})
	s := &Server{
		Addr: ln.Addr().String(),
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
		},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server, letting a scrape in progress finish for up to a second.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// RunInfo describes a run of a campaign.
type RunInfo struct {
	Campaign string
	Provider string
	// Rate is the run's ceiling in messages per second.
	Rate float64
	// ToSend is how many recipients the run means to send to.
	ToSend int
	// Health reads the campaign's bounce and complaint figures from its store (nil: no
	// such gauges). It is called at scrape time, at most every healthEvery.
	Health func(ctx context.Context) (Health, error)
}

// Health are a campaign's figures in its store, over every run on every host: outcomes
// (sent and failed), bounces and complaints among them, since the last pause_if resume.
type Health struct {
	Outcomes, Bounces, Complaints int
}

// healthEvery is how long a store read of a campaign's health serves scrapes; a scrape
// waits at most healthTimeout for the store.
const (
	healthEvery   = 5 * time.Second
	healthTimeout = 2 * time.Second
)

// Counts are a run's outcome counts so far; the order of Outcomes.
type Counts [5]int64

// StartRun makes a run's live counts visible: counts is called at each scrape, and its
// values add to what earlier runs of the same campaign in this process counted. The
// returned func ends the run: its last counts stay in herald_messages_total, its gauges
// go.
func (m *Metrics) StartRun(info RunInfo, counts func() Counts) (end func()) {
	return m.runs.start(info, counts)
}

// runKey names a series of herald_messages_total.
type runKey struct{ campaign, provider string }

// live is a run in progress.
type live struct {
	info   RunInfo
	start  time.Time
	counts func() Counts

	healthMu sync.Mutex
	healthAt time.Time
	health   Health
	healthOK bool
}

// readHealth returns the campaign's health figures, read again from the store when the
// last read is older than healthEvery; ok is false when none could be read yet.
func (l *live) readHealth(now time.Time) (Health, bool) {
	if l.info.Health == nil {
		return Health{}, false
	}
	l.healthMu.Lock()
	defer l.healthMu.Unlock()
	if l.healthAt.IsZero() || now.Sub(l.healthAt) >= healthEvery {
		ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
		h, err := l.info.Health(ctx)
		cancel()
		if err == nil {
			l.health, l.healthOK = h, true
		}
		l.healthAt = now
	}
	return l.health, l.healthOK
}

// runs collects the metrics that come from runs' counters.
type runs struct {
	m      *Metrics
	mu     sync.Mutex
	totals map[runKey]*[5]int64 // counts of finished runs
	live   map[*live]struct{}
}

var (
	messagesDesc = prometheus.NewDesc("herald_messages_total",
		"Recipients that reached an outcome, by campaign, provider and outcome (sent, failed, deferred, unknown, already_done); the counts of the JSON summary.",
		[]string{"campaign", "provider", "outcome"}, nil)
	runInfoDesc = prometheus.NewDesc("herald_run_info",
		"1 while a run of the campaign is going on.",
		[]string{"campaign", "provider"}, nil)
	runStartDesc = prometheus.NewDesc("herald_run_start_time_seconds",
		"When the current run of the campaign started, in seconds since the Unix epoch.",
		[]string{"campaign"}, nil)
	toSendDesc = prometheus.NewDesc("herald_run_recipients",
		"Recipients the current run means to send to.",
		[]string{"campaign"}, nil)
	ceilingDesc = prometheus.NewDesc("herald_rate_limit_messages_per_second",
		"The current run's rate ceiling.",
		[]string{"campaign"}, nil)
	achievedDesc = prometheus.NewDesc("herald_rate_messages_per_second",
		"The current run's achieved rate: outcomes so far over the time since it started.",
		[]string{"campaign"}, nil)
	bounceRatioDesc = prometheus.NewDesc("herald_run_failed_ratio",
		"The current run's failed recipients over its sent and failed ones (0 before any).",
		[]string{"campaign"}, nil)
	healthOutcomesDesc = prometheus.NewDesc("herald_campaign_outcomes",
		"Outcomes (sent and failed) of a running campaign in its store, every run on every host, since the last --resume-paused: the denominator of the bounce and complaint ratios.",
		[]string{"campaign"}, nil)
	healthBounceDesc = prometheus.NewDesc("herald_campaign_bounce_ratio",
		"Bounces (permanent rejections and bounces by mail) of a running campaign over its outcomes, as pause_if computes it (0 before any).",
		[]string{"campaign"}, nil)
	healthComplaintDesc = prometheus.NewDesc("herald_campaign_complaint_ratio",
		"Complaints (webhook events, complaint reports) about a running campaign over its outcomes, as pause_if computes it (0 before any).",
		[]string{"campaign"}, nil)
)

func (r *runs) start(info RunInfo, counts func() Counts) func() {
	l := &live{info: info, start: r.m.now(), counts: counts}
	r.mu.Lock()
	if r.live == nil {
		r.live = map[*live]struct{}{}
	}
	r.live[l] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c := counts()
			r.mu.Lock()
			defer r.mu.Unlock()
			delete(r.live, l)
			t := r.total(runKey{info.Campaign, info.Provider})
			for i := range c {
				t[i] += c[i]
			}
		})
	}
}

func (r *runs) total(k runKey) *[5]int64 {
	t := r.totals[k]
	if t == nil {
		t = new([5]int64)
		r.totals[k] = t
	}
	return t
}

// Describe sends the descriptors of the run metrics.
func (r *runs) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{messagesDesc, runInfoDesc, runStartDesc, toSendDesc, ceilingDesc, achievedDesc, bounceRatioDesc,
		healthOutcomesDesc, healthBounceDesc, healthComplaintDesc} {
		ch <- d
	}
}

// Collect reads the live runs' counters.
func (r *runs) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	sums := make(map[runKey][5]int64, len(r.totals)+len(r.live))
	for k, t := range r.totals {
		sums[k] = *t
	}
	lives := make([]*live, 0, len(r.live))
	for l := range r.live {
		lives = append(lives, l)
	}
	r.mu.Unlock()
	now := r.m.now()
	sort.Slice(lives, func(i, j int) bool { return lives[i].start.Before(lives[j].start) })
	for _, l := range lives {
		c := l.counts()
		k := runKey{l.info.Campaign, l.info.Provider}
		s := sums[k]
		for i := range c {
			s[i] += c[i]
		}
		sums[k] = s
		name := l.info.Campaign
		ch <- prometheus.MustNewConstMetric(runInfoDesc, prometheus.GaugeValue, 1, name, l.info.Provider)
		ch <- prometheus.MustNewConstMetric(runStartDesc, prometheus.GaugeValue, float64(l.start.UnixNano())/1e9, name)
		ch <- prometheus.MustNewConstMetric(toSendDesc, prometheus.GaugeValue, float64(l.info.ToSend), name)
		ch <- prometheus.MustNewConstMetric(ceilingDesc, prometheus.GaugeValue, l.info.Rate, name)
		var done int64
		for _, n := range c {
			done += n
		}
		rate := 0.0
		if el := now.Sub(l.start).Seconds(); el > 0 {
			rate = float64(done) / el
		}
		ch <- prometheus.MustNewConstMetric(achievedDesc, prometheus.GaugeValue, rate, name)
		ratio := 0.0
		if sent, failed := c[0], c[1]; sent+failed > 0 {
			ratio = float64(failed) / float64(sent+failed)
		}
		ch <- prometheus.MustNewConstMetric(bounceRatioDesc, prometheus.GaugeValue, ratio, name)
		if h, ok := l.readHealth(now); ok {
			ch <- prometheus.MustNewConstMetric(healthOutcomesDesc, prometheus.GaugeValue, float64(h.Outcomes), name)
			ch <- prometheus.MustNewConstMetric(healthBounceDesc, prometheus.GaugeValue, fraction(h.Bounces, h.Outcomes), name)
			ch <- prometheus.MustNewConstMetric(healthComplaintDesc, prometheus.GaugeValue, fraction(h.Complaints, h.Outcomes), name)
		}
	}
	for k, s := range sums {
		for i, outcome := range Outcomes {
			ch <- prometheus.MustNewConstMetric(messagesDesc, prometheus.CounterValue, float64(s[i]), k.campaign, k.provider, outcome)
		}
	}
}

// fraction is n/of, 0 when of is 0.
func fraction(n, of int) float64 {
	if of <= 0 {
		return 0
	}
	return float64(n) / float64(of)
}
