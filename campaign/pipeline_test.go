package campaign

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers"
)

// fakeProvider answers every Send with answer (nil: accept).
type fakeProvider struct {
	answer func(msg *providers.Message) error
	calls  atomic.Int64
}

func (p *fakeProvider) Name() string                         { return "fake" }
func (p *fakeProvider) Capabilities() providers.Capabilities { return providers.Capabilities{} }
func (p *fakeProvider) Close() error                         { return nil }
func (p *fakeProvider) Send(ctx context.Context, msg *providers.Message) (providers.Receipt, error) {
	p.calls.Add(1)
	if p.answer != nil {
		if err := p.answer(msg); err != nil {
			return providers.Receipt{}, err
		}
	}
	return providers.Receipt{MessageID: "id-" + msg.To}, nil
}

// memRecorder is an in-memory journal whose outcome writes fail, as on a full disk,
// once failAfter outcomes have been recorded (failAfter < 0: never).
type memRecorder struct {
	mu        sync.Mutex
	states    map[string]journal.State
	providers map[string]string // the provider recorded with each key's last outcome
	failAfter int
	recorded  int
	err       error
}

func newMemRecorder(failAfter int) *memRecorder {
	return &memRecorder{states: map[string]journal.State{}, failAfter: failAfter}
}

func (m *memRecorder) Handoff(_ context.Context, key string) func() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		err := m.err
		return func() error { return err }
	}
	switch st := m.states[key]; st {
	case "", journal.Pending, journal.Deferred, journal.Claimed:
		m.states[key] = journal.Sending
		return func() error { return nil }
	default:
		return func() error { return &journal.StateError{Campaign: "test", Key: key, State: st} }
	}
}

func (m *memRecorder) RecordThen(o journal.Outcome, done func(error)) {
	m.mu.Lock()
	if m.failAfter >= 0 && m.recorded >= m.failAfter {
		if m.err == nil {
			m.err = errors.New("write outcome: database or disk is full")
		}
		err := m.err
		m.mu.Unlock()
		done(err)
		return
	}
	m.recorded++
	m.states[o.Key] = o.State
	if m.providers == nil {
		m.providers = map[string]string{}
	}
	m.providers[o.Key] = o.Provider
	m.mu.Unlock()
	done(nil)
}

func (m *memRecorder) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *memRecorder) count(s journal.State) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, st := range m.states {
		if st == s {
			n++
		}
	}
	return n
}

// pipelineFixture is a campaign fixture with a renderer and n recipients.
type pipelineFixture struct {
	*fixture
	c          *Campaign
	renderer   *Renderer
	recipients []*Recipient
}

