package campaign

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/heraldmail/herald/campaign/journal"
)

// PolicyFile holds the sending-policy keys of the campaign file that decide whether a
// run may send now: a send window, the recipients' time zones, an expiry, a warm-up
// schedule and an automatic pause.
type PolicyFile struct {
	Window *struct {
		Days  string `yaml:"days"`
		Hours string `yaml:"hours"`
	} `yaml:"window"`
	RecipientTimezone string    `yaml:"recipient_timezone"`
	NotAfter          string    `yaml:"not_after"`
	Warmup            yaml.Node `yaml:"warmup"`
	PauseIf           *struct {
		BounceRate    string `yaml:"bounce_rate"`
		ComplaintRate string `yaml:"complaint_rate"`
		MinSent       *int   `yaml:"min_sent"`
	} `yaml:"pause_if"`
}

// Policy is the checked sending policy of a campaign. The zero Policy allows every send.
type Policy struct {
	// Window is when messages may go (nil: any time).
	Window *Window
	// RecipientTimezone is the list column with each recipient's IANA time zone, for
	// Window ("" : the campaign's timezone for everyone).
	RecipientTimezone string
	// NotAfter is the time after which nothing is sent; NotAfterFirst, when NotAfter is
	// zero, the same as a duration after the campaign's first send.
	NotAfter      time.Time
	NotAfterFirst time.Duration
	// Warmup caps the sends per calendar day across the store (nil: no cap).
	Warmup *Warmup
	// PauseIf pauses the campaign on a bounce or complaint spike (nil: never).
	PauseIf *PauseIf
	// Location is the campaign's time zone (window, warm-up days, the times it prints).
	Location *time.Location
}

// Window is a weekly send window.
type Window struct {
	// Days are the weekdays a window starts on (indexed by time.Weekday).
	Days [7]bool
	// From and To are minutes after midnight; To ≤ From wraps past midnight (the
	// window belongs to the day it starts on).
	From, To int
	// DaysText and HoursText are the window as written, for messages.
	DaysText, HoursText string
}

// Warmup is a daily volume schedule.
type Warmup struct {
	// Caps are explicit per-day caps (the last one holds after the list), else Start,
	// Growth and Max describe the ramp: Start on day 1, ×Growth each day, at most Max
	// (0: no maximum).
	Caps   []int
	Start  int
	Growth float64
	Max    int
}

// PauseIf are the pause thresholds, as fractions (0: not checked).
type PauseIf struct {
	BounceRate, ComplaintRate float64
	// BounceText and ComplaintText are the rates as written.
	BounceText, ComplaintText string
	// MinSent is how many outcomes since the last resume are needed before a rate counts.
	MinSent int
}

// defaultMinSent is pause_if's min_sent when the file does not set it.
const defaultMinSent = 500

