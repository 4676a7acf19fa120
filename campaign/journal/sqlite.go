package journal

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// busyTimeout is how long a write waits for another process's write transaction
// (herald serve adding a suppression, another campaign's run) before failing.
const busyTimeout = 15 * time.Second

// secretKey is the meta key of the unsubscribe-token secret.
const secretKey = "unsubscribe_secret"

// secretLen is the length in bytes of the unsubscribe-token secret.
const secretLen = 32

// sqliteStore is a journal in one SQLite file. One write connection serialises the
// writes of the process; reads use their own connections and, thanks to WAL, never wait.
type sqliteStore struct {
	path string
	now  func() time.Time
	wdb  *sql.DB
	rdb  *sql.DB
}

func openSQLite(ctx context.Context, path string, o Options) (*sqliteStore, error) {
	if path == "" {
		return nil, errors.New("journal: open: empty store path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	s := &sqliteStore{path: path, now: o.Now}
	name := "file:" + (&url.URL{Path: abs}).EscapedPath()
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)",
		busyTimeout.Milliseconds())
	// Write transactions begin IMMEDIATE: they take the write lock up front and wait on
	// the busy timeout, instead of failing when a read turns into a write.
	s.wdb, err = sql.Open("sqlite", name+"?"+common+"&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxIdleTime(0)
	s.wdb.SetConnMaxLifetime(0)
	if err := migrateSQLiteWhenFree(ctx, s.wdb, len(sqliteMigrations)); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	s.rdb, err = sql.Open("sqlite", name+"?"+common+"&_query_only=1")
	if err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	s.rdb.SetMaxIdleConns(4)
	if err := s.rdb.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	return s, nil
}

func (s *sqliteStore) Kind() string { return "sqlite" }
func (s *sqliteStore) Name() string { return s.path }

func (s *sqliteStore) Close() error {
	err := s.wdb.Close()
	if rerr := s.rdb.Close(); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("journal: close %s: %w", s.path, err)
	}
	return nil
}

func (s *sqliteStore) errorf(op string, err error) error {
	return fmt.Errorf("journal %s: %s: %w", s.path, op, err)
}

