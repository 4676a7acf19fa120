package journal

import "strings"

// Transition is one allowed change of a recipient's state. Both engines build their
// SQL from this one table: a change applies only to a row in one of From (and, where
// Owned is set, owned by the run making it), so that no engine can write a transition
// the contract does not allow.
type Transition struct {
	// Name is the operation.
	Name string
	// From are the states the row may be in; To the state it gets.
	From []State
	To   State
	// Owned: the row must belong to the run that makes the change.
	Owned bool
}

// The transitions of the contract.
var (
	// Load: a list row not yet in the store (INSERT … ON CONFLICT DO NOTHING).
	tLoad = Transition{Name: "load", To: Pending}
	// Claim: a due, unsuppressed row becomes the run's (deferred rows only once due).
	tClaim = Transition{Name: "claim", From: []State{Pending, Deferred}, To: Claimed}
	// Handoff: committed just before the message goes to the provider.
	tHandoff = Transition{Name: "handoff", From: []State{Claimed}, To: Sending, Owned: true}
	// Outcomes after a hand-off.
	tSent     = Transition{Name: "sent", From: []State{Sending}, To: Sent, Owned: true}
	tDeferred = Transition{Name: "deferred", From: []State{Sending}, To: Deferred, Owned: true}
	tUnknown  = Transition{Name: "unknown", From: []State{Sending}, To: Unknown, Owned: true}
	// Failed: after a hand-off, or a claimed deferred row past give_up_after.
	tFailed = Transition{Name: "failed", From: []State{Sending, Claimed}, To: Failed, Owned: true}
	// Release: a claim given back without a hand-off reaching the provider.
	tRelease = Transition{Name: "release", From: []State{Claimed, Sending}, To: Pending, Owned: true}
	// Hold: a hand-off whose message was never made (it could not be rendered) stays
	// the run's claim, so that the run does not claim it again; the claim goes back to
	// pending when the run ends (or is settled, if it dies).
	tHold = Transition{Name: "hold", From: []State{Sending}, To: Claimed, Owned: true}
	// Settling a dead run: its claims go back, its hand-offs become unknown.
	tSettleClaimed = Transition{Name: "settle claimed", From: []State{Claimed}, To: Pending}
	tSettleSending = Transition{Name: "settle sending", From: []State{Sending}, To: Unknown}
	// Reopen: a failure this run recorded turns out to be the campaign's fault.
	tReopen = Transition{Name: "reopen", From: []State{Failed}, To: Pending, Owned: true}
	// Expire: not_after passed; the run's own claims expire with the rest.
	tExpire        = Transition{Name: "expire", From: []State{Pending, Deferred}, To: Expired}
	tExpireClaimed = Transition{Name: "expire claimed", From: []State{Claimed}, To: Expired, Owned: true}
	// send --resend-unknown.
	tResend = Transition{Name: "resend unknown", From: []State{Unknown}, To: Pending}
)

// Transitions lists the table, for documentation and tests.
var Transitions = []Transition{tLoad, tClaim, tHandoff, tSent, tDeferred, tUnknown, tFailed,
	tRelease, tHold, tReopen, tSettleClaimed, tSettleSending, tResend, tBounce, tExpire, tExpireClaimed}

// outcomeTransition returns the transition an outcome makes (ok false: not an outcome).
func outcomeTransition(o Outcome) (Transition, bool) {
	if o.Reopen {
		return tReopen, o.State == Pending
	}
	switch o.State {
	case Sent:
		return tSent, true
	case Deferred:
		return tDeferred, true
	case Unknown:
		return tUnknown, true
	case Failed:
		return tFailed, true
	case Pending:
		return tRelease, true
	case Claimed:
		return tHold, true
	}
	return Transition{}, false
}

// fromSQL is the SQL list of the transition's From states: ('a', 'b'). States are
// constants of this package, never input.
func (t Transition) fromSQL() string {
	q := make([]string, len(t.From))
	for i, s := range t.From {
		q[i] = "'" + string(s) + "'"
	}
	return "(" + strings.Join(q, ", ") + ")"
}

// fromTest is the test that column col holds one of the transition's From states,
// written so that PostgreSQL's planner does not take it for an index condition. The
// statements that change rows by key use it: with statistics taken before the rows were
// claimed, the planner believes a state such as 'claimed' rare and reads every row in
// that state through the queue index, instead of the rows by their primary key.
func (t Transition) fromTest(col string) string {
	return "(" + col + " IN " + t.fromSQL() + ") IS TRUE"
}

// to is the target state as an SQL literal.
func (t Transition) to() string { return "'" + string(t.To) + "'" }
