package campaign

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// namedProvider is a fakeProvider with a name.
type namedProvider struct {
	fakeProvider
	name string
}

func (p *namedProvider) Name() string { return p.name }

// got counts the messages each address received through a provider.
type got struct {
	mu sync.Mutex
	to map[string]int
}

func (g *got) add(to string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.to == nil {
		g.to = map[string]int{}
	}
	g.to[to]++
}

func (g *got) n() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.to)
}

// Issue 9: the primary answers fatally after 100 messages; the rest go through the
// fallback, nobody twice, and the recipient whose message was refused is sent through
// the fallback under the same claim.
func TestFallbackAfterFatal(t *testing.T) {
	pf := newPipelineFixture(t, 300, "")
	var viaPrimary, viaFallback got
	var calls atomic.Int64
	primary := &namedProvider{name: "primary", fakeProvider: fakeProvider{answer: func(m *providers.Message) error {
		if calls.Add(1) > 100 {
			return &providers.Error{Provider: "primary", Kind: providers.Fatal, Code: 535, Enhanced: "5.7.8", Message: "authentication failed"}
		}
		viaPrimary.add(m.To)
		return nil
	}}}
	fallback := &namedProvider{name: "fallback", fakeProvider: fakeProvider{answer: func(m *providers.Message) error {
		viaFallback.add(m.To)
		return nil
	}}}
	var opened atomic.Int64
	rec := newMemRecorder(-1)
	p := pf.pipeline(primary, rec, 8)
	p.Fallback = func(context.Context) (providers.Provider, error) {
		opened.Add(1)
		return fallback, nil
	}
	var w warnings
	p.Warnf = w.warnf
	if err := p.Run(t.Context(), -1, pf.feed); err != nil {
		t.Fatalf("Run = %v, want the run to go on through the fallback", err)
	}
	if got := rec.count(journal.Sent); got != 300 {
		t.Fatalf("%d sent, want 300", got)
	}
	if viaPrimary.n() != 100 || viaFallback.n() != 200 {
		t.Fatalf("%d through the primary, %d through the fallback; want 100 and 200", viaPrimary.n(), viaFallback.n())
	}
	for to := range viaFallback.to {
		if viaPrimary.to[to] > 0 || viaFallback.to[to] != 1 {
			t.Fatalf("%s received %d + %d messages", to, viaPrimary.to[to], viaFallback.to[to])
		}
	}
	// Each recipient is recorded with the provider that took it.
	for _, r := range pf.recipients {
		want := "fallback"
		if viaPrimary.to[r.Email] > 0 {
			want = "primary"
		}
		if got := rec.providers[r.Key]; got != want {
			t.Fatalf("%s recorded with provider %q, want %q", r.Key, got, want)
		}
	}
	if opened.Load() != 1 || w.count("goes on through the fallback") != 1 {
		t.Fatalf("fallback opened %d times; warnings %q", opened.Load(), w.list)
	}
	if n := p.Counters.ViaFallback.Load(); n != 200 {
		t.Fatalf("ViaFallback %d, want 200", n)
	}
}

// A recipient whose hand-off is unknown is not resent through the fallback, and a
// permanent failure does not fall back either.
func TestFallbackLeavesUnknownAndPermanentAlone(t *testing.T) {
	pf := newPipelineFixture(t, 50, "")
	unknownTo, failedTo := pf.recipients[3].Email, pf.recipients[4].Email
	var viaFallback got
	var calls atomic.Int64
	primary := &namedProvider{name: "primary", fakeProvider: fakeProvider{answer: func(m *providers.Message) error {
		switch {
		case m.To == unknownTo:
			return &providers.Error{Provider: "primary", Kind: providers.Unknown, Connection: true, Message: "connection lost after the message was sent"}
		case m.To == failedTo:
			return &providers.Error{Provider: "primary", Kind: providers.Permanent, Code: 550, Enhanced: "5.1.1", Message: "no such user"}
		case calls.Add(1) > 10:
			return &providers.Error{Provider: "primary", Kind: providers.Fatal, Code: 535, Message: "authentication failed"}
		}
		return nil
	}}}
	fallback := &namedProvider{name: "fallback", fakeProvider: fakeProvider{answer: func(m *providers.Message) error {
		viaFallback.add(m.To)
		return nil
	}}}
	rec := newMemRecorder(-1)
	p := pf.pipeline(primary, rec, 1)
	p.Fallback = func(context.Context) (providers.Provider, error) { return fallback, nil }
	if err := p.Run(t.Context(), -1, pf.feed); err != nil {
		t.Fatal(err)
	}
	if viaFallback.to[unknownTo] != 0 || viaFallback.to[failedTo] != 0 {
		t.Fatalf("resent through the fallback: unknown %d, failed %d", viaFallback.to[unknownTo], viaFallback.to[failedTo])
	}
	if rec.count(journal.Unknown) != 1 || rec.count(journal.Failed) != 1 || rec.count(journal.Sent) != 48 {
		t.Fatalf("unknown %d failed %d sent %d; want 1, 1, 48", rec.count(journal.Unknown), rec.count(journal.Failed), rec.count(journal.Sent))
	}
}

