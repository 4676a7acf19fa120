package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

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

// Suppress adds list to the suppression list in one transaction. Addresses are compared
// trimmed and lower-cased; an address already on the list keeps its entry (the first
// reason wins) and an empty one is skipped. added counts the new entries.
func (s *Store) Suppress(ctx context.Context, list []Suppression) (added int, err error) {
	if len(list) == 0 {
		return 0, nil
	}
	now := s.now()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return 0, s.errorf("suppress", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, insertSuppression)
	if err != nil {
		return 0, s.errorf("suppress", err)
	}
	defer stmt.Close()
	for _, sp := range list {
		n, err := execSuppression(ctx, stmt, sp, now)
		if err != nil {
			return 0, s.errorf(fmt.Sprintf("suppress %q", sp.Email), err)
		}
		added += n
	}
	if err := tx.Commit(); err != nil {
		return 0, s.errorf("suppress: commit", err)
	}
	return added, nil
}

// insertSuppression adds one address unless it is already suppressed.
const insertSuppression = `INSERT OR IGNORE INTO suppressions (key, email, reason, source, created_at) VALUES (?, ?, ?, ?, ?)`

// execSuppression runs insertSuppression for sp and returns 1 when it was added.
func execSuppression(ctx context.Context, stmt *sql.Stmt, sp Suppression, now time.Time) (int, error) {
	key := normalize(sp.Email)
	if key == "" {
		return 0, nil
	}
	at := sp.At
	if at.IsZero() {
		at = now
	}
	res, err := stmt.ExecContext(ctx, key, strings.TrimSpace(sp.Email), truncate(sp.Reason, maxReason), sp.Source, at.UnixMilli())
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Unsuppress removes emails (compared trimmed and lower-cased) from the suppression
// list; removed counts the entries that were there.
func (s *Store) Unsuppress(ctx context.Context, emails []string) (removed int, err error) {
	if len(emails) == 0 {
		return 0, nil
	}
	arg, err := jsonKeys(normalizeAll(emails))
	if err != nil {
		return 0, s.errorf("unsuppress", err)
	}
	res, err := s.wdb.ExecContext(ctx, `DELETE FROM suppressions WHERE key IN (SELECT value FROM json_each(?))`, arg)
	if err != nil {
		return 0, s.errorf("unsuppress", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, s.errorf("unsuppress", err)
	}
	return int(n), nil
}

// Suppressed looks up keys (compared trimmed and lower-cased) in one query and returns
// the entries of those that are suppressed, by canonical key.
func (s *Store) Suppressed(ctx context.Context, keys []string) (map[string]Suppression, error) {
	out := make(map[string]Suppression)
	if len(keys) == 0 {
		return out, nil
	}
	arg, err := jsonKeys(normalizeAll(keys))
	if err != nil {
		return nil, s.errorf("look up suppressions", err)
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT key, email, reason, source, created_at FROM suppressions
		WHERE key IN (SELECT value FROM json_each(?))`, arg)
	if err != nil {
		return nil, s.errorf("look up suppressions", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var sp Suppression
		var at int64
		if err := rows.Scan(&key, &sp.Email, &sp.Reason, &sp.Source, &at); err != nil {
			return nil, s.errorf("look up suppressions", err)
		}
		sp.At = time.UnixMilli(at)
		out[key] = sp
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("look up suppressions", err)
	}
	return out, nil
}

// IsSuppressed reports whether key (compared trimmed and lower-cased) is suppressed.
func (s *Store) IsSuppressed(ctx context.Context, key string) (bool, error) {
	var one int
	err := s.rdb.QueryRowContext(ctx, `SELECT 1 FROM suppressions WHERE key = ?`, normalize(key)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.errorf("look up suppression", err)
	}
	return true, nil
}

// EachSuppressed calls fn for every suppressed address, ordered by canonical address.
// An error from fn stops the walk and is returned as is.
func (s *Store) EachSuppressed(ctx context.Context, fn func(Suppression) error) error {
	rows, err := s.rdb.QueryContext(ctx, `SELECT email, reason, source, created_at FROM suppressions ORDER BY key`)
	if err != nil {
		return s.errorf("list suppressions", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sp Suppression
		var at int64
		if err := rows.Scan(&sp.Email, &sp.Reason, &sp.Source, &at); err != nil {
			return s.errorf("list suppressions", err)
		}
		sp.At = time.UnixMilli(at)
		if err := fn(sp); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.errorf("list suppressions", err)
	}
	return nil
}

// normalizeAll returns the canonical keys of emails.
func normalizeAll(emails []string) []string {
	out := make([]string, len(emails))
	for i, e := range emails {
		out[i] = normalize(e)
	}
	return out
}