func (s *sqliteStore) Secret(ctx context.Context) ([]byte, error) {
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

// --- suppressions

const sqliteInsertSuppression = `INSERT OR IGNORE INTO suppressions (key, email, reason, source, created_at) VALUES (?, ?, ?, ?, ?)`

// suppressionArgs returns the key and the values to store of sp (ok false: empty).
func suppressionArgs(sp Suppression, now time.Time) (key, email, reason, source string, at int64, ok bool) {
	key = normalize(sp.Email)
	if key == "" {
		return "", "", "", "", 0, false
	}
	t := sp.At
	if t.IsZero() {
		t = now
	}
	return key, strings.TrimSpace(sp.Email), truncate(sp.Reason, maxReason), sp.Source, t.UnixMilli(), true
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func sqliteSuppress(ctx context.Context, db execer, sp Suppression, now time.Time) (int, error) {
	key, email, reason, source, at, ok := suppressionArgs(sp, now)
	if !ok {
		return 0, nil
	}
	res, err := db.ExecContext(ctx, sqliteInsertSuppression, key, email, reason, source, at)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (s *sqliteStore) Suppress(ctx context.Context, list []Suppression) (int, error) {
	if len(list) == 0 {
		return 0, nil
	}
	now := s.now()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return 0, s.errorf("suppress", err)
	}
	defer tx.Rollback()
	added := 0
	for _, sp := range list {
		n, err := sqliteSuppress(ctx, tx, sp, now)
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

// jsonArg encodes v as JSON, bound as one parameter and expanded with json_each, so
// that any number of keys is one prepared query.
func jsonArg(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (s *sqliteStore) Unsuppress(ctx context.Context, emails []string) (int, error) {
	if len(emails) == 0 {
		return 0, nil
	}
	res, err := s.wdb.ExecContext(ctx, `DELETE FROM suppressions WHERE key IN (SELECT value FROM json_each(?))`, jsonArg(normalizeAll(emails)))
	if err != nil {
		return 0, s.errorf("unsuppress", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, s.errorf("unsuppress", err)
	}
	return int(n), nil
}

func (s *sqliteStore) Suppressed(ctx context.Context, keys []string) (map[string]Suppression, error) {
	out := make(map[string]Suppression)
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT key, email, reason, source, created_at FROM suppressions
		WHERE key IN (SELECT value FROM json_each(?))`, jsonArg(normalizeAll(keys)))
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

func (s *sqliteStore) IsSuppressed(ctx context.Context, key string) (bool, error) {
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

func (s *sqliteStore) EachSuppressed(ctx context.Context, fn func(Suppression) error) error {
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

// --- runs

// BeginRun takes the campaign's file lock (the liveness of a run on SQLite: the kernel
// drops it when the process dies), settles the runs it proves dead, and records the run.
func (s *sqliteStore) BeginRun(ctx context.Context, spec RunSpec) (Run, error) {
	release, err := Lock(s.path, spec.Campaign)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			release()
		}
	}()
	now := s.now().UnixMilli()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, s.errorf(fmt.Sprintf("begin run of %q", spec.Campaign), err)
	}
	defer tx.Rollback()
	if _, err := s.settleLocked(ctx, tx, spec.Campaign, now); err != nil {
		return nil, s.errorf(fmt.Sprintf("begin run of %q: settle dead runs", spec.Campaign), err)
	}
	if spec.ResendUnknown {
		if _, err := tx.ExecContext(ctx, `UPDATE recipients SET state = `+tResend.to()+`, run_id = NULL, updated_at = ?
			WHERE campaign = ? AND state IN `+tResend.fromSQL(), now, spec.Campaign); err != nil {
			return nil, s.errorf(fmt.Sprintf("begin run of %q: resend unknown", spec.Campaign), err)
		}
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO runs (campaign, started, pid, host) VALUES (?, ?, ?, ?)`,
		spec.Campaign, now, spec.PID, spec.Host)
	if err != nil {
		return nil, s.errorf(fmt.Sprintf("begin run of %q: record run", spec.Campaign), err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return nil, s.errorf(fmt.Sprintf("begin run of %q: record run", spec.Campaign), err)
	}
	if err := tx.Commit(); err != nil {
		return nil, s.errorf(fmt.Sprintf("begin run of %q: commit", spec.Campaign), err)
	}
	ok = true
	r := &sqliteRun{s: s, id: id, campaign: spec.Campaign, unlock: release, lost: make(chan struct{})}
	if err := r.prepare(ctx); err != nil {
		release()
		return nil, s.errorf(fmt.Sprintf("begin run of %q: prepare", spec.Campaign), err)
	}
	r.w = newWriter(spec.Campaign, r.apply)
	return r, nil
}

// settleLocked settles every unfinished run of campaign; the caller holds the
// campaign's lock, which proves that none of them is alive. Rows claimed or sending
// without an owner (files from before runs owned rows) are settled the same way.
func (s *sqliteStore) settleLocked(ctx context.Context, tx *sql.Tx, campaign string, now int64) (Settled, error) {
	var st Settled
	rows, err := tx.QueryContext(ctx, `SELECT id FROM runs WHERE campaign = ? AND ended IS NULL`, campaign)
	if err != nil {
		return st, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return st, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, err
	}
	owner := `(run_id IS NULL OR run_id IN (SELECT id FROM runs WHERE campaign = ?2 AND ended IS NULL))`
	res, err := tx.ExecContext(ctx, `UPDATE recipients SET state = `+tSettleClaimed.to()+`, run_id = NULL, updated_at = ?1
		WHERE campaign = ?2 AND state IN `+tSettleClaimed.fromSQL()+` AND `+owner, now, campaign)
	if err != nil {
		return st, err
	}
	n, _ := res.RowsAffected()
	st.Released = int(n)
	res, err = tx.ExecContext(ctx, `UPDATE recipients SET state = `+tSettleSending.to()+`, updated_at = ?1
		WHERE campaign = ?2 AND state IN `+tSettleSending.fromSQL()+` AND `+owner, now, campaign)
	if err != nil {
		return st, err
	}
	n, _ = res.RowsAffected()
	st.Unknown = int(n)
	if len(ids) > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE runs SET ended = ?, died = 1 WHERE campaign = ? AND ended IS NULL`, now, campaign); err != nil {
			return st, err
		}
	}
	st.Runs = len(ids)
	return st, nil
}

// Settle settles the campaign's dead runs when no run holds its lock.
func (s *sqliteStore) Settle(ctx context.Context, campaign string) (Settled, error) {
	fl := flock.New(LockPath(s.path, campaign))
	got, err := fl.TryLock()
	if err != nil || !got {
		return Settled{}, nil // a live run (or no lock file to take): nothing is dead
	}
	defer fl.Unlock()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return Settled{}, s.errorf("settle dead runs", err)
	}
	defer tx.Rollback()
	st, err := s.settleLocked(ctx, tx, campaign, s.now().UnixMilli())
	if err != nil {
		return Settled{}, s.errorf("settle dead runs", err)
	}
	if err := tx.Commit(); err != nil {
		return Settled{}, s.errorf("settle dead runs", err)
	}
	return st, nil
}

func (s *sqliteStore) ResendUnknown(ctx context.Context, campaign string) (int, error) {
	res, err := s.wdb.ExecContext(ctx, `UPDATE recipients SET state = `+tResend.to()+`, run_id = NULL, updated_at = ?
		WHERE campaign = ? AND state IN `+tResend.fromSQL(), s.now().UnixMilli(), campaign)
	if err != nil {
		return 0, s.errorf(fmt.Sprintf("resend unknown of %q", campaign), err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

const sqliteRunCols = `id, campaign, started, ended, host, pid, died, summary,
	(SELECT count(*) FROM recipients r WHERE r.campaign = runs.campaign AND r.state = 'sent' AND r.run_id = runs.id)`

func scanRun(sc interface{ Scan(...any) error }) (RunInfo, error) {
	var ri RunInfo
	var started int64
	var ended *int64
	var died int
	err := sc.Scan(&ri.ID, &ri.Campaign, &started, &ended, &ri.Host, &ri.PID, &died, &ri.Summary, &ri.Sent)
	ri.Started, ri.Ended, ri.Died = time.UnixMilli(started), fromMillis(ended), died != 0
	return ri, err
}

// LiveRuns: on SQLite at most one run is alive, the one holding the campaign's lock.
func (s *sqliteStore) LiveRuns(ctx context.Context, campaign string) ([]RunInfo, error) {
	fl := flock.New(LockPath(s.path, campaign))
	got, err := fl.TryLock()
	if err == nil && got {
		fl.Unlock()
		return nil, nil
	}
	ri, ok, err := s.queryRun(ctx, `SELECT `+sqliteRunCols+` FROM runs WHERE campaign = ? AND ended IS NULL ORDER BY id DESC LIMIT 1`, campaign)
	if err != nil || !ok {
		return nil, err
	}
	return []RunInfo{ri}, nil
}

func (s *sqliteStore) queryRun(ctx context.Context, q string, args ...any) (RunInfo, bool, error) {
	ri, err := scanRun(s.rdb.QueryRowContext(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return RunInfo{}, false, nil
	}
	if err != nil {
		return RunInfo{}, false, s.errorf("read runs", err)
	}
	return ri, true, nil
}

func (s *sqliteStore) LastRun(ctx context.Context, campaign string) (RunInfo, bool, error) {
	return s.queryRun(ctx, `SELECT `+sqliteRunCols+` FROM runs WHERE campaign = ? ORDER BY id DESC LIMIT 1`, campaign)
}

func (s *sqliteStore) Campaign(ctx context.Context, campaign string) (ListInfo, bool, error) {
	var li ListInfo
	var cols string
	err := s.rdb.QueryRowContext(ctx, `SELECT columns, template_hash, total, invalid, duplicate, suppressed
		FROM campaigns WHERE name = ?`, campaign).Scan(&cols, &li.TemplateHash, &li.Total, &li.Invalid, &li.Duplicate, &li.Suppressed)
	if errors.Is(err, sql.ErrNoRows) {
		return li, false, nil
	}
	if err != nil {
		return li, false, s.errorf(fmt.Sprintf("read campaign %q", campaign), err)
	}
	if err := json.Unmarshal([]byte(cols), &li.Columns); err != nil {
		return li, false, s.errorf(fmt.Sprintf("read campaign %q", campaign), err)
	}
	return li, true, nil
}

func (s *sqliteStore) Campaigns(ctx context.Context) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT DISTINCT campaign FROM recipients
		UNION SELECT campaign FROM runs UNION SELECT name FROM campaigns ORDER BY 1`)
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

func (s *sqliteStore) Counts(ctx context.Context, campaign string) (map[State]int, error) {
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

func (s *sqliteStore) PendingSuppressed(ctx context.Context, campaign string) (int, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM recipients r JOIN suppressions s ON s.key = r.key
		WHERE r.campaign = ? AND r.state IN `+tClaim.fromSQL(), campaign).Scan(&n)
	if err != nil {
		return 0, s.errorf(fmt.Sprintf("count suppressed recipients of %q", campaign), err)
	}
	return n, nil
}

func (s *sqliteStore) Lookup(ctx context.Context, campaign string, keys []string) (map[string]Entry, error) {
	out := make(map[string]Entry, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT key, state, attempts, first_attempt, next_attempt
		FROM recipients WHERE campaign = ? AND key IN (SELECT value FROM json_each(?))`, campaign, jsonArg(keys))
	if err != nil {
		return nil, s.errorf(fmt.Sprintf("look up recipients of %q", campaign), err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var first, next *int64
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

const rowCols = `email, line, state, attempts, code, enhanced, reason, provider_id, provider,
	first_attempt, last_attempt, next_attempt, updated_at`

func scanRow(sc interface{ Scan(...any) error }, extra ...any) (Row, error) {
	var r Row
	var first, last, next *int64
	var updated int64
	dst := append([]any{&r.Email, &r.Line, &r.State, &r.Attempts, &r.Code, &r.Enhanced, &r.Reason,
		&r.ProviderID, &r.Provider, &first, &last, &next, &updated}, extra...)
	if err := sc.Scan(dst...); err != nil {
		return r, err
	}
	r.FirstAttempt, r.LastAttempt, r.NextAttempt = fromMillis(first), fromMillis(last), fromMillis(next)
	r.UpdatedAt = time.UnixMilli(updated)
	return r, nil
}

func (s *sqliteStore) EachRow(ctx context.Context, campaign string, states []State, fn func(Row) error) error {
	q := `SELECT ` + rowCols + ` FROM recipients`
	args := []any{campaign}
	if len(states) == 0 {
		q += ` WHERE campaign = ?`
	} else {
		// Without statistics SQLite would scan the whole campaign by primary key; the
		// states asked for (failed, unknown) are usually a small share of it.
		q += ` INDEXED BY recipients_queue WHERE campaign = ? AND state IN (?` + strings.Repeat(`, ?`, len(states)-1) + `)`
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
		r, err := scanRow(rows)
		if err != nil {
			return s.errorf(fmt.Sprintf("list recipients of %q", campaign), err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.errorf(fmt.Sprintf("list recipients of %q", campaign), err)
	}
	return nil
}

// --- copy

func (s *sqliteStore) Export(ctx context.Context, fn func(Record) error) error {
	var b []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, secretKey).Scan(&b)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return s.errorf("export secret", err)
	}
	if len(b) == secretLen {
		if err := fn(Record{Secret: b}); err != nil {
			return err
		}
	}
	if err := s.EachSuppressed(ctx, func(sp Suppression) error { return fn(Record{Suppression: &sp}) }); err != nil {
		return err
	}
	names, err := s.Campaigns(ctx)
	if err != nil {
		return err
	}
	for _, name := range names {
		li, ok, err := s.Campaign(ctx, name)
		if err != nil {
			return err
		}
		if ok {
			if err := fn(Record{Campaign: &CampaignRecord{Name: name, Info: li}}); err != nil {
				return err
			}
		}
		rows, err := s.rdb.QueryContext(ctx, `SELECT `+rowCols+`, key, fields FROM recipients WHERE campaign = ? ORDER BY line, key`, name)
		if err != nil {
			return s.errorf("export recipients", err)
		}
		for rows.Next() {
			rr := RecipientRecord{Campaign: name}
			var fields *string
			r, err := scanRow(rows, &rr.Key, &fields)
			if err != nil {
				rows.Close()
				return s.errorf("export recipients", err)
			}
			rr.Row = r
			if fields != nil {
				_ = json.Unmarshal([]byte(*fields), &rr.Fields)
			}
			if err := fn(Record{Recipient: &rr}); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s.errorf("export recipients", err)
		}
	}
	return nil
}

func (s *sqliteStore) Import(ctx context.Context, each func(add func(Record) error) error) (int, error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return 0, s.errorf("import", err)
	}
	defer tx.Rollback()
	n := 0
	now := s.now()
	err = each(func(rec Record) error {
		var err error
		switch {
		case rec.Secret != nil:
			_, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)`, secretKey, rec.Secret)
		case rec.Suppression != nil:
			_, err = sqliteSuppress(ctx, tx, *rec.Suppression, now)
		case rec.Campaign != nil:
			li := rec.Campaign.Info
			_, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO campaigns (name, columns, template_hash, total, invalid, duplicate, suppressed, loaded_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, rec.Campaign.Name, jsonArg(nonNil(li.Columns)), li.TemplateHash, li.Total, li.Invalid, li.Duplicate, li.Suppressed, now.UnixMilli())
		case rec.Recipient != nil:
			rr := rec.Recipient
			r := rr.Row
			st := r.State
			if st == Claimed {
				st = Pending
			}
			if st == Sending {
				st = Unknown
			}
			_, err = tx.ExecContext(ctx, `INSERT OR IGNORE INTO recipients (campaign, key, email, line, state, attempts, code,
				enhanced, reason, provider_id, first_attempt, last_attempt, next_attempt, updated_at, fields, provider)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, rr.Campaign, rr.Key, r.Email, r.Line, string(st), r.Attempts,
				r.Code, r.Enhanced, r.Reason, r.ProviderID, millis(r.FirstAttempt), millis(r.LastAttempt), millis(r.NextAttempt),
				r.UpdatedAt.UnixMilli(), fieldsArg(rr.Fields), r.Provider)
		}
		if err == nil {
			n++
		}
		return err
	})
	if err != nil {
		return 0, s.errorf("import", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, s.errorf("import: commit", err)
	}
	return n, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// fieldsArg stores a row's fields as a JSON array (NULL when none).
func fieldsArg(f []string) any {
	if f == nil {
		return nil
	}
	return jsonArg(f)
}

// --- a run

type sqliteRun struct {
	s        *sqliteStore
	id       int64
	campaign string
	unlock   func() error
	w        *writer
	lost     chan struct{} // never closed: the file lock cannot be lost
	endOnce  sync.Once
	endErr   error

	// stmts are the group commit's statements, prepared once on the write connection:
	// parsing them again for every row was most of a commit's CPU.
	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt
}

// sqliteRunSQL returns the statement of a group commit that makes transition t.
func sqliteRunSQL(t Transition) string {
	switch t.Name {
	case tHandoff.Name:
		return `UPDATE recipients SET state = ` + t.to() + `, attempts = attempts + 1,
			first_attempt = coalesce(first_attempt, ?1), last_attempt = ?1, updated_at = ?1
			WHERE campaign = ?2 AND key = ?3 AND run_id = ?4 AND state IN ` + t.fromSQL()
	case tReopen.Name:
		return `UPDATE recipients SET state = ` + t.to() + `, run_id = NULL, code = 0, enhanced = '', reason = '',
			updated_at = ?1 WHERE campaign = ?2 AND key = ?3 AND run_id = ?4 AND state IN ` + t.fromSQL()
	case tRelease.Name, tHold.Name:
		// The attempt never reached the provider: it does not count. A hold keeps the
		// row the run's (claimed) until the run ends.
		owner := "NULL"
		if t.Name == tHold.Name {
			owner = "run_id"
		}
		return `UPDATE recipients SET state = ` + t.to() + `, run_id = ` + owner + `,
			attempts = CASE WHEN state = 'sending' THEN max(attempts - 1, 0) ELSE attempts END,
			first_attempt = CASE WHEN state = 'sending' AND attempts <= 1 THEN NULL ELSE first_attempt END,
			updated_at = ?1 WHERE campaign = ?2 AND key = ?3 AND run_id = ?4 AND state IN ` + t.fromSQL()
	}
	return `UPDATE recipients SET state = ` + t.to() + `, provider_id = ?5, provider = coalesce(nullif(?6, ''), provider),
		code = ?7, enhanced = ?8, reason = ?9, next_attempt = ?10, updated_at = ?1
		WHERE campaign = ?2 AND key = ?3 AND run_id = ?4 AND state IN ` + t.fromSQL()
}

// sqliteUnsuppressBounce lifts the suppression a reopened failure added.
const sqliteUnsuppressBounce = `DELETE FROM suppressions WHERE key = ? AND source = ?`

// prepare prepares the group commit's statements on the write connection (outside any
// transaction: the write connection is the only one).
func (r *sqliteRun) prepare(ctx context.Context) error {
	r.stmts = make(map[string]*sql.Stmt)
	queries := []string{sqliteUnsuppressBounce, sqliteInsertSuppression}
	for _, t := range []Transition{tHandoff, tSent, tDeferred, tUnknown, tFailed, tRelease, tHold, tReopen} {
		queries = append(queries, sqliteRunSQL(t))
	}
	for _, q := range queries {
		st, err := r.s.wdb.PrepareContext(ctx, q)
		if err != nil {
			r.closeStmts()
			return err
		}
		r.stmts[q] = st
	}
	return nil
}

// exec runs query in tx, as the statement prepared for it when there is one.
func (r *sqliteRun) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	r.stmtMu.Lock()
	st := r.stmts[query]
	r.stmtMu.Unlock()
	if st == nil {
		return tx.ExecContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// closeStmts closes the prepared statements (the run ended).
func (r *sqliteRun) closeStmts() {
	r.stmtMu.Lock()
	defer r.stmtMu.Unlock()
	for _, st := range r.stmts {
		st.Close()
	}
	r.stmts = nil
}

func (r *sqliteRun) ID() int64                              { return r.id }
func (r *sqliteRun) Err() error                             { return r.w.Err() }
func (r *sqliteRun) Lost() <-chan struct{}                  { return r.lost }
func (r *sqliteRun) Live(context.Context) (int, error)      { return 1, nil }
func (r *sqliteRun) Record(o Outcome)                       { r.w.record(o, nil) }
func (r *sqliteRun) RecordThen(o Outcome, done func(error)) { r.w.record(o, done) }
func (r *sqliteRun) Flush(ctx context.Context) error {
	return r.w.flush(ctx)
}
func (r *sqliteRun) Handoff(ctx context.Context, key string) func() error {
	return r.w.handoff(ctx, key)
}

func (r *sqliteRun) Others(ctx context.Context) (int, error) {
	var n int
	err := r.s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM recipients WHERE campaign = ? AND state IN ('claimed', 'sending')
		AND (run_id IS NULL OR run_id <> ?)`, r.campaign, r.id).Scan(&n)
	if err != nil {
		return 0, r.errorf("count others' claims", err)
	}
	return n, nil
}

func (r *sqliteRun) errorf(op string, err error) error {
	return r.s.errorf(fmt.Sprintf("campaign %q: %s", r.campaign, op), err)
}

func (r *sqliteRun) Load(ctx context.Context, info *ListInfo, feed func(add func(Item) error) error) (int, error) {
	now := r.s.now().UnixMilli()
	tx, err := r.s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return 0, r.errorf("load list", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO recipients (campaign, key, email, line, state, fields, updated_at)
		VALUES (?, ?, ?, ?, `+tLoad.to()+`, ?, ?)
		ON CONFLICT (campaign, key) DO UPDATE SET email = excluded.email, line = excluded.line, fields = excluded.fields
		WHERE state IN `+tClaim.fromSQL())
	if err != nil {
		return 0, r.errorf("load list", err)
	}
	defer stmt.Close()
	added := 0
	err = feed(func(it Item) error {
		key := normalize(it.Key)
		if key == "" {
			return nil
		}
		res, err := stmt.ExecContext(ctx, r.campaign, key, it.Email, it.Line, fieldsArg(nonNil(it.Fields)), now)
		if err != nil {
			return r.errorf("load list", err)
		}
		n, _ := res.RowsAffected()
		added += int(n)
		return nil
	})
	if err != nil {
		return 0, err
	}
	// On SQLite no other run of the campaign is alive (the lock), so templates may
	// change between runs.
	if _, err := tx.ExecContext(ctx, `INSERT INTO campaigns (name, columns, template_hash, total, invalid, duplicate, suppressed, loaded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET columns = excluded.columns,
		template_hash = excluded.template_hash, total = excluded.total, invalid = excluded.invalid,
		duplicate = excluded.duplicate, suppressed = excluded.suppressed, loaded_at = excluded.loaded_at`,
		r.campaign, jsonArg(nonNil(info.Columns)), info.TemplateHash, info.Total, info.Invalid, info.Duplicate, info.Suppressed, now); err != nil {
		return 0, r.errorf("load list", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, r.errorf("load list: commit", err)
	}
	return added, nil
}

func (r *sqliteRun) Claim(ctx context.Context, n int) ([]Item, error) {
	if n <= 0 {
		return nil, nil
	}
	if err := r.w.Err(); err != nil {
		return nil, err
	}
	now := r.s.now().UnixMilli()
	rows, err := r.s.wdb.QueryContext(ctx, `UPDATE recipients SET state = `+tClaim.to()+`, run_id = ?1, updated_at = ?2
		WHERE campaign = ?3 AND key IN (SELECT key FROM (
			SELECT key, line FROM (SELECT q.key, q.line FROM recipients q WHERE q.campaign = ?3 AND q.state = 'pending'
				AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.key = q.key) ORDER BY q.line LIMIT ?4)
			UNION ALL
			SELECT key, line FROM (SELECT q.key, q.line FROM recipients q WHERE q.campaign = ?3 AND q.state = 'deferred'
				AND coalesce(q.next_attempt, 0) <= ?2
				AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.key = q.key) ORDER BY q.line LIMIT ?4)
			ORDER BY line LIMIT ?4))
		RETURNING key, email, line, fields, attempts, first_attempt`, r.id, now, r.campaign, n)
	if err != nil {
		return nil, r.errorf("claim", err)
	}
	defer rows.Close()
	out, err := scanItems(rows)
	if err != nil {
		return nil, r.errorf("claim", err)
	}
	return out, nil
}

// scanItems reads claimed rows (key, email, line, fields, attempts, first_attempt) and
// sorts them in list order.
func scanItems(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}) ([]Item, error) {
	var out []Item
	for rows.Next() {
		var it Item
		var fields *string
		var first *int64
		if err := rows.Scan(&it.Key, &it.Email, &it.Line, &fields, &it.Attempts, &first); err != nil {
			return nil, err
		}
		if fields != nil {
			if err := json.Unmarshal([]byte(*fields), &it.Fields); err != nil {
				return nil, fmt.Errorf("fields of %s: %w", it.Key, err)
			}
		}
		it.FirstAttempt = fromMillis(first)
		it.Retry = it.Attempts > 0
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sortItems(out)
	return out, nil
}

func (r *sqliteRun) apply(ctx context.Context, ops []op, results []error) error {
	now := r.s.now()
	ms := now.UnixMilli()
	tx, err := r.s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i, o := range ops {
		if !o.isOut {
			res, err := r.exec(ctx, tx, sqliteRunSQL(tHandoff), ms, r.campaign, o.key, r.id)
			if err != nil {
				return fmt.Errorf("hand-off of %s: %w", o.key, err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				continue
			}
			var st State
			if err := tx.QueryRowContext(ctx, `SELECT state FROM recipients WHERE campaign = ? AND key = ?`, r.campaign, o.key).Scan(&st); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("hand-off of %s: %w", o.key, err)
			}
			results[i] = &StateError{Campaign: r.campaign, Key: o.key, State: st}
			continue
		}
		oc := o.outcome
		t, ok := outcomeTransition(oc)
		if !ok {
			results[i] = fmt.Errorf("journal: campaign %q: outcome of %s has invalid state %q", r.campaign, oc.Key, oc.State)
			continue
		}
		var res sql.Result
		switch t.Name {
		case tReopen.Name:
			if _, err := r.exec(ctx, tx, sqliteRunSQL(t), ms, r.campaign, oc.Key, r.id); err != nil {
				return fmt.Errorf("reopen %s: %w", oc.Key, err)
			}
			if _, err := r.exec(ctx, tx, sqliteUnsuppressBounce, oc.Key, "bounce:"+r.campaign); err != nil {
				return fmt.Errorf("reopen %s: unsuppress: %w", oc.Key, err)
			}
			continue
		case tRelease.Name, tHold.Name:
			res, err = r.exec(ctx, tx, sqliteRunSQL(t), ms, r.campaign, oc.Key, r.id)
		default:
			res, err = r.exec(ctx, tx, sqliteRunSQL(t), ms, r.campaign, oc.Key, r.id,
				oc.ProviderID, oc.Provider, oc.Code, oc.Enhanced, truncate(oc.Reason, maxReason), millis(oc.NextAttempt))
		}
		if err != nil {
			return fmt.Errorf("outcome %s of %s: %w", oc.State, oc.Key, err)
		}
		if n, _ := res.RowsAffected(); n == 0 && t.Name != tRelease.Name && t.Name != tHold.Name {
			results[i] = fmt.Errorf("journal: campaign %q: outcome %s of %s without this run's hand-off", r.campaign, oc.State, oc.Key)
		}
		if oc.Suppress {
			email := oc.Email
			if email == "" {
				email = oc.Key
			}
			if key, em, reason, source, at, ok := suppressionArgs(Suppression{Email: email, Reason: oc.Reason, Source: "bounce:" + r.campaign}, now); ok {
				if _, err := r.exec(ctx, tx, sqliteInsertSuppression, key, em, reason, source, at); err != nil {
					return fmt.Errorf("suppress %s: %w", oc.Key, err)
				}
			}
		}
	}
	return tx.Commit()
}

func (r *sqliteRun) End(ctx context.Context, summary []byte) error {
	r.endOnce.Do(func() {
		err := r.w.close()
		r.closeStmts()
		now := r.s.now().UnixMilli()
		ctx := context.WithoutCancel(ctx)
		if _, rerr := r.s.wdb.ExecContext(ctx, `UPDATE recipients SET state = `+tRelease.to()+`, run_id = NULL, updated_at = ?
			WHERE run_id = ? AND state = 'claimed'`, now, r.id); rerr != nil && err == nil {
			err = r.errorf("release claims", rerr)
		}
		if _, rerr := r.s.wdb.ExecContext(ctx, `UPDATE runs SET ended = ?, summary = ? WHERE id = ?`, now, summary, r.id); rerr != nil && err == nil {
			err = r.errorf(fmt.Sprintf("end run %d", r.id), rerr)
		}
		if uerr := r.unlock(); uerr != nil && err == nil {
			err = uerr
		}
		r.endErr = err
	})
	return r.endErr
}