// fallbackBlock is a `fallback:` block for an SMTP relay.
func fallbackBlock(srv *smtptest.Server) string {
	return fmt.Sprintf("fallback:\n  kind: smtp\n  host: %s\n  port: %d\n  tls: none\n  timeout: 5s\n", srv.Host(), srv.Port())
}

// End to end: the primary relay answers 535 to MAIL after 100 messages; the rest go
// through the fallback relay, each recipient once.
func TestFallbackEndToEndAfter535(t *testing.T) {
	var mails atomic.Int64
	primary := smtptest.Start(t, smtptest.Options{Mail: func(string, int) *gosmtp.SMTPError {
		if mails.Add(1) > 100 {
			return &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8}, Message: "authentication credentials invalid"}
		}
		return nil
	}})
	fb := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, 300, smtpBlock(primary), fallbackBlock(fb))
	sum, err := f.send(-1, SendOptions{})
	if err != nil || sum.Sent != 300 || sum.FallbackSent != 200 {
		t.Fatalf("send: %v %s; want 300 sent, 200 through the fallback", err, sum.JSON())
	}
	checkAddsUp(t, sum)
	p, q := received(primary), received(fb)
	if len(p) != 100 || len(q) != 200 {
		t.Fatalf("%d at the primary, %d at the fallback", len(p), len(q))
	}
	for to, n := range q {
		if n != 1 || p[to] != 0 {
			t.Fatalf("%s received %d + %d", to, p[to], n)
		}
	}
	if c := f.counts(); c[journal.Sent] != 300 {
		t.Fatalf("journal %v", c)
	}
	// Both blocks are SMTP relays: every row is recorded with provider smtp.
	st, err := journal.Open(t.Context(), f.store(), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.EachRow(t.Context(), "test-campaign", nil, func(r journal.Row) error {
		if r.Provider != "smtp" {
			return fmt.Errorf("%s recorded with provider %q, want smtp", r.Email, r.Provider)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// End to end: the primary is unreachable from the start (nothing listens): everything
// goes through the fallback.
func TestFallbackEndToEndPrimaryUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close() // nothing listens there now
	fb := smtptest.Start(t, smtptest.Options{})
	block := fmt.Sprintf("  kind: smtp\n  host: 127.0.0.1\n  port: %d\n  tls: none\n  timeout: 5s\n", addr.Port)
	f := newFixture(t, 50, block, fallbackBlock(fb))
	sum, err := f.send(-1, SendOptions{})
	if err != nil || sum.Sent != 50 || sum.FallbackSent != 50 {
		t.Fatalf("send: %v %s; want all 50 through the fallback", err, sum.JSON())
	}
	for to, n := range received(fb) {
		if n != 1 {
			t.Fatalf("%s received %d", to, n)
		}
	}
	if len(received(fb)) != 50 {
		t.Fatalf("%d at the fallback", len(received(fb)))
	}
}

func TestFallbackBlockIsChecked(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, 1, smtpBlock(srv), "fallback:\n  host: x\n")
	if _, err := Load(f.path, testNow()); err == nil || !strings.Contains(err.Error(), "fallback.kind: required") {
		t.Fatalf("Load = %v", err)
	}
	f = newFixture(t, 1, smtpBlock(srv), "fallback:\n  kind: smtp\n  hots: x\n")
	if _, err := f.send(-1, SendOptions{}); err == nil || !strings.Contains(err.Error(), "fallback") {
		t.Fatalf("send with a bad fallback block = %v", err)
	}
	if len(srv.Messages()) != 0 {
		t.Fatalf("sent with a bad fallback block")
	}
}

// A primary that cannot be opened (a provider error) gives way to the fallback from the
// start.
func TestFallbackWhenThePrimaryCannotOpen(t *testing.T) {
	fb := smtptest.Start(t, smtptest.Options{})
	f := newFixture(t, 20, "  kind: broken\n", fallbackBlock(fb))
	env := testEnv(nil)
	reg := providers.Registry{}
	for k, v := range env.Registry {
		reg[k] = v
	}
	reg["broken"] = providers.Registration{Kind: "broken",
		Check: func(providers.Spec, bool) error { return nil },
		Open: func(context.Context, providers.Spec) (providers.Provider, error) {
			return nil, &providers.Error{Provider: "broken", Kind: providers.Fatal, Code: 401, Message: "account suspended"}
		}}
	env.Registry = reg
	var w warnings
	env.Warnf = w.warnf
	sum, err := Send(t.Context(), f.load(), SendOptions{Store: f.store(), Limit: -1}, env)
	if err != nil || sum.Sent != 20 || sum.FallbackSent != 20 || len(received(fb)) != 20 {
		t.Fatalf("send: %v %s; want all 20 through the fallback", err, sum.JSON())
	}
	if w.count("cannot be opened") != 1 {
		t.Fatalf("warnings %q", w.list)
	}
}
