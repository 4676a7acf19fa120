// Package journal is herald's durable record of every recipient of every campaign and
// of the store-wide suppression list. It is also the campaign's work queue: a run loads
// the list's rows as `pending`, claims batches of them, hands each one over only after
// its `sending` state is committed, and records the outcome.
//
// Two engines implement the one contract (Store, Run): an SQLite file (the embedded
// default, one run per campaign at a time, guarded by a file lock) and a PostgreSQL
// database shared by any number of hosts (runs of one campaign cooperate).
//
// # Guarantees
//
// A recipient is handed to a provider only after its `sending` state, owned by the run,
// is committed; its outcome is recorded after the provider answered. Every state change
// checks the owning run and the state it expects (see the transition table), so a run
// wrongly taken for dead cannot mail anyone twice: its next hand-off is refused. When a
// run dies, its `claimed` rows go back to `pending` and its `sending` rows become
// `unknown` (never resent automatically): nobody is mailed twice and nobody is lost.
//
// The SQLite file runs in WAL mode with synchronous=NORMAL: every commit survives the
// death of the process at any moment. PostgreSQL runs with its own durability settings.
package journal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is the journal state of one recipient of one campaign.
type State string

// The states a recipient goes through (see transitions for the allowed changes).
const (
	// Pending: loaded from the list (or released), waiting for a run to claim it.
	Pending State = "pending"
	// Claimed: taken by a run in a batch, not yet handed to a provider.
	Claimed State = "claimed"
	// Sending: handed (or about to be handed) to a provider by its run.
	Sending State = "sending"
	// Sent: the provider accepted the message.
	Sent State = "sent"
	// Deferred: a temporary failure; retried by a later claim once due.
	Deferred State = "deferred"
	// Failed: a permanent failure.
	Failed State = "failed"
	// Unknown: the message may or may not have been accepted; never resent automatically.
	Unknown State = "unknown"
	// Expired: not sent before the campaign's not_after; never sent.
	Expired State = "expired"
)

// States lists every State in report order. It is never modified.
var States = []State{Pending, Claimed, Sending, Sent, Deferred, Failed, Unknown, Expired}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Options tune a Store.
type Options struct {
	// Now is the clock used for every timestamp the store writes (nil: time.Now).
	Now func() time.Time
	// Conns sizes a PostgreSQL store's connection pool (0: 8); a run wants one per
	// worker plus a few.
	Conns int
}