var weekdays = map[string]time.Weekday{"mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday, "sun": time.Sunday}

// parsePolicy checks the policy keys of f into c.Policy.
func (c *Campaign) parsePolicy(f *PolicyFile, bad func(key, format string, args ...any) error) error {
	p := &c.Policy
	p.Location = c.Location
	if f.Window != nil {
		w, err := parseWindow(f.Window.Days, f.Window.Hours)
		if err != nil {
			return bad("window", "%v", err)
		}
		p.Window = w
	}
	p.RecipientTimezone = strings.TrimSpace(f.RecipientTimezone)
	if p.RecipientTimezone != "" && p.Window == nil {
		return bad("recipient_timezone", "only used with window: (set the window the recipients' local time must be in)")
	}
	if s := strings.TrimSpace(f.NotAfter); s != "" {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			p.NotAfter = t
		} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
			p.NotAfterFirst = d
		} else {
			return bad("not_after", "%q is neither an RFC 3339 time (2026-12-24T00:00:00Z) nor a duration after the first send (48h)", s)
		}
	}
	if f.Warmup.Kind != 0 {
		w, err := parseWarmup(&f.Warmup)
		if err != nil {
			return bad("warmup", "%v", err)
		}
		p.Warmup = w
	}
	if f.PauseIf != nil {
		pi := &PauseIf{MinSent: defaultMinSent, BounceText: strings.TrimSpace(f.PauseIf.BounceRate),
			ComplaintText: strings.TrimSpace(f.PauseIf.ComplaintRate)}
		var err error
		if pi.BounceText != "" {
			if pi.BounceRate, err = parsePercent(pi.BounceText); err != nil {
				return bad("pause_if.bounce_rate", "%v", err)
			}
		}
		if pi.ComplaintText != "" {
			if pi.ComplaintRate, err = parsePercent(pi.ComplaintText); err != nil {
				return bad("pause_if.complaint_rate", "%v", err)
			}
		}
		if pi.BounceRate == 0 && pi.ComplaintRate == 0 {
			return bad("pause_if", "set bounce_rate or complaint_rate (e.g. {bounce_rate: 5%%, complaint_rate: 0.1%%})")
		}
		if f.PauseIf.MinSent != nil {
			if *f.PauseIf.MinSent < 1 {
				return bad("pause_if.min_sent", "%d: must be 1 or more", *f.PauseIf.MinSent)
			}
			pi.MinSent = *f.PauseIf.MinSent
		}
		p.PauseIf = pi
	}
	return nil
}

// parsePercent reads "5%" or "0.1%" as a fraction.
func parsePercent(s string) (float64, error) {
	n, ok := strings.CutSuffix(s, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
	if !ok || err != nil || math.IsNaN(v) || v <= 0 || v > 100 {
		return 0, fmt.Errorf("%q: write a percentage above 0 and at most 100, e.g. 5%%", s)
	}
	return v / 100, nil
}

func parseWindow(days, hours string) (*Window, error) {
	w := &Window{DaysText: strings.TrimSpace(days), HoursText: strings.TrimSpace(hours)}
	if w.DaysText == "" && w.HoursText == "" {
		return nil, errors.New("set days (Mon-Fri, or Mon,Wed,Fri) and/or hours (09:00-17:00)")
	}
	if w.DaysText == "" {
		w.DaysText = "Mon-Sun"
	}
	if w.HoursText == "" {
		w.HoursText = "00:00-24:00"
	}
	day := func(s string) (time.Weekday, error) {
		d, ok := weekdays[strings.ToLower(strings.TrimSpace(s))]
		if !ok {
			return 0, fmt.Errorf("days: %q is not a weekday (Mon, Tue, Wed, Thu, Fri, Sat, Sun)", strings.TrimSpace(s))
		}
		return d, nil
	}
	for _, part := range strings.Split(w.DaysText, ",") {
		a, b, isRange := strings.Cut(part, "-")
		from, err := day(a)
		if err != nil {
			return nil, err
		}
		to := from
		if isRange {
			if to, err = day(b); err != nil {
				return nil, err
			}
		}
		// Ranges run Monday to Sunday: Wed-Sun is five days, Fri-Mon wraps the week.
		for d := from; ; d = (d + 1) % 7 {
			w.Days[d] = true
			if d == to {
				break
			}
		}
	}
	a, b, ok := strings.Cut(w.HoursText, "-")
	if !ok {
		return nil, fmt.Errorf("hours: %q: write HH:MM-HH:MM (e.g. 09:00-17:00, or 22:00-06:00 past midnight)", w.HoursText)
	}
	var err error
	if w.From, err = clock(a, false); err != nil {
		return nil, fmt.Errorf("hours: %v", err)
	}
	if w.To, err = clock(b, true); err != nil {
		return nil, fmt.Errorf("hours: %v", err)
	}
	if w.From == w.To {
		return nil, fmt.Errorf("hours: %q is an empty window", w.HoursText)
	}
	return w, nil
}

// clock reads HH:MM as minutes after midnight; 24:00 only as an end.
func clock(s string, end bool) (int, error) {
	s = strings.TrimSpace(s)
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !end)) {
		return 0, fmt.Errorf("%q is not a time of day (HH:MM)", s)
	}
	return hh*60 + mm, nil
}

