package campaign

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// testClock is a settable clock for the policy's decisions and the store's timestamps.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// sendAt runs the campaign with the clock.
func (f *fixture) sendAt(clock *testClock, o SendOptions) (*Summary, error) {
	f.t.Helper()
	if o.Store == "" {
		o.Store = f.store()
	}
	if o.Limit == 0 {
		o.Limit = -1
	}
	env := testEnv(nil)
	env.Now = clock.Now
	c, err := Load(f.path, clock.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return Send(context.Background(), c, o, env)
}

// edit replaces text in the campaign file.
func (f *fixture) edit(old, new string) {
	f.t.Helper()
	b, err := os.ReadFile(f.path)
	if err != nil || !strings.Contains(string(b), old) {
		f.t.Fatalf("campaign file without %q (%v)", old, err)
	}
	f.write("campaign.yaml", strings.Replace(string(b), old, new, 1))
}

// rename gives the fixture's campaign another name.
func (f *fixture) rename(name string) {
	f.t.Helper()
	b, err := os.ReadFile(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	f.write("campaign.yaml", strings.Replace(string(b), "name: test-campaign", "name: "+name, 1))
}

func addsUp(t *testing.T, s *Summary) {
	t.Helper()
	sum := s.Sent + s.Failed + s.Deferred + s.Unknown + s.Expired + s.Waiting + s.Pending +
		s.Skipped.Invalid + s.Skipped.Duplicate + s.Skipped.Suppressed + s.Skipped.AlreadyDone
	if sum != s.Total {
		t.Errorf("summary does not add up: %d ≠ total %d: %s", sum, s.Total, s.JSON())
	}
}

func outbox(t *testing.T, dir string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	return len(files)
}

func paris(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestPolicyWindowDays(t *testing.T) {
	for _, tc := range []struct {
		days string
		want string // Sun…Sat
	}{
		{"Mon-Fri", ".XXXXX."},
		{"Wed-Sun", "X..XXXX"},
		{"Mon,Wed,Fri", ".X.X.X."},
		{"Fri-Mon", "XX...XX"},
		{"sat", "......X"},
	} {
		w, err := parseWindow(tc.days, "09:00-17:00")
		if err != nil {
			t.Fatalf("%s: %v", tc.days, err)
		}
		got := ""
		for _, on := range w.Days {
			got += map[bool]string{true: "X", false: "."}[on]
		}
		if got != tc.want {
			t.Errorf("days %s = %s, want %s", tc.days, got, tc.want)
		}
	}
	for _, bad := range [][2]string{{"Mon-Fry", ""}, {"", "9-17"}, {"", "09:00-09:00"}, {"", "24:00-06:00"}, {"", "09:60-10:00"}, {"", ""}} {
		if _, err := parseWindow(bad[0], bad[1]); err == nil {
			t.Errorf("window %q %q accepted", bad[0], bad[1])
		}
	}
}

func TestPolicyWindowNext(t *testing.T) {
	loc := paris(t)
	at := func(d, h, m int) time.Time { return time.Date(2026, 12, d, h, m, 0, 0, loc) } // 2026-12-07 is a Monday
	office, _ := parseWindow("Mon-Fri", "09:00-17:00")
	night, _ := parseWindow("Mon-Fri", "22:00-06:00")
	for _, tc := range []struct {
		w        *Window
		now, out time.Time
	}{
		{office, at(7, 10, 0), at(7, 10, 0)},  // open
		{office, at(7, 8, 59), at(7, 9, 0)},   // before
		{office, at(7, 17, 0), at(8, 9, 0)},   // closed at the end
		{office, at(11, 18, 0), at(14, 9, 0)}, // Friday evening → Monday
		{office, at(12, 12, 0), at(14, 9, 0)}, // Saturday
		{night, at(7, 23, 0), at(7, 23, 0)},   // Monday night
		{night, at(8, 5, 59), at(8, 5, 59)},   // Monday's night, Tuesday morning
		{night, at(12, 3, 0), at(12, 3, 0)},   // Friday's night, Saturday morning
		{night, at(13, 3, 0), at(14, 22, 0)},  // Sunday morning: Saturday's night is not a window
		{night, at(7, 6, 0), at(7, 22, 0)},    // Monday morning: Sunday's night is not a window
		{night, at(9, 12, 0), at(9, 22, 0)},   // midday
		// Across the change to summer time (Sunday 2026-03-29): 09:00 is still 09:00.
		{office, time.Date(2026, 3, 28, 12, 0, 0, 0, loc), time.Date(2026, 3, 30, 9, 0, 0, 0, loc)},
		{night, time.Date(2026, 3, 27, 23, 0, 0, 0, loc), time.Date(2026, 3, 27, 23, 0, 0, 0, loc)},
	} {
		if got := tc.w.Next(tc.now, loc); !got.Equal(tc.out) {
			t.Errorf("%s at %s: next %s, want %s", tc.w, tc.now.Format(time.RFC3339), got.Format(time.RFC3339), tc.out.Format(time.RFC3339))
		}
	}
}

func TestPolicyParse(t *testing.T) {
	ramp, err := parseWarmupText(t, "{start: 500, growth: 1.5, max: 2000}")
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for d := 1; d <= 6; d++ {
		caps = append(caps, strconv.Itoa(ramp.Cap(d)))
	}
	if got := strings.Join(caps, ","); got != "500,750,1125,1687,2000,2000" {
		t.Errorf("ramp caps %s", got)
	}
	list, err := parseWarmupText(t, "[100, 300, 1000]")
	if err != nil || list.Cap(1) != 100 || list.Cap(3) != 1000 || list.Cap(30) != 1000 {
		t.Errorf("list caps: %v %+v", err, list)
	}
	for _, bad := range []string{"{start: 0}", "{start: 10, growth: 0.5}", "{start: 10, max: 5}", "[0]", "{begin: 3}", "fast"} {
		if _, err := parseWarmupText(t, bad); err == nil {
			t.Errorf("warmup %s accepted", bad)
		}
	}

	f := newFixture(t, 1, "  kind: file\n  dir: outbox\n", `timezone: Europe/Paris
window: {days: Mon-Fri, hours: "09:00-17:00"}
not_after: 48h
warmup: {start: 500, growth: 1.5, max: 200000}
pause_if: {bounce_rate: 5%, complaint_rate: 0.1%, min_sent: 500}
`)
	c := f.load()
	p := c.Policy
	if p.NotAfterFirst != 48*time.Hour || p.PauseIf.BounceRate != 0.05 || p.PauseIf.ComplaintRate != 0.001 || p.PauseIf.MinSent != 500 || p.Warmup.Start != 500 {
		t.Fatalf("policy %+v", p)
	}
	if lines := p.Explain(); len(lines) != 4 {
		t.Fatalf("explain: %q", lines)
	}
	for _, bad := range []string{
		"not_after: tomorrow\n",
		"pause_if: {bounce_rate: 5}\n",
		"pause_if: {min_sent: 10}\n",
		"pause_if: {bounce_rate: 5%, min_sent: 0}\n",
		"recipient_timezone: tz\n",
		"window: {days: Mon-Fri, hours: 9-5}\n",
	} {
		g := newFixture(t, 1, "  kind: file\n  dir: outbox\n", bad)
		if _, err := Load(g.path, time.Now()); err == nil {
			t.Errorf("%q accepted", bad)
		} else if !isConfigErr(err) {
			t.Errorf("%q: %v is not a configuration error", bad, err)
		}
	}
}

func parseWarmupText(t *testing.T, text string) (*Warmup, error) {
	t.Helper()
	f := newFixture(t, 1, "  kind: file\n  dir: outbox\n", "warmup: "+text+"\n")
	c, err := Load(f.path, time.Now())
	if err != nil {
		return nil, err
	}
	return c.Policy.Warmup, nil
}

// TestNotAfterPastExpiresAll: a not_after in the past sends nothing and expires every
// recipient, exit 0 (no error), and says so.
func TestNotAfterPastExpiresAll(t *testing.T) {
	f := newFixture(t, 20, "  kind: file\n  dir: outbox\n", "not_after: \"2026-12-01T00:00:00Z\"\n")
	clock := newTestClock(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC))
	sum, err := f.sendAt(clock, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 0 || sum.Expired != 20 || sum.Pending != 0 || !strings.Contains(sum.Policy, "not_after") {
		t.Fatalf("summary %s, want 20 expired and a not_after line", sum.JSON())
	}
	addsUp(t, sum)
	if n := outbox(t, filepath.Join(f.dir, "outbox")); n != 0 {
		t.Fatalf("%d messages sent after not_after", n)
	}
	if c := f.counts(); c[journal.Expired] != 20 {
		t.Fatalf("store counts %v", c)
	}
	st, err := ReadStatus(context.Background(), f.load(), f.store(), false, testEnv(nil))
	if err != nil || st.Expired != 20 {
		t.Fatalf("status %+v, %v", st, err)
	}
	// Another run finds nothing to do and still counts them as expired.
	sum, err = f.sendAt(clock, SendOptions{})
	if err != nil || sum.Expired != 20 || sum.Sent != 0 {
		t.Fatalf("second run: %s, %v", sum.JSON(), err)
	}
	addsUp(t, sum)
}

// TestNotAfterDurationExpiresDeferred: not_after as a duration counts from the first
// send; once past, the pending and the deferred recipients (also those not yet due)
// expire.
func TestNotAfterDurationExpiresDeferred(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(rcpt string, attempt int) *gosmtp.SMTPError {
		if strings.HasPrefix(rcpt, "r0002@") {
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}})
	f := newFixture(t, 10, smtpBlock(srv), "not_after: 48h\n")
	f.edit("retry: {attempts: 3, backoff: 1ms, max_backoff: 5ms}", "retry: {attempts: 1, backoff: 1ms, max_backoff: 100h}")
	start := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	clock := newTestClock(start)
	sum, err := f.sendAt(clock, SendOptions{Limit: 4})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 3 || sum.Deferred != 1 {
		t.Fatalf("first run: %s", sum.JSON())
	}
	// Before the deadline a run sends (r0002 is not due yet).
	clock.Set(start.Add(47 * time.Hour))
	sum, err = f.sendAt(clock, SendOptions{Limit: 2})
	if err != nil || sum.Sent != 2 {
		t.Fatalf("run before the deadline: %s, %v", sum.JSON(), err)
	}
	clock.Set(start.Add(48*time.Hour + time.Second))
	before := srv.Accepted()
	sum, err = f.sendAt(clock, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Accepted() != before || sum.Sent != 0 || sum.Expired != 5 {
		t.Fatalf("after the deadline: %s (server got %d more)", sum.JSON(), srv.Accepted()-before)
	}
	addsUp(t, sum)
	if c := f.counts(); c[journal.Expired] != 5 || c[journal.Deferred] != 0 || c[journal.Sent] != 5 {
		t.Fatalf("store counts %v, want the deferred one expired too", c)
	}
}

// TestNotAfterDuringARun: the deadline passes while the run sends: it stops claiming
// and expires the rest.
func TestNotAfterDuringARun(t *testing.T) {
	f := newFixture(t, 300, "  kind: file\n  dir: outbox\n", "not_after: \"2026-12-02T10:00:00Z\"\n")
	clock := newTestClock(time.Date(2026, 12, 2, 9, 59, 0, 0, time.UTC))
	var n atomic.Int64
	env := testEnv(nil)
	env.Now = func() time.Time {
		// Every call moves the clock on a little: the deadline passes mid-run.
		return clock.Now().Add(time.Duration(n.Add(1)) * 100 * time.Millisecond)
	}
	sum, err := Send(context.Background(), f.load(), SendOptions{Store: f.store(), Limit: -1, Workers: 1}, env)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent == 0 || sum.Expired == 0 || sum.Sent+sum.Expired != 300 {
		t.Fatalf("summary %s: want some sent, the rest expired", sum.JSON())
	}
	addsUp(t, sum)
	if got := outbox(t, filepath.Join(f.dir, "outbox")); got != sum.Sent {
		t.Fatalf("outbox %d, sent %d", got, sum.Sent)
	}
}

// TestWindowClosedSendsNothing: outside the window nothing is sent, no error, the rest
// pending and the time the window opens; inside it, everything goes.
func TestWindowClosedSendsNothing(t *testing.T) {
	f := newFixture(t, 12, "  kind: file\n  dir: outbox\n", "timezone: Europe/Paris\nwindow: {days: Mon-Fri, hours: \"09:00-17:00\"}\n")
	loc := paris(t)
	clock := newTestClock(time.Date(2026, 12, 5, 11, 0, 0, 0, loc)) // Saturday
	sum, err := f.sendAt(clock, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 0 || sum.Pending != 12 || sum.NextAt != "2026-12-07T09:00:00+01:00" || !strings.Contains(sum.Policy, "outside the send window") {
		t.Fatalf("summary %s", sum.JSON())
	}
	addsUp(t, sum)
	if n := outbox(t, filepath.Join(f.dir, "outbox")); n != 0 {
		t.Fatalf("%d sent outside the window", n)
	}
	clock.Set(time.Date(2026, 12, 7, 9, 0, 0, 0, loc))
	sum, err = f.sendAt(clock, SendOptions{})
	if err != nil || sum.Sent != 12 || sum.Policy != "" {
		t.Fatalf("inside the window: %s, %v", sum.JSON(), err)
	}
}

// TestRecipientTimezonesSplitAList: recipients whose local window is closed stay
// pending while the others go.
func TestRecipientTimezonesSplitAList(t *testing.T) {
	f := newFixture(t, 1, "  kind: file\n  dir: outbox\n", "timezone: Europe/Paris\nwindow: {days: Mon-Fri, hours: \"09:00-17:00\"}\nrecipient_timezone: tz\n")
	var list strings.Builder
	list.WriteString("email,first_name,tz\n")
	zones := []string{"Asia/Tokyo", "America/New_York", "", "Not/AZone"}
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&list, "r%04d@example.org,N%d,%s\n", i, i, zones[i%4])
	}
	f.write("subscribers.csv", list.String())
	// Monday 10:00 in Tokyo = 02:00 in Paris = Sunday 20:00 in New York.
	clock := newTestClock(time.Date(2026, 12, 7, 10, 0, 0, 0, mustZone(t, "Asia/Tokyo")))
	sum, err := f.sendAt(clock, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 10 || sum.Pending != 30 {
		t.Fatalf("summary %s, want the 10 Tokyo recipients sent and 30 pending", sum.JSON())
	}
	addsUp(t, sum)
	// Paris opens first (09:00 Paris), before New York.
	if sum.NextAt != "2026-12-07T09:00:00+01:00" || !strings.Contains(sum.Policy, "30 recipient(s)") {
		t.Fatalf("summary %s: want the next window at Paris 09:00", sum.JSON())
	}
	if c := f.counts(); c[journal.Claimed] != 0 || c[journal.Pending] != 30 {
		t.Fatalf("store counts %v: held recipients are pending again", c)
	}
	// 10:00 in Paris: Paris and the bad zone (Paris time) go; New York is at 04:00.
	clock.Set(time.Date(2026, 12, 7, 10, 0, 0, 0, paris(t)))
	sum, err = f.sendAt(clock, SendOptions{})
	if err != nil || sum.Sent != 20 || sum.Pending != 10 {
		t.Fatalf("Paris morning: %s, %v", sum.JSON(), err)
	}
	bad, err := CheckZones(context.Background(), f.load(), func(w Warning) {
		if w.Line%4 != 1 || !strings.Contains(w.Reason, "Not/AZone") {
			t.Errorf("warning %+v", w)
		}
	})
	if err != nil || bad != 10 {
		t.Fatalf("CheckZones = %d, %v; want the 10 bad zones", bad, err)
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestWarmupTwoCampaignsOneStore: the day's cap holds for the two campaigns together,
// and the next day they go on under the next cap.
func TestWarmupTwoCampaignsOneStore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "shared.db")
	extra := "timezone: Europe/Paris\nwarmup: [10, 25]\n"
	a := newFixture(t, 15, "  kind: file\n  dir: outbox\n", extra)
	b := newFixture(t, 15, "  kind: file\n  dir: outbox\n", extra)
	b.rename("other-campaign")
	loc := paris(t)
	clock := newTestClock(time.Date(2026, 12, 7, 23, 0, 0, 0, loc))
	var plan Plan
	sa, err := a.sendAt(clock, SendOptions{Store: store, Confirm: func(p Plan) bool { plan = p; return true }})
	if err != nil {
		t.Fatal(err)
	}
	if plan.ToSend != 10 {
		t.Errorf("the plan says %d to send, want the 10 the warm-up allows", plan.ToSend)
	}
	sb, err := b.sendAt(clock, SendOptions{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if sa.Sent+sb.Sent != 10 || sa.Sent != 10 || sb.Pending != 15 {
		t.Fatalf("day 1: %s / %s, want 10 sent in total", sa.JSON(), sb.JSON())
	}
	addsUp(t, sa)
	addsUp(t, sb)
	if !strings.Contains(sb.Policy, "warm-up cap reached") || sb.NextAt != "2026-12-08T00:00:00+01:00" {
		t.Fatalf("day 1, second campaign: %s", sb.JSON())
	}
	if got := outbox(t, filepath.Join(a.dir, "outbox")) + outbox(t, filepath.Join(b.dir, "outbox")); got != 10 {
		t.Fatalf("%d messages on day 1, cap 10", got)
	}
	// Midnight in Paris: day 2, cap 25.
	clock.Set(time.Date(2026, 12, 8, 0, 0, 1, 0, loc))
	sb, err = b.sendAt(clock, SendOptions{Store: store})
	if err != nil || sb.Sent != 15 {
		t.Fatalf("day 2, second campaign: %s, %v", sb.JSON(), err)
	}
	sa, err = a.sendAt(clock, SendOptions{Store: store})
	if err != nil || sa.Sent != 5 {
		t.Fatalf("day 2, first campaign: %s, %v", sa.JSON(), err)
	}
	if got := outbox(t, filepath.Join(a.dir, "outbox")) + outbox(t, filepath.Join(b.dir, "outbox")); got != 30 {
		t.Fatalf("%d messages in all, want 30", got)
	}
}

// TestWarmupConcurrentCampaigns: two campaigns sending at once on one store share the
// day's cap without racing past it.
func TestWarmupConcurrentCampaigns(t *testing.T) {
	store := filepath.Join(t.TempDir(), "shared.db")
	extra := "warmup: [37]\n"
	a := newFixture(t, 60, "  kind: file\n  dir: outbox\n", extra)
	b := newFixture(t, 60, "  kind: file\n  dir: outbox\n", extra)
	b.rename("other-campaign")
	clock := newTestClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	var wg sync.WaitGroup
	sums := make([]*Summary, 2)
	errs := make([]error, 2)
	for i, f := range []*fixture{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[i], errs[i] = f.sendAt(clock, SendOptions{Store: store})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := outbox(t, filepath.Join(a.dir, "outbox")) + outbox(t, filepath.Join(b.dir, "outbox")); got != 37 || sums[0].Sent+sums[1].Sent != 37 {
		t.Fatalf("%d messages (%s / %s), cap 37", got, sums[0].JSON(), sums[1].JSON())
	}
}

// TestPauseOnBounceSpike: a relay that answers 550 5.1.1 to one recipient in ten stops
// the run once min_sent outcomes are in; later runs refuse until resumed.
func TestPauseOnBounceSpike(t *testing.T) {
	var bouncing atomic.Bool
	bouncing.Store(true)
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(rcpt string, attempt int) *gosmtp.SMTPError {
		n, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(rcpt, "@", 2)[0], "r"))
		if bouncing.Load() && n%10 == 0 {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	f := newFixture(t, 1000, smtpBlock(srv), "pause_if: {bounce_rate: 5%, min_sent: 50}\n")
	clock := newTestClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	sum, err := f.sendAt(clock, SendOptions{})
	var se *StopError
	if !errors.As(err, &se) || se.Reason != StopPaused {
		t.Fatalf("run = %v (%s), want a paused stop", err, sum.JSON())
	}
	if sum.Stopped != StopPaused || sum.Pause == nil || sum.Pause.Outcomes < 50 || sum.Pause.BounceRate <= 5 {
		t.Fatalf("summary %s: want stopped paused with the figures", sum.JSON())
	}
	// Outcomes count once committed: a few more than min_sent are out when it stops
	// (more on a busy machine), far fewer than the list.
	done := sum.Sent + sum.Failed
	if done < 50 || sum.Pending < 500 {
		t.Fatalf("summary %s: want a stop soon after 50 outcomes", sum.JSON())
	}
	addsUp(t, sum)
	ps := pauseState(t, f)
	if !ps.Paused || !strings.Contains(ps.Reason, "bounce rate") {
		t.Fatalf("store pause state %+v", ps)
	}
	// The next run refuses and sends nothing.
	before := srv.Accepted()
	sum, err = f.sendAt(clock, SendOptions{})
	if !errors.As(err, &se) || se.Reason != StopPaused || !strings.Contains(err.Error(), "--resume-paused") {
		t.Fatalf("run of a paused campaign = %v, want a refusal", err)
	}
	if srv.Accepted() != before || sum.Sent != 0 {
		t.Fatalf("a paused campaign sent: %s", sum.JSON())
	}
	addsUp(t, sum)
	// Resumed (the list cleaned, say): the count restarts and the rest goes.
	bouncing.Store(false)
	clock.Set(clock.Now().Add(time.Hour))
	sum, err = f.sendAt(clock, SendOptions{ResumePaused: true})
	if err != nil || sum.Pending != 0 || sum.Sent+sum.Failed+sum.Skipped.AlreadyDone+sum.Skipped.Suppressed != 1000 {
		t.Fatalf("resumed run: %s, %v", sum.JSON(), err)
	}
	if ps := pauseState(t, f); ps.Paused || !ps.ResumedAt.Equal(clock.Now()) {
		t.Fatalf("pause state after resume %+v", ps)
	}
}

// TestPauseCountsSinceResume: outcomes before the resume do not count again.
func TestPauseCountsSinceResume(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Rcpt: func(rcpt string, attempt int) *gosmtp.SMTPError {
		n, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(rcpt, "@", 2)[0], "r"))
		if n <= 35 && n%3 == 0 { // a third of the first 35 bounce
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	f := newFixture(t, 100, smtpBlock(srv), "pause_if: {bounce_rate: 10%, min_sent: 30}\n")
	clock := newTestClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	if _, err := f.sendAt(clock, SendOptions{Limit: 25}); err != nil {
		t.Fatal(err) // 25 outcomes: below min_sent
	}
	sum, err := f.sendAt(clock, SendOptions{Limit: 10})
	var se *StopError
	if !errors.As(err, &se) || se.Reason != StopPaused {
		t.Fatalf("second run = %v (%s): 11 bounces in 35 outcomes should pause", err, sum.JSON())
	}
	clock.Set(clock.Now().Add(time.Minute))
	sum, err = f.sendAt(clock, SendOptions{ResumePaused: true})
	if err != nil || sum.Pending != 0 {
		t.Fatalf("after resume the old bounces still count: %s, %v", sum.JSON(), err)
	}
}

func pauseState(t *testing.T, f *fixture) journal.Pause {
	t.Helper()
	st, err := journal.Open(context.Background(), f.store(), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ps, err := st.PauseState(context.Background(), "test-campaign")
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// TestPauseOnComplaintsRecordedElsewhere: complaints that reach the store during a run
// (a webhook, a complaint report) are read again and pause it.
func TestPauseOnComplaintsRecordedElsewhere(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 20, "  kind: file\n  dir: outbox\n", "pause_if: {complaint_rate: 10%, min_sent: 10}\n")
	clock := newTestClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	if sum, err := f.sendAt(clock, SendOptions{Limit: 10}); err != nil || sum.Sent != 10 {
		t.Fatalf("first run: %s, %v", sum.JSON(), err)
	}
	c := f.load()
	store, err := journal.Open(ctx, f.store(), journal.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	g, err := newGate(ctx, c, store, clock.Now, []string{"email", "first_name"}, false)
	if err != nil {
		t.Fatal(err)
	}
	g.counters = &Counters{}
	if err := g.check(ctx); err != nil {
		t.Fatalf("no complaints yet: %v", err)
	}
	for _, e := range []string{"r0001@example.org", "r0002@example.org"} {
		if _, err := store.(journal.Bouncer).RecordComplaint(ctx, c.Name, e, "abuse"); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.check(ctx); err != nil {
		t.Fatalf("complaints read again before %s: %v", refreshPause, err)
	}
	clock.Set(clock.Now().Add(refreshPause))
	err = g.check(ctx)
	var se *StopError
	if !errors.As(err, &se) || se.Reason != StopPaused || g.figures.Complaints != 2 || g.figures.Outcomes != 10 {
		t.Fatalf("check = %v, figures %+v: want a pause on 2 complaints in 10 outcomes", err, g.figures)
	}
	if ps, _ := store.PauseState(ctx, c.Name); !ps.Paused {
		t.Fatal("the pause is not in the store")
	}
}