// Store is an open journal. It is safe for concurrent use.
type Store interface {
	// Kind is "sqlite" or "postgres".
	Kind() string
	// Name names the store in messages: its path, or host:port/database (never a
	// password).
	Name() string
	// Close closes the store; runs must be ended first.
	Close() error

	// Secret returns the store's 32-byte HMAC secret for unsubscribe tokens, created on
	// first use; concurrent first uses agree on one secret.
	Secret(ctx context.Context) ([]byte, error)

	// Suppress adds list to the suppression list in one transaction; an address already
	// on it keeps its entry. added counts the new entries.
	Suppress(ctx context.Context, list []Suppression) (added int, err error)
	// Unsuppress removes addresses from the suppression list.
	Unsuppress(ctx context.Context, emails []string) (removed int, err error)
	// Suppressed returns the entries of those keys that are suppressed, by canonical key.
	Suppressed(ctx context.Context, keys []string) (map[string]Suppression, error)
	// IsSuppressed reports whether one address is suppressed.
	IsSuppressed(ctx context.Context, key string) (bool, error)
	// EachSuppressed walks the suppression list by canonical address.
	EachSuppressed(ctx context.Context, fn func(Suppression) error) error

	// BeginRun registers a run of a campaign, alive until End (or the process dies),
	// after settling the campaign's dead runs. On SQLite it takes the campaign's file
	// lock and fails with *LockedError while another run holds it.
	BeginRun(ctx context.Context, spec RunSpec) (Run, error)
	// Settle recovers the claims of the campaign's dead runs: their `claimed` rows go
	// back to `pending`, their `sending` rows become `unknown`. It never touches a live
	// run's rows.
	Settle(ctx context.Context, campaign string) (Settled, error)
	// ResendUnknown turns every `unknown` recipient back into `pending`.
	ResendUnknown(ctx context.Context, campaign string) (int, error)
	// LiveRuns lists the runs of campaign that are alive now, oldest first.
	LiveRuns(ctx context.Context, campaign string) ([]RunInfo, error)
	// LastRun returns the most recent run of campaign.
	LastRun(ctx context.Context, campaign string) (RunInfo, bool, error)
	// Campaign returns what the runs loaded of a campaign's list.
	Campaign(ctx context.Context, campaign string) (ListInfo, bool, error)

	// Campaigns returns the names of every campaign in the store, sorted.
	Campaigns(ctx context.Context) ([]string, error)
	// Counts returns the number of recipients in each state (every State present).
	Counts(ctx context.Context, campaign string) (map[State]int, error)
	// PendingSuppressed counts the pending or deferred recipients that are on the
	// suppression list (claims pass them by).
	PendingSuppressed(ctx context.Context, campaign string) (int, error)
	// Lookup returns the entries of keys in campaign; keys not in the store are absent.
	Lookup(ctx context.Context, campaign string, keys []string) (map[string]Entry, error)
	// EachRow walks the recipients in one of states (all when empty) in list order.
	EachRow(ctx context.Context, campaign string, states []State, fn func(Row) error) error

	// Bouncer records what arrives after a run: bounces by mail, complaints.
	Bouncer
	// PauseState returns the campaign's pause_if state (the zero Pause when none).
	PauseState(ctx context.Context, campaign string) (Pause, error)
	// SetPause records the campaign's pause_if state.
	SetPause(ctx context.Context, campaign string, p Pause) error
	// Outcomes counts the campaign's outcomes, bounces and complaints since a time
	// (zero: all).
	Outcomes(ctx context.Context, campaign string, since time.Time) (OutcomeCounts, error)
	// FirstAttempt returns the campaign's first hand-off (zero when none yet).
	FirstAttempt(ctx context.Context, campaign string) (time.Time, error)
	// ReserveWarmup reserves (or gives back) sends of today's warm-up allowance, counted
	// across every campaign of the store, in one transaction: concurrent runs on any
	// host never reserve more than the cap together.
	ReserveWarmup(ctx context.Context, req WarmupRequest) (WarmupGrant, error)

	// Export walks everything the store holds, for `herald store copy`.
	Export(ctx context.Context, fn func(Record) error) error
	// Import writes records from Export into this store in one transaction; rows of a
	// campaign already present are kept.
	Import(ctx context.Context, each func(add func(Record) error) error) (int, error)
}

// Run is one registered run of a campaign: it loads the list, claims batches, hands
// recipients over and records outcomes. Its methods are safe for concurrent use.
type Run interface {
	// ID is the run's id in the store.
	ID() int64
	// Load adds the rows feed gives that are not yet in the store as `pending`, then
	// records info (which feed may fill in as it reads), in one transaction under the
	// campaign's load lock: an error from feed loads nothing. It refuses
	// (*MismatchError) when another live run sends the campaign with other templates.
	Load(ctx context.Context, info *ListInfo, feed func(add func(Item) error) error) (added int, err error)
	// Claim takes up to n due recipients (`pending`, or `deferred` whose next attempt is
	// not later than now) that are not suppressed, in list order, as `claimed` by this
	// run. A suppression committed before the claim is honoured.
	Claim(ctx context.Context, n int) ([]Item, error)
	// Handoff queues the change `claimed` → `sending`; the returned func waits for its
	// commit. A refusal (*StateError, errors.Is ErrNotClaimable) means the recipient is
	// no longer this run's: it must not be sent. Hand-offs of many workers share one
	// commit.
	Handoff(ctx context.Context, key string) (wait func() error)
	// Record queues an outcome (group-committed; Err reports a failed write).
	Record(o Outcome)
	// RecordThen is Record that also says when the outcome is durable: done (when not
	// nil) is called once, from the writer's goroutine, with nil after the outcome's
	// batch committed, or with the error that kept it from the store. done must not
	// block.
	RecordThen(o Outcome, done func(error))
	// Flush waits until everything queued so far is committed.
	Flush(ctx context.Context) error
	// Err reports the first write error (nil if none): the run must stop.
	Err() error
	// Lost is closed when the run lost its hold on the store (its connection died);
	// the run must stop: it may have been settled as dead by others.
	Lost() <-chan struct{}
	// Others counts the campaign's recipients claimed or being sent by other runs (a
	// run that runs out of work waits for them: a dead run's claims come back).
	Others(ctx context.Context) (int, error)
	// Live counts the campaign's live runs, this one included.
	Live(ctx context.Context) (int, error)
	// Expire commits what is queued, then marks `expired` the campaign's `pending` and
	// `deferred` recipients (also those not yet due) that are not suppressed, and this
	// run's `claimed` ones (not_after has passed). It returns how many it marked.
	Expire(ctx context.Context) (int, error)
	// End commits what is queued, releases this run's unsent claims to `pending`,
	// records the summary and ends the run. It is safe to call once.
	End(ctx context.Context, summary []byte) error
}

