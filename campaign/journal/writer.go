package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// maxReason is the most bytes of a provider's reason the journal keeps.
const maxReason = 1000

// defaultMaxBatch caps the operations one group commit carries.
const defaultMaxBatch = 512

// queueLen is how many operations may wait for the writer before Record blocks.
const queueLen = 4096

// ErrNotClaimable is matched (errors.Is) by the error Claim returns for a recipient
// whose state forbids sending it: sent, failed, unknown, or already sending.
var ErrNotClaimable = errors.New("recipient must not be sent")

// StateError is the error Claim returns for a recipient that must not be sent.
type StateError struct {
	// Campaign and Key name the recipient.
	Campaign, Key string
	// State is the recipient's current state.
	State State
}

// Error says which recipient and why.
func (e *StateError) Error() string {
	return fmt.Sprintf("journal: campaign %q: recipient %s is %s; not sending it", e.Campaign, e.Key, e.State)
}

// Is makes errors.Is(err, ErrNotClaimable) true.
func (e *StateError) Is(target error) bool { return target == ErrNotClaimable }

// Claim is a recipient a worker is about to hand to a provider.
type Claim struct {
	// Key is the canonical (trimmed, lower-case) address.
	Key string
	// Email is the address as it appears in the list.
	Email string
	// Line is the list line the recipient came from.
	Line int
}

// Outcome is what became of a claimed recipient.
type Outcome struct {
	// Key is the canonical address, as claimed.
	Key string
	// State is Sent, Deferred, Failed, Unknown, or Pending (claim released: the send
	// was never attempted, e.g. the run stopped).
	State State
	// ProviderID is the provider's message id (Sent).
	ProviderID string
	// Code is the SMTP or HTTP code.
	Code int
	// Enhanced is the enhanced status code or the API's error name.
	Enhanced string
	// Reason is the provider's text (never secrets); the journal keeps its first 1000 bytes.
	Reason string
	// NextAttempt is when a later run may retry a Deferred recipient.
	NextAttempt time.Time
	// Suppress also adds Email to the suppression list (hard bounce), with Reason and
	// source "bounce:<campaign>", in the same commit as the outcome.
	Suppress bool
	// Email is the address to suppress (Key when empty).
	Email string
	// Reopen, with State Pending, returns a recipient that this run recorded Failed to
	// pending and lifts the suppression that failure added (source "bounce:<campaign>"):
	// the run found afterwards that the failure was the campaign's fault, not the
	// recipient's. A recipient in any other state is left alone.
	Reopen bool
}

// op is one queued write: a claim (with the channel its result goes to) or an outcome.
type op struct {
	claim   Claim
	done    chan error // non-nil for a claim
	outcome Outcome
	// recorded, when set, is called with the outcome's result after its batch.
	recorded func(error)
}

// Writer is the single writer of one campaign's recipients, with group commit: the
// claims and outcomes queued while a transaction commits go together into the next one
// (everything waiting, up to 512 operations), so many workers cost a few hundred
// commits per second rather than one per message. Its methods are safe for concurrent
// use. Only one Writer should write a campaign at a time (see Lock).
type Writer struct {
	s        *Store
	campaign string
	maxBatch int
	start    <-chan struct{} // nil, or closed when the writer may begin (tests)

	mu     sync.RWMutex // guards closed against sends on ops
	closed bool
	ops    chan op

	finished chan struct{} // closed when the goroutine has stopped
	commits  atomic.Int64  // transactions committed, for tests and benchmarks

	errMu sync.Mutex
	err   error

	stmts writerStmts // prepared on the write connection; owned by the goroutine
}

// writerStmts are the writer's prepared statements.
type writerStmts struct {
	claim, state, outcome, release, suppress, reopen, unsuppress *sql.Stmt
}

// NewWriter starts the writer goroutine of campaign. Close it when the run is done.
func (s *Store) NewWriter(campaign string) *Writer {
	return s.newWriter(campaign, defaultMaxBatch, nil)
}

// newWriter is NewWriter with a batch cap and, for tests, a channel the goroutine
// waits on before it takes its first operation.
func (s *Store) newWriter(campaign string, maxBatch int, start <-chan struct{}) *Writer {
	w := &Writer{
		s:        s,
		campaign: campaign,
		maxBatch: max(maxBatch, 1),
		start:    start,
		ops:      make(chan op, queueLen),
		finished: make(chan struct{}),
	}
	go w.loop()
	return w
}

// Claim marks the recipient `sending` (a new row, or one that was pending or deferred:
// attempts+1, first attempt set once, last attempt now) and returns only once that is
// committed, so a recipient is never handed to a provider before its claim is durable.
// For a recipient that is sent, failed, unknown or already sending it returns a
// *StateError (errors.Is ErrNotClaimable) and the caller skips it.
//
// ctx bounds only the wait for room in the queue. Once queued, Claim waits for the
// commit (bounded by the store's busy timeout), so that its caller always knows whether
// it owns the recipient.
func (w *Writer) Claim(ctx context.Context, c Claim) error {
	return w.StartClaim(ctx, c)()
}

