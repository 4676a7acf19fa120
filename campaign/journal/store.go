package journal

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// secretKey is the meta key of the unsubscribe-token secret.
const secretKey = "unsubscribe_secret"

// secretLen is the length in bytes of the unsubscribe-token secret.
const secretLen = 32

// Secret returns the store's 32-byte HMAC secret for unsubscribe tokens, created with
// crypto/rand on first use. Concurrent first uses (several processes) agree on one
// secret: each inserts its candidate only if none exists, then reads what is stored.
func (s *Store) Secret(ctx context.Context) ([]byte, error) {
	var b []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, secretKey).Scan(&b)
	if err == nil && len(b) == secretLen {
		return b, nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, s.errorf("read secret", err)
	}
	cand := make([]byte, secretLen)
	if _, err := rand.Read(cand); err != nil {
		return nil, s.errorf("create secret", err)
	}
	if _, err := s.wdb.ExecContext(ctx, `INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)`, secretKey, cand); err != nil {
		return nil, s.errorf("store secret", err)
	}
	if err := s.wdb.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, secretKey).Scan(&b); err != nil {
		return nil, s.errorf("read secret", err)
	}
	if len(b) != secretLen {
		return nil, s.errorf("read secret", fmt.Errorf("stored secret has %d bytes, want %d", len(b), secretLen))
	}
	return b, nil
}

