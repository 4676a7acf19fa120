package campaign

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// halfGmail gives the fixture's recipients a list that is half gmail.com and
// googlemail.com (one group), half example.org.
func halfGmail(pf *pipelineFixture) {
	for i, rc := range pf.recipients {
		local := fmt.Sprintf("r%04d", i+1)
		switch i % 4 {
		case 0:
			rc.Email = local + "@gmail.com"
		case 2:
			rc.Email = local + "@GoogleMail.com"
		default:
			rc.Email = local + "@example.org"
		}
		rc.Key, rc.Fields[0] = strings.ToLower(rc.Email), rc.Email
	}
}

func isGmail(to string) bool {
	to = strings.ToLower(to)
	return strings.HasSuffix(to, "@gmail.com") || strings.HasSuffix(to, "@googlemail.com")
}

// maxInASecond is the most times within any closed one-second window.
func maxInASecond(ts []time.Time) int {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	most := 0
	for i := range ts {
		n := 0
		for j := i; j < len(ts) && ts[j].Sub(ts[i]) <= time.Second; j++ {
			n++
		}
		most = max(most, n)
	}
	return most
}

func gmailLimit(t *testing.T, rate string, conns int) []DomainLimit {
	t.Helper()
	r, err := ParseRate(rate)
	if err != nil {
		t.Fatal(err)
	}
	return []DomainLimit{{Key: "gmail.com", Rate: r, Connections: conns}}
}

// Issue 9: gmail.com (with googlemail.com) at 10/s, the campaign at 500/s, a list half
// gmail: the others finish at their own speed, and gmail never gets more than 10 in any
// one-second window. In a synctest bubble the clock is exact.
func TestDomainPaceCeilingWithoutHeadOfLineBlocking(t *testing.T) {
	pf := newPipelineFixture(t, 400, "")
	halfGmail(pf)
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var gmail, others []time.Time
		prov := &fakeProvider{answer: func(m *providers.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if isGmail(m.To) {
				gmail = append(gmail, time.Now())
			} else {
				others = append(others, time.Now())
			}
			return nil
		}}
		rec := newMemRecorder(-1)
		p := pf.pipeline(prov, rec, 8)
		p.Pacer = NewPacer(500)
		p.Domains = gmailLimit(t, "10/s", 4)
		if err := p.Run(t.Context(), -1, pf.feed); err != nil {
			t.Fatal(err)
		}
		if got := rec.count(journal.Sent); got != 400 {
			t.Fatalf("%d sent, want 400", got)
		}
		if len(gmail) != 200 || len(others) != 200 {
			t.Fatalf("%d gmail, %d others", len(gmail), len(others))
		}
		if n := maxInASecond(gmail); n > 10 {
			t.Fatalf("%d gmail messages within one second; the ceiling is 10/s", n)
		}
		sort.Slice(others, func(i, j int) bool { return others[i].Before(others[j]) })
		// 200 at 500/s: under half a second; a head-of-line block would hold them
		// behind gmail's 20 seconds.
		if d := others[len(others)-1].Sub(start); d > 2*time.Second {
			t.Fatalf("the non-gmail recipients took %s", d)
		}
		if d := gmail[len(gmail)-1].Sub(start); d < 19*time.Second {
			t.Fatalf("200 gmail messages at 10/s took %s", d)
		}
	})
}

// A throttling answer from one domain's servers slows that domain alone.
func TestDomainThrottlingSlowsThatDomainOnly(t *testing.T) {
	pf := newPipelineFixture(t, 200, "")
	halfGmail(pf)
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var gmailCalls int
		var lastOther time.Time
		prov := &fakeProvider{answer: func(m *providers.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if isGmail(m.To) {
				gmailCalls++
				if gmailCalls <= 3 {
					return &providers.Error{Provider: "fake", Kind: providers.Temporary, Code: 421,
						Enhanced: "4.7.28", Message: "too many messages from your IP", SlowDown: true}
				}
				return nil
			}
			lastOther = time.Now()
			return nil
		}}
		rec := newMemRecorder(-1)
		p := pf.pipeline(prov, rec, 8)
		p.Pacer = NewPacer(200)
		p.Domains = gmailLimit(t, "20/s", 2)
		var w warnings
		p.Warnf = w.warnf
		var campaignRate float64
		go func() {
			time.Sleep(500 * time.Millisecond)
			campaignRate = p.Pacer.Rate()
		}()
		if err := p.Run(t.Context(), -1, pf.feed); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := rec.count(journal.Sent); got != 200 {
			t.Fatalf("%d sent, want 200", got)
		}
		if campaignRate != 200 {
			t.Fatalf("after gmail's 421 the campaign is at %v/s, want 200", campaignRate)
		}
		if n, all := w.count("gmail.com+googlemail.com: fake is throttling: rate lowered to 10/s"), w.count("is throttling"); n != 1 || all != 1 {
			t.Fatalf("want one cut of gmail's rate and no other: warnings %q", w.list)
		}
		if d := lastOther.Sub(start); d > 2*time.Second {
			t.Fatalf("the others took %s after gmail's throttling", d)
		}
	})
}

