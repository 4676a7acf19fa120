package journal

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// The store keeps what the sending policy needs across runs, campaigns and hosts: the
// pause state of each campaign (pause_if), the store-wide warm-up counts per calendar day
// (warmup), and the first hand-off of a campaign (not_after as a duration). Pause and
// warm-up states are JSON values in the store's metadata table, read and changed inside
// one write transaction each, so that runs on several hosts never race past a cap.

// Pause is a campaign's automatic-pause state (pause_if).
type Pause struct {
	// Paused is set when a run crossed a pause_if threshold; runs refuse until resumed.
	Paused bool `json:"paused"`
	// At is when it was paused; Reason the figures that paused it.
	At     time.Time `json:"at,omitzero"`
	Reason string    `json:"reason,omitempty"`
	// ResumedAt is the last resume: pause_if counts the outcomes since then (zero: since
	// the campaign began).
	ResumedAt time.Time `json:"resumed_at,omitzero"`
}

// OutcomeCounts are a campaign's outcomes since a time, for pause_if.
type OutcomeCounts struct {
	// Outcomes counts the recipients that became `sent` or `failed`.
	Outcomes int
	// Bounces counts the `failed` among them that a provider or a bounce rejected (not
	// those given up after temporary failures).
	Bounces int
	// Complaints counts the campaign's sent recipients suppressed for a complaint
	// (webhook events, complaint reports) since then.
	Complaints int
}

// WarmupRequest asks for a share of today's warm-up allowance.
type WarmupRequest struct {
	// Day is today's calendar date, "2006-01-02", in the campaign's time zone.
	Day string
	// Cap returns the most sends of warm-up day n (1 is the day of the store's first
	// warm-up send); a negative cap is no cap.
	Cap func(day int) int
	// N is how many sends to reserve; a negative N gives back reserved sends that were
	// not used; 0 only reads.
	N int
}

// WarmupGrant is the answer to a WarmupRequest.
type WarmupGrant struct {
	// Granted is how many of the sends asked for were reserved (≤ N).
	Granted int
	// Day is today's warm-up day (1 = the first), Cap its cap (< 0: none), Used the
	// sends reserved today across the store after this request.
	Day, Cap, Used int
}

// warmupKey and pauseKeyPrefix are meta keys.
const (
	warmupKey      = "warmup"
	pauseKeyPrefix = "pause:"
)

// warmupState is the store-wide warm-up record: the first day and the sends reserved on
// recent days.
type warmupState struct {
	First string         `json:"first,omitempty"`
	Days  map[string]int `json:"days,omitempty"`
}

// keepWarmupDays is how many days of counts the warm-up record keeps.
const keepWarmupDays = 7

// reserve applies req to the state.
func (st *warmupState) reserve(req WarmupRequest) (WarmupGrant, error) {
	today, err := time.Parse(time.DateOnly, req.Day)
	if err != nil {
		return WarmupGrant{}, fmt.Errorf("warm-up day %q: %w", req.Day, err)
	}
	if st.Days == nil {
		st.Days = map[string]int{}
	}
	day := 1
	if st.First != "" {
		first, err := time.Parse(time.DateOnly, st.First)
		if err != nil {
			return WarmupGrant{}, fmt.Errorf("warm-up record: first day %q: %w", st.First, err)
		}
		day = int(today.Sub(first).Hours()/24) + 1
		if day < 1 {
			day = 1 // the clock went back: the first day again
		}
	}
	g := WarmupGrant{Day: day, Cap: req.Cap(day), Used: st.Days[req.Day]}
	switch {
	case req.N < 0:
		g.Granted = req.N
		g.Used = max(g.Used+req.N, 0)
	case req.N > 0:
		g.Granted = req.N
		if g.Cap >= 0 {
			g.Granted = max(min(req.N, g.Cap-g.Used), 0)
		}
		g.Used += g.Granted
		if g.Granted > 0 && st.First == "" {
			st.First = req.Day
		}
	}
	st.Days[req.Day] = g.Used
	for d := range st.Days {
		if t, err := time.Parse(time.DateOnly, d); err != nil || today.Sub(t) > keepWarmupDays*24*time.Hour {
			delete(st.Days, d)
		}
	}
	return g, nil
}

// warmupUpdate returns the meta update that applies req, and where its grant goes.
func warmupUpdate(req WarmupRequest, g *WarmupGrant) func([]byte) ([]byte, error) {
	return func(old []byte) ([]byte, error) {
		var st warmupState
		if len(old) > 0 {
			if err := json.Unmarshal(old, &st); err != nil {
				return nil, fmt.Errorf("warm-up record: %w", err)
			}
		}
		var err error
		if *g, err = st.reserve(req); err != nil {
			return nil, err
		}
		return json.Marshal(st)
	}
}