// RunSpec describes a run to register.
type RunSpec struct {
	Campaign string
	// Host and PID identify the process (shown by status).
	Host string
	PID  int
	// ResendUnknown turns the campaign's `unknown` recipients (those of dead runs
	// included) back into `pending` as the run begins.
	ResendUnknown bool
}

// Settled counts what settling dead runs changed.
type Settled struct {
	// Runs is the number of dead runs settled.
	Runs int
	// Released counts claimed rows returned to pending; Unknown sending rows made unknown.
	Released, Unknown int
}

// ListInfo is what a run loaded of a campaign's list.
type ListInfo struct {
	// Columns are the list's columns, in order (Item.Fields follows them).
	Columns []string
	// TemplateHash identifies the campaign's templates; runs with another hash may not
	// join a live one.
	TemplateHash string
	// Total is the number of data rows; Invalid, Duplicate and Suppressed (by the
	// campaign's suppress files) the rows that are never loaded.
	Total, Invalid, Duplicate, Suppressed int
}

// Item is a recipient as loaded and as claimed.
type Item struct {
	// Key is the canonical (trimmed, lower-case) address.
	Key string
	// Email is the address as it appears in the list.
	Email string
	// Line is the list line the recipient came from.
	Line int
	// Fields are the row's fields, one per column of ListInfo.Columns.
	Fields []string
	// Retry is set on a claim of a deferred recipient; Attempts, FirstAttempt are the
	// hand-offs so far and the first one (zero when none).
	Retry        bool
	Attempts     int
	FirstAttempt time.Time
}

// Outcome is what became of a recipient handed over (or claimed).
type Outcome struct {
	// Key is the canonical address.
	Key string
	// State is Sent, Deferred, Failed, Unknown, or Pending (claim released: the message
	// was never handed over).
	State State
	// ProviderID is the provider's message id (Sent).
	ProviderID string
	// Provider is the name of the provider that took the attempt ("smtp", "ses", ...):
	// the fallback's after a switch. Empty keeps the name already stored (an outcome
	// decided without an attempt, such as giving up on a deferred recipient).
	Provider string
	// Code is the SMTP or HTTP code.
	Code int
	// Enhanced is the enhanced status code or the API's error name.
	Enhanced string
	// Reason is the provider's text (never secrets); the journal keeps its first 1000 bytes.
	Reason string
	// NextAttempt is when a later claim may retry a Deferred recipient.
	NextAttempt time.Time
	// Suppress also adds Email to the suppression list (hard bounce), in the same commit.
	Suppress bool
	// Email is the address to suppress (Key when empty).
	Email string
	// State Claimed holds a hand-off whose message was never made (a render error):
	// the row stays this run's claim, not claimed again by it, and goes back to
	// pending when the run ends.
	// Reopen, with State Pending, returns a recipient that this run recorded Failed to
	// pending and lifts the suppression that failure added (source "bounce:<campaign>"):
	// the run found afterwards that the failure was the campaign's fault, not the
	// recipient's. A recipient in any other state is left alone.
	Reopen bool
}

// Suppression is one address on the store-wide suppression list.
type Suppression struct {
	// Email is the address as it was added (trimmed).
	Email string
	// Reason says why (a bounce's text, "unsubscribed", …).
	Reason string
	// Source says where it came from ("bounce:<campaign>", "unsubscribe", "import", …).
	Source string
	// At is when it was added (zero on input: now).
	At time.Time
}