// span returns the window that starts on the day of t's date, in loc, if the window
// starts that day.
func (w *Window) span(y int, mo time.Month, d int, loc *time.Location) (start, end time.Time, ok bool) {
	start = time.Date(y, mo, d, w.From/60, w.From%60, 0, 0, loc)
	if !w.Days[start.Weekday()] {
		return start, start, false
	}
	endDay := d
	if w.To <= w.From {
		endDay++
	}
	end = time.Date(y, mo, endDay, w.To/60, w.To%60, 0, 0, loc)
	return start, end, true
}

// Next returns t when the window is open at t (in loc), else when it opens next.
func (w *Window) Next(t time.Time, loc *time.Location) time.Time {
	lt := t.In(loc)
	y, mo, d := lt.Date()
	for i := -1; i <= 8; i++ {
		start, end, ok := w.span(y, mo, d+i, loc)
		if !ok {
			continue
		}
		if !t.Before(start) && t.Before(end) {
			return t
		}
		if start.After(t) {
			return start
		}
	}
	return t // no day set: cannot happen (parseWindow sets one)
}

// Open reports whether the window is open at t in loc.
func (w *Window) Open(t time.Time, loc *time.Location) bool { return w.Next(t, loc).Equal(t) }

func (w *Window) String() string { return w.DaysText + " " + w.HoursText }

func parseWarmup(n *yaml.Node) (*Warmup, error) {
	w := &Warmup{}
	switch n.Kind {
	case yaml.SequenceNode:
		if err := n.Decode(&w.Caps); err != nil || len(w.Caps) == 0 {
			return nil, errors.New("a list of per-day caps must hold whole numbers (e.g. [500, 1000, 2000])")
		}
		for i, c := range w.Caps {
			if c < 1 {
				return nil, fmt.Errorf("day %d: cap %d: must be 1 or more", i+1, c)
			}
		}
		return w, nil
	case yaml.MappingNode:
		var f struct {
			Start  int     `yaml:"start"`
			Growth float64 `yaml:"growth"`
			Max    int     `yaml:"max"`
		}
		for i := 0; i < len(n.Content); i += 2 {
			switch k := n.Content[i].Value; k {
			case "start", "growth", "max":
			default:
				return nil, fmt.Errorf("unknown key %q (use start, growth, max, or a list of per-day caps)", k)
			}
		}
		if err := n.Decode(&f); err != nil {
			return nil, errors.New("start and max are whole numbers, growth a number (e.g. {start: 500, growth: 1.5, max: 200000})")
		}
		if f.Start < 1 {
			return nil, errors.New("start: the first day's cap must be 1 or more")
		}
		if f.Growth == 0 {
			f.Growth = 1.5
		}
		if f.Growth < 1 || math.IsNaN(f.Growth) || math.IsInf(f.Growth, 0) {
			return nil, fmt.Errorf("growth: %v: must be 1 or more (1.5: half as many again each day)", f.Growth)
		}
		if f.Max != 0 && f.Max < f.Start {
			return nil, fmt.Errorf("max: %d is below start %d", f.Max, f.Start)
		}
		w.Start, w.Growth, w.Max = f.Start, f.Growth, f.Max
		return w, nil
	}
	return nil, errors.New("write {start: 500, growth: 1.5, max: 200000} or a list of per-day caps")
}

// Cap is the cap of warm-up day n (1 = the first).
func (w *Warmup) Cap(day int) int {
	if day < 1 {
		day = 1
	}
	if len(w.Caps) > 0 {
		return w.Caps[min(day, len(w.Caps))-1]
	}
	c := float64(w.Start) * math.Pow(w.Growth, float64(day-1))
	limit := float64(math.MaxInt32)
	if w.Max > 0 {
		limit = float64(w.Max)
	}
	if c >= limit || math.IsInf(c, 0) {
		return int(limit)
	}
	return int(c)
}