func decodePause(b []byte, ok bool) (Pause, error) {
	var p Pause
	if !ok || len(b) == 0 {
		return p, nil
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("pause record: %w", err)
	}
	return p, nil
}

// outcomesSQL counts outcomes and bounces since ?; complaintsSQL the complaints. The
// placeholders are written for each engine.
const (
	outcomesSQL = `SELECT count(*), coalesce(sum(CASE WHEN state = 'failed' AND reason NOT LIKE 'gave up%%' THEN 1 ELSE 0 END), 0)
		FROM %[1]srecipients WHERE campaign = %[2]s AND state IN ('sent', 'failed') AND updated_at >= %[3]s`
	complaintsSQL = `SELECT count(*) FROM %[1]ssuppressions s WHERE s.created_at >= %[3]s AND (s.reason LIKE 'complaint%%' OR s.source LIKE 'complaint:%%')
		AND EXISTS (SELECT 1 FROM %[1]srecipients r WHERE r.campaign = %[2]s AND r.key = s.key AND r.state IN ('sent', 'failed'))`
	// expireSQL expires the campaign's pending and deferred rows that are not
	// suppressed, and the run's own claims.
	expireSQL = `UPDATE %[1]srecipients SET state = %[4]s, run_id = NULL, updated_at = %[3]s
		WHERE campaign = %[2]s AND (state IN %[5]s OR (state IN %[6]s AND run_id = %[7]s))
		AND NOT EXISTS (SELECT 1 FROM %[1]ssuppressions s WHERE s.key = %[1]srecipients.key)`
)

// --- SQLite

// sqliteMeta reads a meta value.
func (s *sqliteStore) readMeta(ctx context.Context, key string) ([]byte, bool, error) {
	var b []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	return b, err == nil, err
}

// updateMeta changes a meta value in one write transaction (IMMEDIATE: it holds the
// file's write lock from the read to the commit).
func (s *sqliteStore) updateMeta(ctx context.Context, key string, fn func([]byte) ([]byte, error)) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var old []byte
	if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&old); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	b, err := fn(old)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, b); err != nil {
		return err
	}
	return tx.Commit()
}

func (s *sqliteStore) PauseState(ctx context.Context, campaign string) (Pause, error) {
	return pauseState(ctx, s, campaign)
}

func (s *sqliteStore) SetPause(ctx context.Context, campaign string, p Pause) error {
	return setPause(ctx, s, campaign, p)
}

func (s *sqliteStore) Outcomes(ctx context.Context, campaign string, since time.Time) (OutcomeCounts, error) {
	var oc OutcomeCounts
	ms := since.UnixMilli()
	if since.IsZero() {
		ms = 0
	}
	err := s.rdb.QueryRowContext(ctx, fmt.Sprintf(outcomesSQL, "", "?1", "?2"), campaign, ms).Scan(&oc.Outcomes, &oc.Bounces)
	if err == nil {
		err = s.rdb.QueryRowContext(ctx, fmt.Sprintf(complaintsSQL, "", "?1", "?2"), campaign, ms).Scan(&oc.Complaints)
	}
	if err != nil {
		return oc, s.errorf(fmt.Sprintf("count outcomes of %q", campaign), err)
	}
	return oc, nil
}

func (s *sqliteStore) FirstAttempt(ctx context.Context, campaign string) (time.Time, error) {
	var first *int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT min(first_attempt) FROM recipients WHERE campaign = ?`, campaign).Scan(&first); err != nil {
		return time.Time{}, s.errorf(fmt.Sprintf("read first send of %q", campaign), err)
	}
	return fromMillis(first), nil
}

func (s *sqliteStore) ReserveWarmup(ctx context.Context, req WarmupRequest) (WarmupGrant, error) {
	var g WarmupGrant
	if err := s.updateMeta(ctx, warmupKey, warmupUpdate(req, &g)); err != nil {
		return WarmupGrant{}, s.errorf("reserve warm-up sends", err)
	}
	return g, nil
}

func (r *sqliteRun) Expire(ctx context.Context) (int, error) {
	if err := r.w.flush(ctx); err != nil {
		return 0, err
	}
	q := fmt.Sprintf(expireSQL, "", "?2", "?1", tExpire.to(), tExpire.fromSQL(), tExpireClaimed.fromSQL(), "?3")
	res, err := r.s.wdb.ExecContext(ctx, q, r.s.now().UnixMilli(), r.campaign, r.id)
	if err != nil {
		return 0, r.errorf("expire", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// --- PostgreSQL

func (s *pgStore) readMeta(ctx context.Context, key string) ([]byte, bool, error) {
	var b []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM herald_meta WHERE key = $1`, key).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return b, err == nil, err
}