// StartClaim queues a claim like Claim and returns at once; the returned function waits
// for the commit and returns what Claim would. The caller may do other work for the
// recipient meanwhile (render its message), but must not hand it to a provider before
// the wait returns nil.
func (w *Writer) StartClaim(ctx context.Context, c Claim) (wait func() error) {
	fail := func(err error) func() error { return func() error { return err } }
	c.Key = normalize(c.Key)
	if c.Key == "" {
		return fail(fmt.Errorf("journal: campaign %q: claim with an empty key", w.campaign))
	}
	if err := w.Err(); err != nil {
		return fail(err)
	}
	done := make(chan error, 1)
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return fail(fmt.Errorf("journal: campaign %q: claim of %s after the writer was closed", w.campaign, c.Key))
	}
	select {
	case w.ops <- op{claim: c, done: done}:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return fail(ctx.Err())
	}
	return func() error { return <-done }
}

// Record queues an outcome and returns without waiting for its commit (blocking only
// while the queue is full). Outcomes of a key are applied after its claim. A write
// error shows in Err and Close.
func (w *Writer) Record(o Outcome) { w.RecordThen(o, nil) }

// RecordThen is Record that also says when the outcome is durable: done (when not nil)
// is called once, from the writer's goroutine, with nil after the outcome's batch
// committed, or with the error that kept it from the store. done must not block.
func (w *Writer) RecordThen(o Outcome, done func(error)) {
	o.Key = normalize(o.Key)
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		err := fmt.Errorf("journal: campaign %q: outcome %s of %s recorded after the writer was closed", w.campaign, o.State, o.Key)
		w.setErr(err)
		if done != nil {
			done(err)
		}
		return
	}
	w.ops <- op{outcome: o, recorded: done}
	w.mu.RUnlock()
}

// Close commits everything queued, stops the goroutine and returns the first write
// error. It is idempotent.
func (w *Writer) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ops)
	}
	w.mu.Unlock()
	<-w.finished
	return w.Err()
}

// Err reports the first write error so far (nil if none). A run whose journal cannot be
// written must stop.
func (w *Writer) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// setErr keeps the first error.
func (w *Writer) setErr(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
}