func (w *Warmup) String() string {
	if len(w.Caps) > 0 {
		s := make([]string, len(w.Caps))
		for i, c := range w.Caps {
			s[i] = strconv.Itoa(c)
		}
		return fmt.Sprintf("per-day caps %s (the last one holds after day %d)", strings.Join(s, ", "), len(w.Caps))
	}
	s := fmt.Sprintf("%d on day 1, ×%g a day", w.Start, w.Growth)
	if w.Max > 0 {
		s += fmt.Sprintf(", at most %d a day", w.Max)
	}
	return s
}

// Explain describes the policy, one line per policy (none when there is none).
func (p *Policy) Explain() []string {
	var out []string
	zone := "the local time zone"
	if p.Location != nil {
		zone = p.Location.String()
	}
	if p.Window != nil {
		s := fmt.Sprintf("window: sends only %s, %s", p.Window.String(), zone)
		if p.RecipientTimezone != "" {
			s = fmt.Sprintf("window: sends each recipient only %s in their time zone (list column %q; %s when empty)", p.Window.String(), p.RecipientTimezone, zone)
		}
		out = append(out, s+"; outside it the rest stays pending")
	}
	switch {
	case !p.NotAfter.IsZero():
		out = append(out, fmt.Sprintf("not_after: nothing is sent after %s; recipients not sent by then expire", p.NotAfter.In(p.loc()).Format(time.RFC3339)))
	case p.NotAfterFirst > 0:
		out = append(out, fmt.Sprintf("not_after: nothing is sent later than %s after the campaign's first send; recipients not sent by then expire", p.NotAfterFirst))
	}
	if p.Warmup != nil {
		out = append(out, fmt.Sprintf("warmup: %s, counted across every campaign of the store (days in %s, day 1 = the store's first warm-up send)", p.Warmup, zone))
	}
	if p.PauseIf != nil {
		var r []string
		if p.PauseIf.BounceRate > 0 {
			r = append(r, "bounces above "+p.PauseIf.BounceText)
		}
		if p.PauseIf.ComplaintRate > 0 {
			r = append(r, "complaints above "+p.PauseIf.ComplaintText)
		}
		out = append(out, fmt.Sprintf("pause_if: pauses the campaign on %s of the outcomes since the last resume, once there are %d; resume with `herald send --resume-paused`",
			strings.Join(r, " or "), p.PauseIf.MinSent))
	}
	return out
}

func (p *Policy) loc() *time.Location {
	if p.Location == nil {
		return time.Local
	}
	return p.Location
}

// CheckZones reports the list rows whose recipient_timezone is not an IANA time zone
// name (they are sent in the campaign's time zone); it returns how many.
func CheckZones(ctx context.Context, c *Campaign, warn func(Warning)) (int, error) {
	col := c.Policy.RecipientTimezone
	if col == "" {
		return 0, nil
	}
	src := &Source{Campaign: c}
	cols, err := src.Columns()
	if err != nil {
		return 0, err
	}
	idx := columnIndex(cols, col)
	if idx < 0 {
		return 0, configErr("%s: recipient_timezone: the list has no column %q (columns: %s)", c.Path, col, strings.Join(cols, ", "))
	}
	bad := 0
	_, err = src.Scan(ctx, func(rc *Recipient) error {
		if idx < len(rc.Fields) {
			if name := strings.TrimSpace(rc.Fields[idx]); name != "" {
				if _, err := time.LoadLocation(name); err != nil {
					bad++
					if warn != nil {
						warn(Warning{Line: rc.Line, Reason: fmt.Sprintf("%s: %q is not a time zone (IANA name, e.g. Europe/Paris): sent in the campaign's time zone", col, name)})
					}
				}
			}
		}
		return nil
	})
	return bad, err
}

func columnIndex(cols []string, name string) int {
	for i, c := range cols {
		if strings.EqualFold(strings.TrimSpace(c), name) {
			return i
		}
	}
	return -1
}

// refreshPause is how often a run reads the store's outcome counts again for pause_if.
const refreshPause = 10 * time.Second

// StopPaused: the campaign crossed a pause_if threshold (or was paused by an earlier run).
const StopPaused StopReason = "paused"