// updateMeta changes a meta value in one transaction holding the row's lock: hosts that
// change it at once take turns.
func (s *pgStore) updateMeta(ctx context.Context, key string, fn func([]byte) ([]byte, error)) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO herald_meta (key, value) VALUES ($1, '\x') ON CONFLICT (key) DO NOTHING`, key); err != nil {
			return err
		}
		var old []byte
		if err := tx.QueryRow(ctx, `SELECT value FROM herald_meta WHERE key = $1 FOR UPDATE`, key).Scan(&old); err != nil {
			return err
		}
		b, err := fn(old)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE herald_meta SET value = $2 WHERE key = $1`, key, b)
		return err
	})
}

func (s *pgStore) PauseState(ctx context.Context, campaign string) (Pause, error) {
	return pauseState(ctx, s, campaign)
}

func (s *pgStore) SetPause(ctx context.Context, campaign string, p Pause) error {
	return setPause(ctx, s, campaign, p)
}

func (s *pgStore) Outcomes(ctx context.Context, campaign string, since time.Time) (OutcomeCounts, error) {
	var oc OutcomeCounts
	ms := since.UnixMilli()
	if since.IsZero() {
		ms = 0
	}
	var n, b, c int64
	err := s.pool.QueryRow(ctx, fmt.Sprintf(outcomesSQL, "herald_", "$1", "$2"), campaign, ms).Scan(&n, &b)
	if err == nil {
		err = s.pool.QueryRow(ctx, fmt.Sprintf(complaintsSQL, "herald_", "$1", "$2"), campaign, ms).Scan(&c)
	}
	if err != nil {
		return oc, s.errorf(fmt.Sprintf("count outcomes of %q", campaign), err)
	}
	return OutcomeCounts{Outcomes: int(n), Bounces: int(b), Complaints: int(c)}, nil
}

func (s *pgStore) FirstAttempt(ctx context.Context, campaign string) (time.Time, error) {
	var first *int64
	if err := s.pool.QueryRow(ctx, `SELECT min(first_attempt) FROM herald_recipients WHERE campaign = $1`, campaign).Scan(&first); err != nil {
		return time.Time{}, s.errorf(fmt.Sprintf("read first send of %q", campaign), err)
	}
	return fromMillis(first), nil
}

func (s *pgStore) ReserveWarmup(ctx context.Context, req WarmupRequest) (WarmupGrant, error) {
	var g WarmupGrant
	if err := s.updateMeta(ctx, warmupKey, warmupUpdate(req, &g)); err != nil {
		return WarmupGrant{}, s.errorf("reserve warm-up sends", err)
	}
	return g, nil
}

func (r *pgRun) Expire(ctx context.Context) (int, error) {
	if err := r.w.flush(ctx); err != nil {
		return 0, err
	}
	q := fmt.Sprintf(expireSQL, "herald_", "$2", "$1", tExpire.to(), tExpire.fromSQL(), tExpireClaimed.fromSQL(), "$3")
	tag, err := r.s.pool.Exec(ctx, q, r.s.now().UnixMilli(), r.campaign, r.id)
	if err != nil {
		return 0, r.errorf("expire", err)
	}
	return int(tag.RowsAffected()), nil
}

// metaStore is what both engines offer for the store-wide meta table: a read, a
// read-modify-write in one transaction, and their errors named after the store.
type metaStore interface {
	readMeta(ctx context.Context, key string) ([]byte, bool, error)
	updateMeta(ctx context.Context, key string, fn func([]byte) ([]byte, error)) error
	errorf(op string, err error) error
}

// pauseState reads a campaign's pause state from m's meta table (none: the zero Pause).
func pauseState(ctx context.Context, m metaStore, campaign string) (Pause, error) {
	b, ok, err := m.readMeta(ctx, pauseKeyPrefix+campaign)
	if err != nil {
		return Pause{}, m.errorf(fmt.Sprintf("read pause state of %q", campaign), err)
	}
	p, err := decodePause(b, ok)
	if err != nil {
		return p, m.errorf(fmt.Sprintf("read pause state of %q", campaign), err)
	}
	return p, nil
}

// setPause writes a campaign's pause state into m's meta table.
func setPause(ctx context.Context, m metaStore, campaign string, p Pause) error {
	b, err := json.Marshal(p)
	if err == nil {
		err = m.updateMeta(ctx, pauseKeyPrefix+campaign, func([]byte) ([]byte, error) { return b, nil })
	}
	if err != nil {
		return m.errorf(fmt.Sprintf("record pause state of %q", campaign), err)
	}
	return nil
}