func TestParseDomains(t *testing.T) {
	good, err := parseDomains(map[string]domainSpec{"GMail.com": {Rate: "20/s", Connections: 4}, "yahoo.*": {Rate: "5/s"}})
	if err != nil || len(good) != 2 || good[0].Key != "gmail.com" || good[0].Rate.PerSecond != 20 || good[1].Key != "yahoo.*" {
		t.Fatalf("parseDomains = %+v, %v", good, err)
	}
	for _, tc := range []struct {
		in   map[string]domainSpec
		want string
	}{
		{map[string]domainSpec{"gmail.com": {}}, "rate: required"},
		{map[string]domainSpec{"gmail.com": {Rate: "fast"}}, "N/s"},
		{map[string]domainSpec{"gmail.com": {Rate: "1/s", Connections: -1}}, "connections"},
		{map[string]domainSpec{"gmail": {Rate: "1/s"}}, "not a domain"},
		{map[string]domainSpec{"*.com": {Rate: "1/s"}}, "not a domain"},
		{map[string]domainSpec{"gmail.com": {Rate: "1/s"}, "googlemail.com": {Rate: "2/s"}}, "same mailbox provider"},
	} {
		if _, err := parseDomains(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseDomains(%v) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
	d := newDomainPaces(good, 8, nil)
	for _, tc := range []struct {
		email string
		want  string
	}{
		{"a@gmail.com", "gmail.com"}, {"a@GOOGLEMAIL.com", "gmail.com"}, {"a@yahoo.co.uk", "yahoo.*"},
		{"a@yahoo.com", "yahoo.*"}, {"a@notyahoo.com", ""}, {"a@example.org", ""}, {"a@hotmail.com", ""},
	} {
		got := ""
		if g := d.gate(tc.email); g != nil {
			got = g.limit.Key
		}
		if got != tc.want {
			t.Errorf("gate(%s) = %q, want %q", tc.email, got, tc.want)
		}
	}
	// Two live runs of the campaign share a domain's rate as they share the campaign's.
	d.share(2)
	if c := d.gate("a@gmail.com").pacer.Ceiling(); c != 10 {
		t.Errorf("gmail's ceiling with two runs: %v, want 10", c)
	}
}

// End to end through the campaign file and an SMTP relay: gmail.com at 10/s, the rest
// at 500/s. The bounds are lenient (a busy machine): the exact ceiling is checked above.
func TestDomainPaceEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("sends for about two seconds")
	}
	var mu sync.Mutex
	var gmail, others []time.Time
	srv := smtptest.Start(t, smtptest.Options{Data: func(m smtptest.Message) *gosmtp.SMTPError {
		mu.Lock()
		defer mu.Unlock()
		if isGmail(m.To[0]) {
			gmail = append(gmail, time.Now())
		} else {
			others = append(others, time.Now())
		}
		return nil
	}})
	f := newFixture(t, 0, smtpBlock(srv), "domains: {gmail.com: {rate: 10/s, connections: 2}}\n")
	var list strings.Builder
	list.WriteString("email,first_name\n")
	for i := 1; i <= 60; i++ {
		dom := "example.org"
		if i%2 == 0 {
			dom = "gmail.com"
		}
		fmt.Fprintf(&list, "r%04d@%s,Name%d\n", i, dom, i)
	}
	f.write("subscribers.csv", list.String())
	f.write("campaign.yaml", strings.Replace(mustRead(t, f.path), `rate: "10000/s"`, `rate: "500/s"`, 1))
	sum, err := f.send(-1, SendOptions{Workers: 8})
	if err != nil || sum.Sent != 60 {
		t.Fatalf("send: %v %s", err, sum.JSON())
	}
	sort.Slice(gmail, func(i, j int) bool { return gmail[i].Before(gmail[j]) })
	sort.Slice(others, func(i, j int) bool { return others[i].Before(others[j]) })
	if span := gmail[len(gmail)-1].Sub(gmail[0]); span < 2500*time.Millisecond {
		t.Fatalf("30 gmail messages at 10/s arrived over %s", span)
	}
	if !others[len(others)-1].Before(gmail[len(gmail)-1]) {
		t.Fatalf("the last non-gmail message arrived after the last gmail one: the others waited for gmail")
	}
	if n := maxInASecond(gmail); n > 12 {
		t.Fatalf("%d gmail messages within one second at 10/s", n)
	}
}

func TestExplainSending(t *testing.T) {
	f := newFixture(t, 1, "  kind: file\n  dir: outbox", `domains:
  gmail.com: {rate: "20/s", connections: 4}
  example.org: {rate: "5/s"}
fallback:
  kind: file
  dir: outbox2
`)
	lines := f.load().ExplainSending()
	want := []string{
		`domains: example.org at up to 5/s (half the workers), beneath the campaign's 10000/s`,
		`domains: gmail.com, googlemail.com at up to 20/s (4 at once), beneath the campaign's 10000/s`,
		`fallback: file takes over when file fails for the whole run (fatal error or unreachable); a recipient is still sent once`,
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("ExplainSending =\n%q\nwant\n%q", lines, want)
	}
	if lines := newFixture(t, 1, "  kind: file\n  dir: outbox", "").load().ExplainSending(); len(lines) != 0 {
		t.Fatalf("no policy: %q", lines)
	}
}