// PauseFigures are the figures behind a pause, in the JSON summary.
type PauseFigures struct {
	// Outcomes since the last resume (sent and failed), Bounces and Complaints among them.
	Outcomes   int `json:"outcomes"`
	Bounces    int `json:"bounces"`
	Complaints int `json:"complaints"`
	// BounceRate and ComplaintRate are percentages.
	BounceRate    float64 `json:"bounce_rate"`
	ComplaintRate float64 `json:"complaint_rate"`
	// Since is the last resume (RFC 3339; empty: the campaign's start).
	Since string `json:"since,omitempty"`
}

// pausedError is the error of a paused campaign.
type pausedError struct {
	Campaign, Why string
	Earlier       bool
}

func (e *pausedError) Error() string {
	if e.Earlier {
		return fmt.Sprintf("campaign %q is paused (pause_if: %s): nothing was sent; look at `herald status --failed`, then resume with `herald send CAMPAIGN.yaml --resume-paused`", e.Campaign, e.Why)
	}
	return fmt.Sprintf("paused (pause_if: %s); look at `herald status --failed`, then resume with `herald send CAMPAIGN.yaml --resume-paused`", e.Why)
}

// gate decides, before each claim, whether a run may send now and how many: it keeps
// the send window, the expiry, the warm-up cap and the pause thresholds. A gate of a
// campaign without a policy lets everything through.
type gate struct {
	p        *Policy
	campaign string
	store    journal.Store
	now      func() time.Time
	counters *Counters

	// tzCol is the list column of the recipients' zones (-1: none); zones caches them.
	tzCol int
	zones map[string]*time.Location

	// deadline is when the campaign expires (zero: never).
	deadline time.Time
	// reserved counts the warm-up sends this run reserved; allowance what was left of
	// the day's cap when the run began.
	reserved, allowance int
	// base are the outcomes since the last resume before this run; since the resume;
	// giveUps the failures of this run that were give-ups, not bounces; complaintsAt
	// when the complaints were last read.
	base    journal.OutcomeCounts
	since   time.Time
	giveUps int
	// refreshed is when base was last read; baseOutcomes and baseBounces are this run's
	// own counts at that moment (base includes them).
	refreshed                 time.Time
	baseOutcomes, baseBounces int

	// held counts recipients left pending because their local window is closed;
	// heldNext is the soonest one of them opens.
	held     int
	heldNext time.Time

	// Why the run stopped sending (zero: it did not): expired, a closed window or the
	// warm-up cap; line says so, next is when it can go on.
	expired bool
	line    string
	next    time.Time
	figures *PauseFigures
}

// newGate reads what the policy needs from the store. With resume it lifts a pause and
// restarts the pause count; without, a paused campaign is refused (a *StopError).
func newGate(ctx context.Context, c *Campaign, store journal.Store, now func() time.Time, cols []string, resume bool) (*gate, error) {
	if now == nil {
		now = time.Now
	}
	g := &gate{p: &c.Policy, campaign: c.Name, store: store, now: now, tzCol: -1}
	p := g.p
	if p.RecipientTimezone != "" {
		if g.tzCol = columnIndex(cols, p.RecipientTimezone); g.tzCol < 0 {
			return nil, configErr("%s: recipient_timezone: the list has no column %q (columns: %s)", c.Path, p.RecipientTimezone, strings.Join(cols, ", "))
		}
		g.zones = map[string]*time.Location{}
	}
	switch {
	case !p.NotAfter.IsZero():
		g.deadline = p.NotAfter
	case p.NotAfterFirst > 0:
		first, err := store.FirstAttempt(ctx, c.Name)
		if err != nil {
			return nil, storeErr(ctx, err)
		}
		if first.IsZero() {
			first = now() // this run makes the first send
		}
		g.deadline = first.Add(p.NotAfterFirst)
	}
	if resume || p.PauseIf != nil {
		ps, err := store.PauseState(ctx, c.Name)
		if err != nil {
			return nil, storeErr(ctx, err)
		}
		if resume {
			ps = journal.Pause{ResumedAt: now()}
			if err := store.SetPause(ctx, c.Name, ps); err != nil {
				return nil, storeErr(ctx, err)
			}
		}
		if ps.Paused {
			return nil, &StopError{Reason: StopPaused, Err: &pausedError{Campaign: c.Name, Why: ps.Reason, Earlier: true}}
		}
		g.since = ps.ResumedAt
		if p.PauseIf != nil {
			if g.base, err = store.Outcomes(ctx, c.Name, g.since); err != nil {
				return nil, storeErr(ctx, err)
			}
			g.refreshed = now()
		}
	}
	return g, nil
}