// RunInfo describes one run of a campaign.
type RunInfo struct {
	ID       int64
	Campaign string
	// Started and Ended are the run's start and end (Ended is zero while it runs).
	Started, Ended time.Time
	// Host and PID are the process that ran it.
	Host string
	PID  int
	// Died is set when the run was settled as dead.
	Died bool
	// Sent counts the recipients this run sent so far.
	Sent int
	// Summary is the JSON summary passed to End (nil before that).
	Summary []byte
}

// Entry is what a list reader needs to know about a recipient already in the store.
type Entry struct {
	Key      string
	State    State
	Attempts int
	// FirstAttempt is the first hand-off; NextAttempt when a deferred recipient may be
	// retried (zero when not set).
	FirstAttempt, NextAttempt time.Time
}

// Row is one recipient of a campaign as the store holds it.
type Row struct {
	Email    string
	Line     int
	State    State
	Attempts int
	// Code is the last SMTP or HTTP code (0 when none).
	Code int
	// Enhanced is the last enhanced status code or API error name; Reason the
	// provider's text; ProviderID the provider's message id (sent); Provider the name of
	// the provider that took the last attempt.
	Enhanced, Reason, ProviderID, Provider string
	// FirstAttempt, LastAttempt, NextAttempt, UpdatedAt: zero when unset.
	FirstAttempt, LastAttempt, NextAttempt, UpdatedAt time.Time
}

// Record is one thing a store holds, for copying between stores: exactly one field is
// set.
type Record struct {
	Secret      []byte
	Suppression *Suppression
	Campaign    *CampaignRecord
	Recipient   *RecipientRecord
}

// CampaignRecord is a campaign's loaded list information.
type CampaignRecord struct {
	Name string
	Info ListInfo
}

// RecipientRecord is a recipient with everything the store keeps of it.
type RecipientRecord struct {
	Campaign string
	Key      string
	Row      Row
	Fields   []string
}

// ErrNotClaimable is matched (errors.Is) by the error a hand-off returns for a recipient
// that is not this run's to send.
var ErrNotClaimable = errors.New("recipient must not be sent")

// StateError is the refusal of a hand-off.
type StateError struct {
	Campaign, Key string
	// State is the recipient's current state ("" when it is not in the store).
	State State
}

func (e *StateError) Error() string {
	return fmt.Sprintf("journal: campaign %q: recipient %s is %s, not claimed by this run; not sending it", e.Campaign, e.Key, e.State)
}

// Is makes errors.Is(err, ErrNotClaimable) true.
func (e *StateError) Is(target error) bool { return target == ErrNotClaimable }

// MismatchError refuses a run that would join a live run of the same campaign with
// different templates.
type MismatchError struct {
	Campaign string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("campaign %q is being sent by another run with different templates; use the same campaign file and templates on every host, or wait for it to finish", e.Campaign)
}

// URLError is a store location that is not a usable URL (a configuration error).
type URLError struct {
	Err error
}

func (e *URLError) Error() string { return "store URL: " + e.Err.Error() }
func (e *URLError) Unwrap() error { return e.Err }

// UnavailableError is a store that cannot be reached or refuses the connection.
type UnavailableError struct {
	Name string
	Err  error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("store %s is unavailable: %v", e.Name, e.Err)
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// IsURL reports whether location names a PostgreSQL store.
func IsURL(location string) bool {
	l := strings.ToLower(location)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// Open opens the store at location: a postgres:// or postgresql:// URL, else an SQLite
// file path (the file is created if needed, not its folder). The schema is brought up
// to date.
func Open(ctx context.Context, location string, o Options) (Store, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if IsURL(location) {
		return openPostgres(ctx, location, o)
	}
	return openSQLite(ctx, location, o)
}

// maxReason is the most bytes of a provider's reason the journal keeps.
const maxReason = 1000

// normalize returns the canonical key of an address: trimmed and lower-cased.
func normalize(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// normalizeAll returns the canonical keys of emails.
func normalizeAll(emails []string) []string {
	out := make([]string, len(emails))
	for i, e := range emails {
		out[i] = normalize(e)
	}
	return out
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut < len(s) && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// millis converts t to unix milliseconds for storage; the zero time is NULL.
func millis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// fromMillis converts a stored time back; nil is the zero time.
func fromMillis(v *int64) time.Time {
	if v == nil {
		return time.Time{}
	}
	return time.UnixMilli(*v)
}