func newPipelineFixture(t *testing.T, n int, subject string) *pipelineFixture {
	t.Helper()
	f := newFixture(t, n, "  kind: file\n  dir: outbox", "")
	if subject != "" {
		data := strings.Replace(mustRead(t, f.path), `subject: "Hi {{ .first_name }}"`, "subject: '"+subject+"'", 1)
		f.write("campaign.yaml", data)
	}
	c := f.load()
	rd, err := NewRenderer(context.Background(), c, []string{"email", "first_name"}, []byte("0123456789abcdef0123456789abcdef"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pf := &pipelineFixture{fixture: f, c: c, renderer: rd}
	for i := 1; i <= n; i++ {
		email := fmt.Sprintf("r%04d@example.org", i)
		pf.recipients = append(pf.recipients, &Recipient{Line: i + 1, Email: email, Key: email,
			Fields: []string{email, fmt.Sprintf("Name%d", i)}})
	}
	return pf
}

func (pf *pipelineFixture) pipeline(prov providers.Provider, rec Recorder, workers int) *Pipeline {
	return &Pipeline{Provider: prov, Renderer: pf.renderer, Journal: rec,
		Workers: workers, Retry: pf.c.Retry, Counters: &Counters{}}
}

func (pf *pipelineFixture) feed(fn func(*Recipient) error) error {
	for _, rc := range pf.recipients {
		if err := fn(rc); err != nil {
			return err
		}
	}
	return nil
}

// testRun is a run of the fixture's campaign whose Close ends it.
type testRun struct{ journal.Run }

func (r testRun) Close() error { return r.End(context.Background(), nil) }

// openWriter opens the fixture's store and begins a run of its campaign that has loaded
// and claimed the fixture's recipients (those it may send), as a run's feed would.
func (pf *pipelineFixture) openWriter(t *testing.T) (journal.Store, testRun) {
	t.Helper()
	ctx := context.Background()
	st, err := journal.Open(ctx, pf.store(), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := st.BeginRun(ctx, journal.RunSpec{Campaign: pf.c.Name})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Load(ctx, &journal.ListInfo{}, func(add func(journal.Item) error) error {
		for _, rc := range pf.recipients {
			if err := add(journal.Item{Key: rc.Key, Email: rc.Email, Line: rc.Line, Fields: rc.Fields}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Claim(ctx, len(pf.recipients)); err != nil {
		t.Fatal(err)
	}
	return st, testRun{r}
}

// An outcome the store could not record is never counted sent: it counts as unknown,
// and the run stops with the store's error (issue 13 item 5: disk full mid-run).
func TestPipelineCountsOnlyWhatTheStoreRecorded(t *testing.T) {
	pf := newPipelineFixture(t, 40, "")
	rec := newMemRecorder(7)
	prov := &fakeProvider{}
	pl := pf.pipeline(prov, rec, 4)
	err := pl.Run(t.Context(), -1, pf.feed)
	var se *StopError
	if !errors.As(err, &se) || se.Reason != StopStore || !strings.Contains(err.Error(), "disk is full") {
		t.Fatalf("Run = %v, want a store stop naming the store's error", err)
	}
	recorded := rec.count(journal.Sent)
	if got := int(pl.Counters.Sent.Load()); got != recorded {
		t.Errorf("counted %d sent, the store recorded %d", got, recorded)
	}
	handed := int(prov.calls.Load())
	if got := int(pl.Counters.Sent.Load() + pl.Counters.Unknown.Load()); got != handed {
		t.Errorf("sent %d + unknown %d = %d, want the %d messages handed over",
			pl.Counters.Sent.Load(), pl.Counters.Unknown.Load(), got, handed)
	}
	if handed >= 40 {
		t.Errorf("%d messages handed over: the run did not stop when the store failed", handed)
	}
}

// A template that fails for one recipient at send time leaves that recipient pending,
// names its line, and a later run with the template fixed sends it (issue 13 item 2).
func TestPipelineRenderErrorLeavesRecipientPending(t *testing.T) {
	pf := newPipelineFixture(t, 5, `{{ printf "%c" (index .first_name 0) }} news`)
	pf.recipients[2].Fields[1] = "" // line 4: an empty first_name
	_, w := pf.openWriter(t)
	prov := &fakeProvider{}
	pl := pf.pipeline(prov, w, 2)
	err := pl.Run(t.Context(), -1, pf.feed)
	if cerr := w.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	var re *RenderErrors
	if !errors.As(err, &re) || re.N != 1 || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("Run = %v, want a RenderErrors naming line 4", err)
	}
	if pl.Counters.Sent.Load() != 4 || pl.Counters.Failed.Load() != 0 {
		t.Errorf("sent %d failed %d, want 4 and 0", pl.Counters.Sent.Load(), pl.Counters.Failed.Load())
	}
	c := pf.counts()
	if c[journal.Failed] != 0 || c[journal.Sent] != 4 || c[journal.Pending] != 1 {
		t.Fatalf("journal %v, want 4 sent and the unrendered one pending", c)
	}

	// The template fixed (the row gets a name): the next run sends it.
	pf.recipients[2].Fields[1] = "Ann"
	_, w = pf.openWriter(t)
	pl = pf.pipeline(prov, w, 2)
	if err := pl.Run(t.Context(), -1, pf.feed); err != nil {
		t.Fatalf("second run: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if pl.Counters.Sent.Load() != 1 || pl.Counters.AlreadyDone.Load() != 4 {
		t.Errorf("second run: sent %d already done %d, want 1 and 4", pl.Counters.Sent.Load(), pl.Counters.AlreadyDone.Load())
	}
	if c := pf.counts(); c[journal.Sent] != 5 {
		t.Fatalf("journal after the fix: %v, want 5 sent", c)
	}
}

// The same permanent answer to everyone is the campaign's fault: the run stops within
// ten recipients, nobody is failed, everyone stays pending (issue 14 item 1, backstop).
func TestPipelineIdenticalPermanentAnswersStopTheRun(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			pf := newPipelineFixture(t, 60, "")
			st, w := pf.openWriter(t)
			prov := &fakeProvider{answer: func(*providers.Message) error {
				return &providers.Error{Provider: "fake", Kind: providers.Permanent, Code: 400,
					Enhanced: "weird_error", Message: "something herald does not know about", Bounce: true}
			}}
			pl := pf.pipeline(prov, w, workers)
			err := pl.Run(t.Context(), -1, pf.feed)
			if cerr := w.Close(); cerr != nil {
				t.Fatal(cerr)
			}
			var se *StopError
			if !errors.As(err, &se) || se.Reason != StopFailing {
				t.Fatalf("Run = %v, want a stop \"failing\"", err)
			}
			if n := prov.calls.Load(); n < failingAfter || n > int64(failingAfter+workers-1) {
				t.Errorf("%d messages handed over, want %d (plus at most the other workers' in flight)", n, failingAfter)
			}
			if f := pl.Counters.Failed.Load(); f != 0 {
				t.Errorf("summary counts %d failed, want 0", f)
			}
			c := pf.counts()
			if c[journal.Failed] != 0 || c[journal.Sending] != 0 || c[journal.Sent] != 0 {
				t.Fatalf("journal %v, want nobody failed", c)
			}
			supp, err := st.Suppressed(t.Context(), []string{pf.recipients[0].Key, pf.recipients[1].Key})
			if err != nil {
				t.Fatal(err)
			}
			if len(supp) != 0 {
				t.Errorf("suppressed %v by a campaign-wide answer", supp)
			}
		})
	}
}

// Permanent answers that name the recipient are per-recipient: no stop.
func TestPipelineDifferentPermanentAnswersDoNotStop(t *testing.T) {
	pf := newPipelineFixture(t, 30, "")
	prov := &fakeProvider{answer: func(m *providers.Message) error {
		return &providers.Error{Provider: "fake", Kind: providers.Permanent, Code: 550, Enhanced: "5.1.1",
			Message: "<" + m.To + ">: no such user"}
	}}
	rec := newMemRecorder(-1)
	pl := pf.pipeline(prov, rec, 4)
	if err := pl.Run(t.Context(), -1, pf.feed); err != nil {
		t.Fatalf("Run = %v, want no stop", err)
	}
	if f := pl.Counters.Failed.Load(); f != 30 {
		t.Errorf("failed %d, want 30", f)
	}
}

func TestStreak(t *testing.T) {
	same := &providers.Error{Provider: "p", Kind: providers.Permanent, Code: 400, Message: "from not verified"}
	other := &providers.Error{Provider: "p", Kind: providers.Permanent, Code: 400, Message: "to is invalid"}
	rc := func(i int) *Recipient { return &Recipient{Line: i} }
	var s streak
	for i := 0; i < failingAfter-1; i++ {
		if v, _ := s.judge(rc(i), same); v != recordFailed {
			t.Fatalf("answer %d: verdict %d, want recordFailed", i, v)
		}
	}
	s.success() // a delivery in between: the streak starts again
	for i := 0; i < failingAfter-1; i++ {
		s.judge(rc(i), same)
	}
	s.judge(rc(99), other) // a different answer too
	for i := 0; i < failingAfter-1; i++ {
		if v, _ := s.judge(rc(i), same); v != recordFailed {
			t.Fatalf("after a different answer, answer %d: verdict %d", i, v)
		}
	}
	v, reopen := s.judge(rc(100), same)
	if v != releaseAndTrip || len(reopen) != failingAfter-1 {
		t.Fatalf("tenth identical answer: verdict %d, %d to reopen; want releaseAndTrip and %d", v, len(reopen), failingAfter-1)
	}
	if v, _ := s.judge(rc(101), same); v != release {
		t.Fatalf("after the trip, the same answer: verdict %d, want release", v)
	}
	if v, _ := s.judge(rc(102), other); v != recordFailed {
		t.Fatalf("after the trip, another answer: verdict %d, want recordFailed", v)
	}
}