// loc is the campaign's zone.
func (g *gate) loc() *time.Location { return g.p.loc() }

// format prints t in the campaign's zone.
func (g *gate) format(t time.Time) string { return t.In(g.loc()).Format(time.RFC3339) }

// start checks, before anything is claimed, whether the run may send at all; false
// with the reason set on the gate when it may not.
func (g *gate) start(ctx context.Context) (bool, error) {
	n, err := g.admit(ctx, math.MaxInt32, false)
	g.allowance = n
	return n > 0, err
}

// fit returns how many of n recipients to send the policy lets this run send today
// (the warm-up allowance left), for the plan and the progress bar.
func (g *gate) fit(n int) int {
	if g.p.Warmup != nil && g.allowance < n {
		return g.allowance
	}
	return n
}

// claimable returns how many of the n recipients the run wants to claim it may claim
// now (0: stop sending; the reason is set). Warm-up sends are reserved for them.
func (g *gate) claimable(ctx context.Context, n int) (int, error) {
	return g.admit(ctx, n, true)
}

func (g *gate) admit(ctx context.Context, n int, reserve bool) (int, error) {
	now := g.now()
	p := g.p
	if !g.deadline.IsZero() && !now.Before(g.deadline) {
		g.expired = true
		g.line = fmt.Sprintf("not_after %s has passed: nothing more is sent, the rest expired", g.format(g.deadline))
		return 0, nil
	}
	if p.Window != nil && g.tzCol < 0 && !p.Window.Open(now, g.loc()) {
		g.next = p.Window.Next(now, g.loc())
		g.line = fmt.Sprintf("outside the send window (%s, %s): the rest stays pending; the window opens at %s", p.Window, g.loc(), g.format(g.next))
		return 0, nil
	}
	if p.Warmup != nil {
		req := journal.WarmupRequest{Day: now.In(g.loc()).Format(time.DateOnly), Cap: p.Warmup.Cap}
		if reserve {
			req.N = n
		}
		gr, err := g.store.ReserveWarmup(ctx, req)
		if err != nil {
			return 0, storeErr(ctx, err)
		}
		if reserve {
			g.reserved += gr.Granted
			n = gr.Granted
		} else if gr.Cap >= 0 {
			n = min(n, gr.Cap-gr.Used)
		}
		if n <= 0 {
			y, m, d := now.In(g.loc()).Date()
			g.next = time.Date(y, m, d+1, 0, 0, 0, 0, g.loc())
			g.line = fmt.Sprintf("warm-up cap reached (day %d: %d of %d sent across the store): the rest stays pending; next at %s", gr.Day, gr.Used, gr.Cap, g.format(g.next))
			return 0, nil
		}
	}
	return n, nil
}

// giveBack returns n reserved warm-up sends that will not be used.
func (g *gate) giveBack(ctx context.Context, n int) {
	if g.p.Warmup == nil || n <= 0 {
		return
	}
	gr, err := g.store.ReserveWarmup(ctx, journal.WarmupRequest{Day: g.now().In(g.loc()).Format(time.DateOnly), Cap: g.p.Warmup.Cap, N: -n})
	if err == nil {
		g.reserved += gr.Granted
	}
}

