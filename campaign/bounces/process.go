package bounces

import (
	"context"
	"sort"
	"strings"

	"github.com/heraldmail/herald/campaign/journal"
)

// Journal is what processing needs of the store. *journal.Store implements it; the
// interface keeps this package to the few methods it uses.
type Journal interface {
	// RecordBounce marks a mailed recipient failed and suppresses the address; it
	// reports whether anything changed.
	RecordBounce(ctx context.Context, campaign, email string, b journal.Bounce) (bool, error)
	// RecordComplaint suppresses the address; it reports whether it was new.
	RecordComplaint(ctx context.Context, campaign, email, reason string) (bool, error)
	// Mailed reports whether campaign handed a message for email to a provider.
	Mailed(ctx context.Context, campaign, email string) (bool, error)
	// ByProviderID finds the recipient whose message has the provider id (Message-ID).
	ByProviderID(ctx context.Context, id string) (campaign, email string, ok bool, err error)
	// Campaigns lists the campaigns in the store.
	Campaigns(ctx context.Context) ([]string, error)
}

// Verifier checks an unsubscribe token and returns the campaign and address it names
// (*unsubscribe.Signer).
type Verifier interface {
	Verify(token string) (campaign, address string, err error)
}

// Options choose what Process matches against.
type Options struct {
	// Campaign, when set, is the only campaign whose recipients are matched by address
	// (a token or a Message-ID of another campaign still matches).
	Campaign string
	// Tokens verifies unsubscribe tokens found in reports (nil: not used).
	Tokens Verifier
}

// Result is what Process did.
type Result struct {
	// Messages counts the messages read.
	Messages int `json:"messages"`
	// HardBounces, SoftBounces, Rejected and Complaints count the recipients reported,
	// matched or not; Unmatched counts those that matched no recipient of herald's;
	// Other counts the messages that were neither bounces nor complaints.
	HardBounces int `json:"hard_bounces"`
	SoftBounces int `json:"soft_bounces"`
	Rejected    int `json:"rejected"`
	Complaints  int `json:"complaints"`
	Unmatched   int `json:"unmatched"`
	Other       int `json:"other"`
	// Failed lists the addresses newly marked failed (and suppressed) by a hard bounce;
	// Suppressed the addresses newly suppressed by a complaint; AlreadyRecorded counts
	// matched reports that changed nothing (seen by an earlier run).
	Failed          []string `json:"failed"`
	Suppressed      []string `json:"suppressed"`
	AlreadyRecorded int      `json:"already_recorded"`
	// Soft lists the soft-bounced and otherwise rejected addresses (information only).
	Soft []string `json:"soft"`
}

// target is one campaign's recipient a report is about.
type target struct{ campaign, email string }

// Process reads every message of mb, and records what the reports say in j.
func Process(ctx context.Context, mb Mailbox, j Journal, o Options) (*Result, error) {
	res := &Result{Failed: []string{}, Suppressed: []string{}, Soft: []string{}}
	var campaigns []string
	if o.Campaign == "" {
		var err error
		if campaigns, err = j.Campaigns(ctx); err != nil {
			return res, err
		}
	} else {
		campaigns = []string{o.Campaign}
	}
	err := mb.Each(ctx, func(raw []byte) (bool, error) {
		res.Messages++
		r := Parse(raw)
		if len(r.Recipients) == 0 {
			res.Other++
			return false, nil
		}
		// Processed: every recipient of the report was matched (or needs nothing).
		processed := true
		for _, rc := range r.Recipients {
			matched, err := apply(ctx, j, o, campaigns, &r, rc, res)
			if err != nil {
				return false, err
			}
			processed = processed && matched
		}
		return processed, nil
	})
	for _, l := range [][]string{res.Failed, res.Suppressed, res.Soft} {
		sort.Strings(l)
	}
	return res, err
}

// apply records what one recipient of a report says; matched is false when it matched
// no recipient of herald's.
func apply(ctx context.Context, j Journal, o Options, campaigns []string, r *Report, rc Recipient, res *Result) (matched bool, err error) {
	switch rc.Kind {
	case Soft, Rejected:
		if rc.Kind == Soft {
			res.SoftBounces++
		} else {
			res.Rejected++
		}
		if rc.Address != "" {
			res.Soft = append(res.Soft, rc.Address)
		}
		// Nothing to record; the report is herald's to move only when it is about one
		// of its recipients.
		targets, err := match(ctx, j, o, campaigns, r, rc)
		return len(targets) > 0, err
	case Hard:
		res.HardBounces++
	case Complaint:
		res.Complaints++
	}
	targets, err := match(ctx, j, o, campaigns, r, rc)
	if err != nil {
		return false, err
	}
	if len(targets) == 0 {
		res.Unmatched++
		return false, nil
	}
	changed := false
	for _, t := range targets {
		var ch bool
		if rc.Kind == Hard {
			ch, err = j.RecordBounce(ctx, t.campaign, t.email, journal.Bounce{Code: rc.Code, Enhanced: rc.Status, Reason: reason(rc)})
		} else {
			ch, err = j.RecordComplaint(ctx, t.campaign, t.email, reason(rc))
		}
		if err != nil {
			return false, err
		}
		if ch && !changed {
			if rc.Kind == Hard {
				res.Failed = append(res.Failed, t.email)
			} else {
				res.Suppressed = append(res.Suppressed, t.email)
			}
		}
		changed = changed || ch
	}
	if !changed {
		res.AlreadyRecorded++
	}
	return true, nil
}

func reason(rc Recipient) string {
	if rc.Diagnostic != "" {
		return rc.Diagnostic
	}
	if rc.Status != "" {
		return "bounced " + rc.Status
	}
	return rc.Kind.String()
}

// match finds whom a report's recipient is: by a verified token (VERP or the original's
// List-Unsubscribe), by the original's Message-ID, else by address among the campaigns'
// mailed recipients.
func match(ctx context.Context, j Journal, o Options, campaigns []string, r *Report, rc Recipient) ([]target, error) {
	if o.Tokens != nil {
		for _, tok := range r.Tokens {
			c, a, err := o.Tokens.Verify(tok)
			if err != nil {
				continue
			}
			// A report about several recipients: the token must be this one's.
			if len(r.Recipients) > 1 && rc.Address != "" && !strings.EqualFold(a, rc.Address) {
				continue
			}
			return []target{{c, a}}, nil
		}
	}
	if r.MessageID != "" && len(r.Recipients) == 1 {
		c, a, ok, err := j.ByProviderID(ctx, r.MessageID)
		if err != nil {
			return nil, err
		}
		if ok {
			return []target{{c, a}}, nil
		}
	}
	if rc.Address == "" {
		return nil, nil
	}
	var out []target
	for _, c := range campaigns {
		ok, err := j.Mailed(ctx, c, rc.Address)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, target{c, rc.Address})
		}
	}
	return out, nil
}