// BeginRun starts a run of campaign; the caller must hold the campaign's Lock. Every
// `sending` row of the campaign becomes `unknown` (a process died between claim and
// outcome, and the lock guarantees no live process owns them); when resendUnknown is
// set, every `unknown` row (those just recovered included) becomes `pending`. The run
// is recorded with its start time and this process's pid. recovered is the number of
// rows turned from `sending` into `unknown`.
func (s *Store) BeginRun(ctx context.Context, campaign string, resendUnknown bool) (runID int64, recovered int, err error) {
	now := s.now().UnixMilli()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, s.errorf(fmt.Sprintf("begin run of %q", campaign), err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE recipients SET state = 'unknown', updated_at = ?
		WHERE campaign = ? AND state = 'sending'`, now, campaign)
	if err != nil {
		return 0, 0, s.errorf(fmt.Sprintf("begin run of %q: recover claims", campaign), err)
	}
	n, _ := res.RowsAffected()
	if resendUnknown {
		if _, err := tx.ExecContext(ctx, `UPDATE recipients SET state = 'pending', updated_at = ?
			WHERE campaign = ? AND state = 'unknown'`, now, campaign); err != nil {
			return 0, 0, s.errorf(fmt.Sprintf("begin run of %q: resend unknown", campaign), err)
		}
	}
	res, err = tx.ExecContext(ctx, `INSERT INTO runs (campaign, started, pid) VALUES (?, ?, ?)`, campaign, now, os.Getpid())
	if err != nil {
		return 0, 0, s.errorf(fmt.Sprintf("begin run of %q: record run", campaign), err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, 0, s.errorf(fmt.Sprintf("begin run of %q: record run", campaign), err)
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, s.errorf(fmt.Sprintf("begin run of %q: commit", campaign), err)
	}
	return id, int(n), nil
}

// ResendUnknown turns every `unknown` recipient of campaign back into `pending`, so that
// the run sends them again; it returns how many. (BeginRun with resendUnknown does the
// same at the start of a run; this is for a run that asks the user first.)
func (s *Store) ResendUnknown(ctx context.Context, campaign string) (int, error) {
	res, err := s.wdb.ExecContext(ctx, `UPDATE recipients SET state = 'pending', updated_at = ?
		WHERE campaign = ? AND state = 'unknown'`, s.now().UnixMilli(), campaign)
	if err != nil {
		return 0, s.errorf(fmt.Sprintf("resend unknown of %q", campaign), err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// EndRun records the end of run runID and its JSON summary, kept for `status`.
func (s *Store) EndRun(ctx context.Context, runID int64, summary []byte) error {
	res, err := s.wdb.ExecContext(ctx, `UPDATE runs SET ended = ?, summary = ? WHERE id = ?`,
		s.now().UnixMilli(), summary, runID)
	if err != nil {
		return s.errorf(fmt.Sprintf("end run %d", runID), err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return s.errorf(fmt.Sprintf("end run %d", runID), errors.New("no such run"))
	}
	return nil
}

// RunInfo describes one run of a campaign.
type RunInfo struct {
	// ID is the run's id, as returned by BeginRun.
	ID int64
	// Started and Ended are the run's start and end (Ended is zero while it runs or
	// when it never ended cleanly).
	Started, Ended time.Time
	// PID is the process that ran it.
	PID int
	// Summary is the JSON summary passed to EndRun (nil before that).
	Summary []byte
}

// LastRun returns the most recent run of campaign; ok is false when there was none.
func (s *Store) LastRun(ctx context.Context, campaign string) (RunInfo, bool, error) {
	var ri RunInfo
	var started int64
	var ended sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `SELECT id, started, ended, pid, summary FROM runs
		WHERE campaign = ? ORDER BY id DESC LIMIT 1`, campaign).Scan(&ri.ID, &started, &ended, &ri.PID, &ri.Summary)
	if errors.Is(err, sql.ErrNoRows) {
		return RunInfo{}, false, nil
	}
	if err != nil {
		return RunInfo{}, false, s.errorf(fmt.Sprintf("last run of %q", campaign), err)
	}
	ri.Started = time.UnixMilli(started)
	ri.Ended = fromMillis(ended)
	return ri, true, nil
}

// Campaigns returns the names of every campaign in the journal, sorted.
func (s *Store) Campaigns(ctx context.Context) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT DISTINCT campaign FROM recipients
		UNION SELECT campaign FROM runs ORDER BY 1`)
	if err != nil {
		return nil, s.errorf("list campaigns", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, s.errorf("list campaigns", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("list campaigns", err)
	}
	return out, nil
}

// Entry is what the list reader needs to know about a recipient already in the journal.
type Entry struct {
	// Key is the canonical (trimmed, lower-case) address.
	Key string
	// State is the recipient's journal state.
	State State
	// Attempts is how many times the recipient was claimed.
	Attempts int
	// FirstAttempt is when it was first claimed; NextAttempt when a deferred recipient
	// may be retried (zero when not set).
	FirstAttempt, NextAttempt time.Time
}

// jsonKeys encodes keys as a JSON array, bound as one parameter and expanded with
// json_each, so that any number of keys is one prepared query.
func jsonKeys(keys []string) (string, error) {
	b, err := json.Marshal(keys)
	return string(b), err
}

// Lookup returns the journal entries of the given keys (canonical lower-case addresses)
// for campaign in one query; keys not in the journal are absent from the map.
func (s *Store) Lookup(ctx context.Context, campaign string, keys []string) (map[string]Entry, error) {
	out := make(map[string]Entry, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	arg, err := jsonKeys(keys)
	if err != nil {
		return nil, s.errorf(fmt.Sprintf("look up recipients of %q", campaign), err)
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT key, state, attempts, first_attempt, next_attempt
		FROM recipients WHERE campaign = ? AND key IN (SELECT value FROM json_each(?))`, campaign, arg)
	if err != nil {
		return nil, s.errorf(fmt.Sprintf("look up recipients of %q", campaign), err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var first, next sql.NullInt64
		if err := rows.Scan(&e.Key, &e.State, &e.Attempts, &first, &next); err != nil {
			return nil, s.errorf(fmt.Sprintf("look up recipients of %q", campaign), err)
		}
		e.FirstAttempt, e.NextAttempt = fromMillis(first), fromMillis(next)
		out[e.Key] = e
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf(fmt.Sprintf("look up recipients of %q", campaign), err)
	}
	return out, nil
}

// Counts returns the number of recipients of campaign in each state; every State is
// present in the map, with 0 when no recipient is in it.
func (s *Store) Counts(ctx context.Context, campaign string) (map[State]int, error) {
	out := make(map[State]int, len(States))
	for _, st := range States {
		out[st] = 0
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT state, count(*) FROM recipients WHERE campaign = ? GROUP BY state`, campaign)
	if err != nil {
		return nil, s.errorf(fmt.Sprintf("count recipients of %q", campaign), err)
	}
	defer rows.Close()
	for rows.Next() {
		var st State
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, s.errorf(fmt.Sprintf("count recipients of %q", campaign), err)
		}
		out[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf(fmt.Sprintf("count recipients of %q", campaign), err)
	}
	return out, nil
}

// Row is one recipient of a campaign as the journal holds it.
type Row struct {
	// Email is the address as it appeared in the list.
	Email string
	// Line is the list line the recipient came from.
	Line int
	// State is the journal state.
	State State
	// Attempts is how many times the recipient was claimed.
	Attempts int
	// Code is the last SMTP or HTTP code (0 when none).
	Code int
	// Enhanced is the last enhanced status code or API error name; Reason the
	// provider's text; ProviderID the provider's message id (sent).
	Enhanced, Reason, ProviderID string
	// FirstAttempt, LastAttempt and NextAttempt are the first and last claims and when a
	// deferred recipient may be retried; UpdatedAt the last change. Zero when unset.
	FirstAttempt, LastAttempt, NextAttempt, UpdatedAt time.Time
}

// EachRow calls fn for every recipient of campaign in one of states (all states when
// states is empty), in list-line order. An error from fn stops the walk and is
// returned as is.
func (s *Store) EachRow(ctx context.Context, campaign string, states []State, fn func(Row) error) error {
	q := `SELECT email, line, state, attempts, code, enhanced, reason, provider_id,
		first_attempt, last_attempt, next_attempt, updated_at FROM recipients`
	args := []any{campaign}
	if len(states) == 0 {
		q += ` WHERE campaign = ?`
	} else {
		// Without statistics SQLite would scan the whole campaign by primary key; the
		// states asked for (failed, unknown) are usually a small share of it.
		q += ` INDEXED BY recipients_state WHERE campaign = ? AND state IN (?` + strings.Repeat(`, ?`, len(states)-1) + `)`
		for _, st := range states {
			args = append(args, string(st))
		}
	}
	q += ` ORDER BY line, key`
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return s.errorf(fmt.Sprintf("list recipients of %q", campaign), err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Row
		var first, last, next sql.NullInt64
		var updated int64
		if err := rows.Scan(&r.Email, &r.Line, &r.State, &r.Attempts, &r.Code, &r.Enhanced, &r.Reason,
			&r.ProviderID, &first, &last, &next, &updated); err != nil {
			return s.errorf(fmt.Sprintf("list recipients of %q", campaign), err)
		}
		r.FirstAttempt, r.LastAttempt, r.NextAttempt = fromMillis(first), fromMillis(last), fromMillis(next)
		r.UpdatedAt = time.UnixMilli(updated)
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.errorf(fmt.Sprintf("list recipients of %q", campaign), err)
	}
	return nil
}