// sendsNow reports whether a claimed recipient may be sent now in their own time zone;
// one that may not stays claimed until the run ends (then `pending`).
func (g *gate) sendsNow(it journal.Item) bool {
	if g.tzCol < 0 || g.p.Window == nil {
		return true
	}
	loc := g.loc()
	if g.tzCol < len(it.Fields) {
		if name := strings.TrimSpace(it.Fields[g.tzCol]); name != "" {
			l, ok := g.zones[name]
			if !ok {
				var err error
				if l, err = time.LoadLocation(name); err != nil {
					l = nil
				}
				if len(g.zones) < 10000 {
					g.zones[name] = l
				}
			}
			if l != nil {
				loc = l
			}
		}
	}
	now := g.now()
	next := g.p.Window.Next(now, loc)
	if next.Equal(now) {
		return true
	}
	g.held++
	if g.heldNext.IsZero() || next.Before(g.heldNext) {
		g.heldNext = next
	}
	return false
}

// check is asked before each recipient is handed to the workers: a *StopError when the
// campaign crossed a pause_if threshold (the pause is recorded in the store).
func (g *gate) check(ctx context.Context) error {
	pi := g.p.PauseIf
	if pi == nil || g.counters == nil {
		return nil
	}
	c := g.counters
	sent, failed := int(c.Sent.Load()), int(c.Failed.Load())
	outcomes, bounces := sent+failed, max(failed-g.giveUps, 0)
	// Complaints (webhooks, complaint reports) and the outcomes of runs on other hosts
	// arrive from elsewhere: the store's counts are read again now and then.
	if now := g.now(); now.Sub(g.refreshed) >= refreshPause {
		if oc, err := g.store.Outcomes(ctx, g.campaign, g.since); err == nil {
			g.base, g.baseOutcomes, g.baseBounces = oc, outcomes, bounces
		}
		g.refreshed = now
	}
	f := PauseFigures{
		Outcomes:   g.base.Outcomes + outcomes - g.baseOutcomes,
		Bounces:    g.base.Bounces + bounces - g.baseBounces,
		Complaints: g.base.Complaints,
	}
	if f.Outcomes < pi.MinSent {
		return nil
	}
	f.BounceRate = math.Round(float64(f.Bounces)/float64(f.Outcomes)*10000) / 100
	f.ComplaintRate = math.Round(float64(f.Complaints)/float64(f.Outcomes)*10000) / 100
	var why []string
	if pi.BounceRate > 0 && float64(f.Bounces) > pi.BounceRate*float64(f.Outcomes) {
		why = append(why, fmt.Sprintf("bounce rate %.2f%% (%d of %d outcomes) is above %s", f.BounceRate, f.Bounces, f.Outcomes, pi.BounceText))
	}
	if pi.ComplaintRate > 0 && float64(f.Complaints) > pi.ComplaintRate*float64(f.Outcomes) {
		why = append(why, fmt.Sprintf("complaint rate %.2f%% (%d of %d outcomes) is above %s", f.ComplaintRate, f.Complaints, f.Outcomes, pi.ComplaintText))
	}
	if len(why) == 0 {
		return nil
	}
	if !g.since.IsZero() {
		f.Since = g.format(g.since)
	}
	g.figures = &f
	reason := strings.Join(why, "; ")
	err := g.store.SetPause(context.WithoutCancel(ctx), g.campaign, journal.Pause{Paused: true, At: g.now(), Reason: reason, ResumedAt: g.since})
	if err != nil {
		return storeErr(ctx, err)
	}
	return &StopError{Reason: StopPaused, Err: &pausedError{Campaign: g.campaign, Why: reason}}
}

// finish ends the gate's part of a run: unused warm-up sends go back, and a closed
// window for some recipients is reported. used counts the recipients handed over.
func (g *gate) finish(ctx context.Context, used int) {
	g.giveBack(context.WithoutCancel(ctx), g.reserved-used)
	if g.held > 0 && g.line == "" {
		g.next = g.heldNext
		g.line = fmt.Sprintf("%d recipient(s) are outside the send window (%s) in their time zone and stay pending; the next window opens at %s",
			g.held, g.p.Window, g.format(g.next))
	}
}