// loop is the writer goroutine: it takes everything waiting (up to maxBatch) and
// writes it in one transaction, until ops is closed and drained.
func (w *Writer) loop() {
	defer close(w.finished)
	defer w.closeStmts()
	if w.start != nil {
		<-w.start
	}
	batch := make([]op, 0, w.maxBatch)
	for {
		first, ok := <-w.ops
		if !ok {
			return
		}
		batch = append(batch[:0], first)
		// Let claimers that are ready to run queue their work into this batch.
		runtime.Gosched()
	fill:
		for len(batch) < w.maxBatch {
			select {
			case o, ok := <-w.ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		w.apply(batch)
		clear(batch) // drop references to the done channels
	}
}

// apply writes one batch in one transaction and answers its claims after the commit.
func (w *Writer) apply(batch []op) {
	results := make([]error, len(batch))
	err := w.write(batch, results)
	if err != nil {
		err = w.s.errorf(fmt.Sprintf("campaign %q: write %d operations", w.campaign, len(batch)), err)
		w.setErr(err)
	}
	for i, o := range batch {
		if o.recorded != nil {
			o.recorded(err)
		}
		if o.done == nil {
			continue
		}
		if err != nil {
			o.done <- err
		} else {
			o.done <- results[i]
		}
	}
}

// write runs the batch in one transaction; results receives each claim's refusal. A
// returned error means nothing of the batch was committed.
func (w *Writer) write(batch []op, results []error) error {
	ctx := context.Background() // queued work is written even when the run is cancelled
	if err := w.prepare(ctx); err != nil {
		return err
	}
	tx, err := w.s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st := writerStmts{
		claim:      tx.StmtContext(ctx, w.stmts.claim),
		state:      tx.StmtContext(ctx, w.stmts.state),
		outcome:    tx.StmtContext(ctx, w.stmts.outcome),
		release:    tx.StmtContext(ctx, w.stmts.release),
		suppress:   tx.StmtContext(ctx, w.stmts.suppress),
		reopen:     tx.StmtContext(ctx, w.stmts.reopen),
		unsuppress: tx.StmtContext(ctx, w.stmts.unsuppress),
	}
	sticky := w.Err()
	for i, o := range batch {
		if o.done != nil {
			if sticky != nil {
				results[i] = sticky // a broken journal hands out no more recipients
				continue
			}
			results[i], err = w.writeClaim(ctx, st, o.claim)
		} else {
			err = w.writeOutcome(ctx, st, o.outcome)
		}
		if err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	w.commits.Add(1)
	return nil
}

// prepare prepares the writer's statements once, on the write connection.
func (w *Writer) prepare(ctx context.Context) error {
	if w.stmts.claim != nil {
		return nil
	}
	var st writerStmts
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&st.claim, `INSERT INTO recipients (campaign, key, email, line, state, attempts, first_attempt, last_attempt, updated_at)
			VALUES (?1, ?2, ?3, ?4, 'sending', 1, ?5, ?5, ?5)
			ON CONFLICT (campaign, key) DO UPDATE SET state = 'sending', attempts = attempts + 1,
				email = excluded.email, line = excluded.line,
				first_attempt = coalesce(first_attempt, excluded.first_attempt),
				last_attempt = excluded.last_attempt, updated_at = excluded.updated_at
			WHERE state IN ('pending', 'deferred')`},
		{&st.state, `SELECT state FROM recipients WHERE campaign = ? AND key = ?`},
		{&st.outcome, `UPDATE recipients SET state = ?, provider_id = ?, code = ?, enhanced = ?, reason = ?,
			next_attempt = ?, updated_at = ? WHERE campaign = ? AND key = ? AND state = 'sending'`},
		{&st.release, `UPDATE recipients SET state = 'pending', attempts = max(attempts - 1, 0),
			first_attempt = CASE WHEN attempts <= 1 THEN NULL ELSE first_attempt END, updated_at = ?
			WHERE campaign = ? AND key = ? AND state = 'sending'`},
		{&st.suppress, insertSuppression},
		{&st.reopen, `UPDATE recipients SET state = 'pending', code = 0, enhanced = '', reason = '', updated_at = ?
			WHERE campaign = ? AND key = ? AND state = 'failed'`},
		{&st.unsuppress, `DELETE FROM suppressions WHERE key = ? AND source = ?`},
	} {
		s, err := w.s.wdb.PrepareContext(ctx, p.sql)
		if err != nil {
			closeStmts(st)
			return fmt.Errorf("prepare: %w", err)
		}
		*p.dst = s
	}
	w.stmts = st
	return nil
}

// closeStmts closes the writer's prepared statements.
func (w *Writer) closeStmts() { closeStmts(w.stmts) }

func closeStmts(st writerStmts) {
	for _, s := range []*sql.Stmt{st.claim, st.state, st.outcome, st.release, st.suppress, st.reopen, st.unsuppress} {
		if s != nil {
			s.Close()
		}
	}
}

// writeClaim applies one claim. refused is the claim's answer when the row's state
// forbids it; err is a failure of the transaction.
func (w *Writer) writeClaim(ctx context.Context, st writerStmts, c Claim) (refused, err error) {
	now := w.s.now().UnixMilli()
	res, err := st.claim.ExecContext(ctx, w.campaign, c.Key, c.Email, c.Line, now)
	if err != nil {
		return nil, fmt.Errorf("claim %s: %w", c.Key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, fmt.Errorf("claim %s: %w", c.Key, err)
	}
	if n == 1 {
		return nil, nil
	}
	var state State
	if err := st.state.QueryRowContext(ctx, w.campaign, c.Key).Scan(&state); err != nil {
		return nil, fmt.Errorf("claim %s: read state: %w", c.Key, err)
	}
	return &StateError{Campaign: w.campaign, Key: c.Key, State: state}, nil
}

// writeOutcome applies one outcome. An outcome that does not follow a claim is a
// broken invariant: it is reported through Err without failing the batch.
func (w *Writer) writeOutcome(ctx context.Context, st writerStmts, o Outcome) error {
	now := w.s.now().UnixMilli()
	var res sql.Result
	var err error
	switch {
	case o.State == Pending && o.Reopen:
		if _, err := st.reopen.ExecContext(ctx, now, w.campaign, o.Key); err != nil {
			return fmt.Errorf("reopen %s: %w", o.Key, err)
		}
		if _, err := st.unsuppress.ExecContext(ctx, o.Key, "bounce:"+w.campaign); err != nil {
			return fmt.Errorf("reopen %s: unsuppress: %w", o.Key, err)
		}
		return nil
	case o.State == Pending:
		res, err = st.release.ExecContext(ctx, now, w.campaign, o.Key)
	case o.State == Sent, o.State == Deferred, o.State == Failed, o.State == Unknown:
		res, err = st.outcome.ExecContext(ctx, string(o.State), o.ProviderID, o.Code, o.Enhanced,
			truncate(o.Reason, maxReason), millis(o.NextAttempt), now, w.campaign, o.Key)
	default:
		w.setErr(fmt.Errorf("journal: campaign %q: outcome of %s has invalid state %q", w.campaign, o.Key, o.State))
		return nil
	}
	if err != nil {
		return fmt.Errorf("outcome %s of %s: %w", o.State, o.Key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("outcome %s of %s: %w", o.State, o.Key, err)
	}
	if n == 0 && o.State != Pending {
		w.setErr(fmt.Errorf("journal: campaign %q: outcome %s of %s without a claim (the recipient is not sending)", w.campaign, o.State, o.Key))
	}
	if o.Suppress {
		email := o.Email
		if email == "" {
			email = o.Key
		}
		sp := Suppression{Email: email, Reason: o.Reason, Source: "bounce:" + w.campaign}
		if _, err := execSuppression(ctx, st.suppress, sp, w.s.now()); err != nil {
			return fmt.Errorf("suppress %s: %w", o.Key, err)
		}
	}
	return nil
}