// admitItems keeps the claimed items that may be sent now; those whose local window is
// closed stay claimed by the run (pending again when it ends). Warm-up sends reserved
// for n recipients and not needed go back.
func (g *gate) admitItems(ctx context.Context, n int, items []journal.Item) []journal.Item {
	kept := items[:0]
	for _, it := range items {
		if g.sendsNow(it) {
			kept = append(kept, it)
		}
	}
	g.giveBack(ctx, n-len(kept))
	return kept
}

// policy creates the run's gate and asks it whether the run may send at all. held is
// set when the policy keeps the run from sending (the summary says why), or refuses it
// (err: a paused campaign). notDue counts the deferred recipients not yet due.
func (r *run) policy(ctx context.Context, jr journal.Run, notDue int) (held bool, err error) {
	var cols []string
	if r.noList != nil {
		cols = r.noList.Columns // no list on this host: the columns another host loaded
	} else if cols, err = r.src.Columns(); err != nil {
		return true, err
	}
	if r.gate, err = newGate(ctx, r.c, r.store, r.env.Now, cols, r.o.ResumePaused); err != nil {
		r.splitExpired(ctx)
		return true, err
	}
	ok, err := r.gate.start(ctx)
	if err != nil || ok {
		return err != nil, err
	}
	if r.gate.expired {
		if err := r.expire(ctx, jr); err != nil {
			return true, err
		}
	} else {
		r.splitExpired(ctx)
		r.sum.Waiting = notDue
		r.sum.Pending = r.sum.rest()
	}
	r.report()
	return true, nil
}

// expire loads the list (rows not yet in the store expire too) and expires the rest.
func (r *run) expire(ctx context.Context, jr journal.Run) error {
	sum := r.sum
	var info journal.ListInfo
	var err error
	if r.noList != nil {
		info = *r.noList // another host loaded the list
	} else {
		info, err = r.src.Load(ctx, jr, TemplateHash(r.c))
	}
	if err != nil {
		var me *journal.MismatchError
		if errors.As(err, &me) {
			return &ConfigError{Err: err}
		}
		if isConfigErr(err) {
			return err
		}
		return storeErr(ctx, err)
	}
	if _, err := jr.Expire(ctx); err != nil {
		return storeErr(ctx, err)
	}
	if err := r.count(ctx); err != nil {
		return storeErr(ctx, err)
	}
	sum.Expired = r.expired
	sum.Skipped.Suppressed = info.Suppressed + r.suppressed
	sum.Pending = max(r.waiting, 0)
	sum.Skipped.AlreadyDone = 0
	sum.Skipped.AlreadyDone = max(sum.rest()-sum.Pending, 0)
	return nil
}

// splitExpired moves the recipients that expired in earlier runs from the first
// pass's "already done" to Expired.
func (r *run) splitExpired(ctx context.Context) {
	if r.count(context.WithoutCancel(ctx)) != nil || r.expired == 0 {
		return
	}
	r.sum.Expired = r.expired
	r.sum.Skipped.AlreadyDone = max(r.sum.Skipped.AlreadyDone-r.expired, 0)
}

// afterPolicy ends the gate's part of a run that sent: unused warm-up sends go back, a
// spike among the last outcomes still pauses the campaign, an expiry met during the run
// expires the rest. It returns the run's error.
func (r *run) afterPolicy(ctx context.Context, jr journal.Run, runErr error) error {
	g, sum := r.gate, r.sum
	g.finish(ctx, sum.Sent+sum.Failed+sum.Deferred+sum.Unknown-g.giveUps)
	if runErr == nil {
		runErr = g.check(ctx)
	}
	if g.expired {
		if _, err := jr.Expire(context.WithoutCancel(ctx)); err != nil && runErr == nil {
			runErr = storeErr(ctx, err)
		}
	}
	r.report()
	return runErr
}

// report puts the gate's reason and figures in the summary.
func (r *run) report() {
	g := r.gate
	r.sum.Policy = g.line
	if !g.next.IsZero() {
		r.sum.NextAt = g.format(g.next)
	}
	r.sum.Pause = g.figures
}
