package journal

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The advisory lock keys herald uses. A run holds the session lock (runLockClass, id)
// while it lives; whoever settles a dead run takes the same key for its transaction, so
// that a live run is never settled and a dead one only once.
const (
	runLockClass = 1213352004 // "HRLD"
	migrateLock  = 1213352005
)

// pgMigrations are the PostgreSQL schema steps; herald_schema holds the version.
var pgMigrations = []string{
	// v1: the work queue, runs, suppressions, metadata and loaded campaigns.
	`CREATE TABLE herald_recipients (
		campaign      text    NOT NULL,
		key           text    NOT NULL,
		email         text    NOT NULL,
		line          integer NOT NULL DEFAULT 0,
		state         text    NOT NULL,
		run_id        bigint,
		fields        text,
		attempts      integer NOT NULL DEFAULT 0,
		code          integer NOT NULL DEFAULT 0,
		enhanced      text    NOT NULL DEFAULT '',
		reason        text    NOT NULL DEFAULT '',
		provider_id   text    NOT NULL DEFAULT '',
		first_attempt bigint,
		last_attempt  bigint,
		next_attempt  bigint,
		updated_at    bigint  NOT NULL,
		PRIMARY KEY (campaign, key)
	);
	CREATE INDEX herald_recipients_queue ON herald_recipients (campaign, state, line);
	CREATE INDEX herald_recipients_inflight ON herald_recipients (run_id) WHERE state IN ('claimed', 'sending');
	CREATE TABLE herald_runs (
		id       bigserial PRIMARY KEY,
		campaign text    NOT NULL,
		started  bigint  NOT NULL,
		ended    bigint,
		host     text    NOT NULL DEFAULT '',
		pid      integer NOT NULL,
		died     boolean NOT NULL DEFAULT false,
		summary  bytea
	);
	CREATE INDEX herald_runs_campaign ON herald_runs (campaign, id);
	CREATE TABLE herald_suppressions (
		key        text PRIMARY KEY,
		email      text NOT NULL,
		reason     text NOT NULL DEFAULT '',
		source     text NOT NULL DEFAULT '',
		created_at bigint NOT NULL
	);
	CREATE TABLE herald_meta (
		key   text PRIMARY KEY,
		value bytea NOT NULL
	);
	CREATE TABLE herald_campaigns (
		name          text PRIMARY KEY,
		columns       text    NOT NULL DEFAULT '[]',
		template_hash text    NOT NULL DEFAULT '',
		total         integer NOT NULL DEFAULT 0,
		invalid       integer NOT NULL DEFAULT 0,
		duplicate     integer NOT NULL DEFAULT 0,
		suppressed    integer NOT NULL DEFAULT 0,
		loaded_at     bigint  NOT NULL DEFAULT 0
	);`,

	// v2: the provider that took a recipient's last attempt (the fallback's after a switch).
	`ALTER TABLE herald_recipients ADD COLUMN provider text NOT NULL DEFAULT '';`,

	// v3: no index of in-flight rows by run. The planner took it for a run's hand-offs
	// and outcomes instead of the primary key, reading every in-flight row of the run
	// (and every dead version of one) for each recipient written; and each hand-off and
	// claim paid one more index entry. The few queries that look for a run's in-flight
	// rows name the campaign and the state, which the queue index serves.
	`DROP INDEX IF EXISTS herald_recipients_inflight;`,
}

// PGSchemaVersion is the PostgreSQL schema version this package writes.
func PGSchemaVersion() int { return len(pgMigrations) }

// MigratePGTo creates or upgrades the herald tables of the PostgreSQL database at
// location to schema version v only (tests: databases of earlier versions).
func MigratePGTo(ctx context.Context, location string, v int) error {
	pool, err := pgxpool.New(ctx, location)
	if err != nil {
		return err
	}
	defer pool.Close()
	return (&pgStore{pool: pool}).migrate(ctx, v)
}

// pgStatementTimeout bounds every statement; a store that stops answering stops the run.
const pgStatementTimeout = 30 * time.Second

// pgConnectTimeout bounds a connection attempt.
const pgConnectTimeout = 5 * time.Second

type pgStore struct {
	name     string // host:port/database
	password string // only to scrub it from error texts
	now      func() time.Time
	pool     *pgxpool.Pool
}

// pgName returns host:port/database of a connection config.
func pgName(c *pgconn.Config) string {
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))) + "/" + c.Database
}

// urlPassword returns the password written in a store URL ("" when none).
func urlPassword(location string) string {
	u, err := url.Parse(location)
	if err != nil || u.User == nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}

// scrub removes the password from an error's text.
func scrub(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "xxxxx"))
}

// RedactURL returns a store location fit to print: a URL as host:port/database (no
// user, no password), a path as is.
func RedactURL(location string) string {
	if !IsURL(location) {
		return location
	}
	if c, err := pgconn.ParseConfig(location); err == nil {
		return pgName(c)
	}
	if u, err := url.Parse(location); err == nil {
		return u.Host + u.Path
	}
	return "postgres://…"
}

func openPostgres(ctx context.Context, location string, o Options) (*pgStore, error) {
	pw := urlPassword(location)
	cfg, err := pgxpool.ParseConfig(location)
	if err != nil {
		// pgx masks the password in its parse errors; scrub anyway.
		return nil, &URLError{Err: scrub(err, pw)}
	}
	if cfg.ConnConfig.Password != "" {
		pw = cfg.ConnConfig.Password
	}
	s := &pgStore{name: pgName(&cfg.ConnConfig.Config), password: pw, now: o.Now}
	cfg.MaxConns = int32(o.Conns)
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 8
	}
	cfg.MaxConnIdleTime = time.Minute
	cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.Itoa(int(pgStatementTimeout.Milliseconds()))
	cfg.ConnConfig.RuntimeParams["application_name"] = "herald"
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, &UnavailableError{Name: s.name, Err: s.clean(err)}
	}
	pctx, cancel := context.WithTimeout(ctx, pgConnectTimeout+time.Second)
	defer cancel()
	if err := s.pool.Ping(pctx); err != nil {
		s.pool.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnavailableError{Name: s.name, Err: s.clean(err)}
	}
	if err := s.migrate(ctx, len(pgMigrations)); err != nil {
		s.pool.Close()
		return nil, s.errorf("schema migration", err)
	}
	return s, nil
}

// clean makes a driver error fit to print: no password, and a connection failure told
// by its cause rather than by the driver's dump of the connection parameters.
func (s *pgStore) clean(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		err = ce.Unwrap()
	}
	return scrub(err, s.password)
}

func (s *pgStore) errorf(op string, err error) error {
	return fmt.Errorf("journal %s: %s: %w", s.name, op, s.clean(err))
}

// migrate brings the schema to version target in one transaction under an advisory
// lock: serve and send may create the tables at the same moment on a fresh database.
func (s *pgStore) migrate(ctx context.Context, target int) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS herald_schema (version integer NOT NULL)`); err != nil {
		return err
	}
	var version int
	err = tx.QueryRow(ctx, `SELECT version FROM herald_schema`).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := tx.Exec(ctx, `INSERT INTO herald_schema (version) VALUES (0)`); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if version > len(pgMigrations) {
		return fmt.Errorf("schema version %d is newer than this herald knows (%d); upgrade herald", version, len(pgMigrations))
	}
	if version >= target {
		return tx.Commit(ctx)
	}
	for v := version; v < target; v++ {
		if _, err := tx.Exec(ctx, pgMigrations[v]); err != nil {
			return fmt.Errorf("to v%d: %w", v+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE herald_schema SET version = $1`, target); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (s *pgStore) Kind() string { return "postgres" }
func (s *pgStore) Name() string { return s.name }
func (s *pgStore) Close() error { s.pool.Close(); return nil }

func (s *pgStore) Secret(ctx context.Context) ([]byte, error) {
	cand := make([]byte, secretLen)
	if _, err := rand.Read(cand); err != nil {
		return nil, s.errorf("create secret", err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO herald_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, secretKey, cand); err != nil {
		return nil, s.errorf("store secret", err)
	}
	var b []byte
	if err := s.pool.QueryRow(ctx, `SELECT value FROM herald_meta WHERE key = $1`, secretKey).Scan(&b); err != nil {
		return nil, s.errorf("read secret", err)
	}
	if len(b) != secretLen {
		return nil, s.errorf("read secret", fmt.Errorf("stored secret has %d bytes, want %d", len(b), secretLen))
	}
	return b, nil
}

// --- suppressions

const pgInsertSuppression = `INSERT INTO herald_suppressions (key, email, reason, source, created_at)
	VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING`

type pgExecer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func pgSuppress(ctx context.Context, db pgExecer, sp Suppression, now time.Time) (int, error) {
	key, email, reason, source, at, ok := suppressionArgs(sp, now)
	if !ok {
		return 0, nil
	}
	tag, err := db.Exec(ctx, pgInsertSuppression, key, email, reason, source, at)
	return int(tag.RowsAffected()), err
}

func (s *pgStore) Suppress(ctx context.Context, list []Suppression) (int, error) {
	if len(list) == 0 {
		return 0, nil
	}
	now := s.now()
	added := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, sp := range list {
			n, err := pgSuppress(ctx, tx, sp, now)
			if err != nil {
				return fmt.Errorf("%q: %w", sp.Email, err)
			}
			added += n
		}
		return nil
	})
	if err != nil {
		return 0, s.errorf("suppress", err)
	}
	return added, nil
}

func (s *pgStore) Unsuppress(ctx context.Context, emails []string) (int, error) {
	if len(emails) == 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM herald_suppressions WHERE key = ANY($1)`, normalizeAll(emails))
	if err != nil {
		return 0, s.errorf("unsuppress", err)
	}
	return int(tag.RowsAffected()), nil
}

func (s *pgStore) Suppressed(ctx context.Context, keys []string) (map[string]Suppression, error) {
	out := make(map[string]Suppression)
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT key, email, reason, source, created_at FROM herald_suppressions WHERE key = ANY($1)`, normalizeAll(keys))
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

func (s *pgStore) IsSuppressed(ctx context.Context, key string) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM herald_suppressions WHERE key = $1)`, normalize(key)).Scan(&ok); err != nil {
		return false, s.errorf("look up suppression", err)
	}
	return ok, nil
}

func (s *pgStore) EachSuppressed(ctx context.Context, fn func(Suppression) error) error {
	rows, err := s.pool.Query(ctx, `SELECT email, reason, source, created_at FROM herald_suppressions ORDER BY key`)
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

// pgAlive is the SQL test that run r (an alias of herald_runs) holds its liveness lock.
const pgAlive = `EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.classid = 1213352004::oid
	AND l.objid = r.id::oid AND l.objsubid = 2 AND l.granted)`

// BeginRun settles the campaign's dead runs, then registers the run and takes its
// liveness lock in one transaction on a connection of its own, so that no process ever
// sees the run without its lock; PostgreSQL drops the lock when that connection dies.
func (s *pgStore) BeginRun(ctx context.Context, spec RunSpec) (Run, error) {
	if _, err := s.Settle(ctx, spec.Campaign); err != nil {
		return nil, err
	}
	cfg := s.pool.Config().ConnConfig.Copy()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, &UnavailableError{Name: s.name, Err: s.clean(err)}
	}
	now := s.now().UnixMilli()
	var id int64
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO herald_runs (campaign, started, pid, host) VALUES ($1, $2, $3, $4) RETURNING id`,
			spec.Campaign, now, spec.PID, spec.Host).Scan(&id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, int32(runLockClass), int32(id)); err != nil {
			return err
		}
		if spec.ResendUnknown {
			if _, err := tx.Exec(ctx, `UPDATE herald_recipients SET state = `+tResend.to()+`, run_id = NULL, updated_at = $1
				WHERE campaign = $2 AND state IN `+tResend.fromSQL(), now, spec.Campaign); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, s.errorf(fmt.Sprintf("begin run of %q", spec.Campaign), err)
	}
	r := &pgRun{s: s, id: id, campaign: spec.Campaign, conn: conn, lost: make(chan struct{}), stop: make(chan struct{})}
	r.w = newWriter(spec.Campaign, r.apply)
	r.wg.Add(1)
	go r.watch()
	return r, nil
}

// Settle settles every run of campaign that is unfinished and holds no liveness lock.
// Each one is settled in a transaction that takes the run's lock key, so that only one
// process settles it and a run that is alive is never touched.
func (s *pgStore) Settle(ctx context.Context, campaign string) (Settled, error) {
	var st Settled
	rows, err := s.pool.Query(ctx, `SELECT r.id FROM herald_runs r WHERE r.campaign = $1 AND r.ended IS NULL AND NOT `+pgAlive, campaign)
	if err != nil {
		return st, s.errorf("settle dead runs", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return st, s.errorf("settle dead runs", err)
	}
	now := s.now().UnixMilli()
	for _, id := range ids {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var got bool
			if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, $2)`, int32(runLockClass), int32(id)).Scan(&got); err != nil || !got {
				return err
			}
			tag, err := tx.Exec(ctx, `UPDATE herald_runs SET ended = $1, died = true WHERE id = $2 AND ended IS NULL`, now, id)
			if err != nil || tag.RowsAffected() == 0 {
				return err
			}
			tag, err = tx.Exec(ctx, `UPDATE herald_recipients SET state = `+tSettleClaimed.to()+`, run_id = NULL, updated_at = $1
				WHERE campaign = $3 AND state IN `+tSettleClaimed.fromSQL()+` AND run_id = $2`, now, id, campaign)
			if err != nil {
				return err
			}
			st.Released += int(tag.RowsAffected())
			tag, err = tx.Exec(ctx, `UPDATE herald_recipients SET state = `+tSettleSending.to()+`, updated_at = $1
				WHERE campaign = $3 AND state IN `+tSettleSending.fromSQL()+` AND run_id = $2`, now, id, campaign)
			if err != nil {
				return err
			}
			st.Unknown += int(tag.RowsAffected())
			st.Runs++
			return nil
		})
		if err != nil {
			return st, s.errorf("settle dead runs", err)
		}
	}
	return st, nil
}

func (s *pgStore) ResendUnknown(ctx context.Context, campaign string) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE herald_recipients SET state = `+tResend.to()+`, run_id = NULL, updated_at = $1
		WHERE campaign = $2 AND state IN `+tResend.fromSQL(), s.now().UnixMilli(), campaign)
	if err != nil {
		return 0, s.errorf(fmt.Sprintf("resend unknown of %q", campaign), err)
	}
	return int(tag.RowsAffected()), nil
}

const pgRunCols = `r.id, r.campaign, r.started, r.ended, r.host, r.pid, r.died, r.summary,
	(SELECT count(*) FROM herald_recipients x WHERE x.campaign = r.campaign AND x.state = 'sent' AND x.run_id = r.id)`

func pgScanRun(sc interface{ Scan(...any) error }) (RunInfo, error) {
	var ri RunInfo
	var started int64
	var ended *int64
	var sent int64
	err := sc.Scan(&ri.ID, &ri.Campaign, &started, &ended, &ri.Host, &ri.PID, &ri.Died, &ri.Summary, &sent)
	ri.Started, ri.Ended, ri.Sent = time.UnixMilli(started), fromMillis(ended), int(sent)
	return ri, err
}

func (s *pgStore) LiveRuns(ctx context.Context, campaign string) ([]RunInfo, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+pgRunCols+` FROM herald_runs r WHERE r.campaign = $1 AND r.ended IS NULL AND `+pgAlive+` ORDER BY r.id`, campaign)
	if err != nil {
		return nil, s.errorf("list live runs", err)
	}
	defer rows.Close()
	var out []RunInfo
	for rows.Next() {
		ri, err := pgScanRun(rows)
		if err != nil {
			return nil, s.errorf("list live runs", err)
		}
		out = append(out, ri)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf("list live runs", err)
	}
	return out, nil
}

func (s *pgStore) LastRun(ctx context.Context, campaign string) (RunInfo, bool, error) {
	ri, err := pgScanRun(s.pool.QueryRow(ctx, `SELECT `+pgRunCols+` FROM herald_runs r WHERE r.campaign = $1 ORDER BY r.id DESC LIMIT 1`, campaign))
	if errors.Is(err, pgx.ErrNoRows) {
		return RunInfo{}, false, nil
	}
	if err != nil {
		return RunInfo{}, false, s.errorf("read runs", err)
	}
	return ri, true, nil
}

func (s *pgStore) Campaign(ctx context.Context, campaign string) (ListInfo, bool, error) {
	var li ListInfo
	var cols string
	err := s.pool.QueryRow(ctx, `SELECT columns, template_hash, total, invalid, duplicate, suppressed
		FROM herald_campaigns WHERE name = $1`, campaign).Scan(&cols, &li.TemplateHash, &li.Total, &li.Invalid, &li.Duplicate, &li.Suppressed)
	if errors.Is(err, pgx.ErrNoRows) {
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

func (s *pgStore) Campaigns(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT campaign FROM herald_recipients
		UNION SELECT campaign FROM herald_runs UNION SELECT name FROM herald_campaigns ORDER BY 1`)
	if err != nil {
		return nil, s.errorf("list campaigns", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.errorf("list campaigns", err)
	}
	return out, nil
}

func (s *pgStore) Counts(ctx context.Context, campaign string) (map[State]int, error) {
	out := make(map[State]int, len(States))
	for _, st := range States {
		out[st] = 0
	}
	rows, err := s.pool.Query(ctx, `SELECT state, count(*) FROM herald_recipients WHERE campaign = $1 GROUP BY state`, campaign)
	if err != nil {
		return nil, s.errorf(fmt.Sprintf("count recipients of %q", campaign), err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, s.errorf(fmt.Sprintf("count recipients of %q", campaign), err)
		}
		out[State(st)] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf(fmt.Sprintf("count recipients of %q", campaign), err)
	}
	return out, nil
}

func (s *pgStore) PendingSuppressed(ctx context.Context, campaign string) (int, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM herald_recipients r JOIN herald_suppressions s ON s.key = r.key
		WHERE r.campaign = $1 AND r.state IN `+tClaim.fromSQL(), campaign).Scan(&n)
	if err != nil {
		return 0, s.errorf(fmt.Sprintf("count suppressed recipients of %q", campaign), err)
	}
	return int(n), nil
}

func (s *pgStore) Lookup(ctx context.Context, campaign string, keys []string) (map[string]Entry, error) {
	out := make(map[string]Entry, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT key, state, attempts, first_attempt, next_attempt
		FROM herald_recipients WHERE campaign = $1 AND key = ANY($2)`, campaign, keys)
	if err != nil {
		return nil, s.errorf(fmt.Sprintf("look up recipients of %q", campaign), err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var st string
		var first, next *int64
		if err := rows.Scan(&e.Key, &st, &e.Attempts, &first, &next); err != nil {
			return nil, s.errorf(fmt.Sprintf("look up recipients of %q", campaign), err)
		}
		e.State = State(st)
		e.FirstAttempt, e.NextAttempt = fromMillis(first), fromMillis(next)
		out[e.Key] = e
	}
	if err := rows.Err(); err != nil {
		return nil, s.errorf(fmt.Sprintf("look up recipients of %q", campaign), err)
	}
	return out, nil
}

// pgScanRow reads rowCols (state as text) and extra columns.
func pgScanRow(sc interface{ Scan(...any) error }, extra ...any) (Row, error) {
	var r Row
	var st string
	var first, last, next *int64
	var updated int64
	dst := append([]any{&r.Email, &r.Line, &st, &r.Attempts, &r.Code, &r.Enhanced, &r.Reason,
		&r.ProviderID, &r.Provider, &first, &last, &next, &updated}, extra...)
	if err := sc.Scan(dst...); err != nil {
		return r, err
	}
	r.State = State(st)
	r.FirstAttempt, r.LastAttempt, r.NextAttempt = fromMillis(first), fromMillis(last), fromMillis(next)
	r.UpdatedAt = time.UnixMilli(updated)
	return r, nil
}

func (s *pgStore) EachRow(ctx context.Context, campaign string, states []State, fn func(Row) error) error {
	q := `SELECT ` + rowCols + ` FROM herald_recipients WHERE campaign = $1`
	args := []any{campaign}
	if len(states) > 0 {
		ss := make([]string, len(states))
		for i, st := range states {
			ss[i] = string(st)
		}
		q += ` AND state = ANY($2)`
		args = append(args, ss)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY line, key`, args...)
	if err != nil {
		return s.errorf(fmt.Sprintf("list recipients of %q", campaign), err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := pgScanRow(rows)
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

func (s *pgStore) Export(ctx context.Context, fn func(Record) error) error {
	var b []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM herald_meta WHERE key = $1`, secretKey).Scan(&b)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
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
		rows, err := s.pool.Query(ctx, `SELECT `+rowCols+`, key, fields FROM herald_recipients WHERE campaign = $1 ORDER BY line, key`, name)
		if err != nil {
			return s.errorf("export recipients", err)
		}
		var recs []RecipientRecord
		for rows.Next() {
			rr := RecipientRecord{Campaign: name}
			var fields *string
			r, err := pgScanRow(rows, &rr.Key, &fields)
			if err != nil {
				rows.Close()
				return s.errorf("export recipients", err)
			}
			rr.Row = r
			if fields != nil {
				_ = json.Unmarshal([]byte(*fields), &rr.Fields)
			}
			recs = append(recs, rr)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return s.errorf("export recipients", err)
		}
		for i := range recs {
			if err := fn(Record{Recipient: &recs[i]}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *pgStore) Import(ctx context.Context, each func(add func(Record) error) error) (int, error) {
	n := 0
	now := s.now()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return each(func(rec Record) error {
			var err error
			switch {
			case rec.Secret != nil:
				_, err = tx.Exec(ctx, `INSERT INTO herald_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, secretKey, rec.Secret)
			case rec.Suppression != nil:
				_, err = pgSuppress(ctx, tx, *rec.Suppression, now)
			case rec.Campaign != nil:
				li := rec.Campaign.Info
				_, err = tx.Exec(ctx, `INSERT INTO herald_campaigns (name, columns, template_hash, total, invalid, duplicate, suppressed, loaded_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING`, rec.Campaign.Name, jsonArg(nonNil(li.Columns)),
					li.TemplateHash, li.Total, li.Invalid, li.Duplicate, li.Suppressed, now.UnixMilli())
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
				_, err = tx.Exec(ctx, `INSERT INTO herald_recipients (campaign, key, email, line, state, attempts, code,
					enhanced, reason, provider_id, first_attempt, last_attempt, next_attempt, updated_at, fields, provider)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (campaign, key) DO NOTHING`,
					rr.Campaign, rr.Key, r.Email, r.Line, string(st), r.Attempts, r.Code, r.Enhanced, r.Reason, r.ProviderID,
					millis(r.FirstAttempt), millis(r.LastAttempt), millis(r.NextAttempt), r.UpdatedAt.UnixMilli(), fieldsArg(rr.Fields), r.Provider)
			}
			if err == nil {
				n++
			}
			return err
		})
	})
	if err != nil {
		return 0, s.errorf("import", err)
	}
	return n, nil
}

// --- a run

// pgWatchEvery is how often a run checks its liveness connection; pgSettleEvery how
// often it settles the campaign's dead runs.
const (
	pgWatchEvery  = time.Second
	pgSettleEvery = 5 * time.Second
)

type pgRun struct {
	s        *pgStore
	id       int64
	campaign string
	w        *writer

	connMu sync.Mutex
	conn   *pgx.Conn // holds the liveness lock

	lost     chan struct{}
	lostOnce sync.Once
	lostErr  error
	stop     chan struct{}
	wg       sync.WaitGroup

	endOnce sync.Once
	endErr  error
}

func (r *pgRun) ID() int64                              { return r.id }
func (r *pgRun) Lost() <-chan struct{}                  { return r.lost }
func (r *pgRun) Record(o Outcome)                       { r.w.record(o, nil) }
func (r *pgRun) RecordThen(o Outcome, done func(error)) { r.w.record(o, done) }
func (r *pgRun) Flush(ctx context.Context) error {
	return r.w.flush(ctx)
}
func (r *pgRun) Handoff(ctx context.Context, key string) func() error {
	select {
	case <-r.lost:
		err := r.Err()
		return func() error { return err }
	default:
	}
	return r.w.handoff(ctx, key)
}

func (r *pgRun) Err() error {
	if err := r.w.Err(); err != nil {
		return err
	}
	select {
	case <-r.lost:
		return r.lostErr
	default:
		return nil
	}
}

func (r *pgRun) setLost(err error) {
	r.lostOnce.Do(func() {
		r.lostErr = r.s.errorf(fmt.Sprintf("campaign %q: run %d lost its connection", r.campaign, r.id), err)
		close(r.lost)
	})
}

// watch checks the liveness connection and settles dead runs of the campaign, so
// that a dead host's share is finished by the others without anyone's action.
func (r *pgRun) watch() {
	defer r.wg.Done()
	tick := time.NewTicker(pgWatchEvery)
	defer tick.Stop()
	lastSettle := time.Now()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		r.connMu.Lock()
		err := r.conn.Ping(ctx)
		r.connMu.Unlock()
		cancel()
		if err != nil {
			r.setLost(err)
			return
		}
		if time.Since(lastSettle) >= pgSettleEvery {
			lastSettle = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = r.s.Settle(ctx, r.campaign)
			cancel()
		}
	}
}

// abandon closes the liveness connection without ending the run.
func (r *pgRun) abandon() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
	r.connMu.Lock()
	r.conn.Close(context.Background())
	r.connMu.Unlock()
	// The server drops the lock once it has seen the connection go.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		var held bool
		err := r.s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM herald_runs r WHERE r.id = $1 AND `+pgAlive+`)`, r.id).Scan(&held)
		if err != nil || !held {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *pgRun) Live(ctx context.Context) (int, error) {
	var n int64
	err := r.s.pool.QueryRow(ctx, `SELECT count(*) FROM herald_runs r WHERE r.campaign = $1 AND r.ended IS NULL AND `+pgAlive, r.campaign).Scan(&n)
	if err != nil {
		return 0, r.s.errorf("count live runs", err)
	}
	return int(n), nil
}

func (r *pgRun) Others(ctx context.Context) (int, error) {
	var n int64
	err := r.s.pool.QueryRow(ctx, `SELECT count(*) FROM herald_recipients WHERE campaign = $1 AND state IN ('claimed', 'sending')
		AND (run_id IS NULL OR run_id <> $2)`, r.campaign, r.id).Scan(&n)
	if err != nil {
		return 0, r.errorf("count others' claims", err)
	}
	return int(n), nil
}

func (r *pgRun) errorf(op string, err error) error {
	return r.s.errorf(fmt.Sprintf("campaign %q: %s", r.campaign, op), err)
}

// loadChunk is how many rows one INSERT of Load carries.
const loadChunk = 1000

func (r *pgRun) Load(ctx context.Context, info *ListInfo, feed func(add func(Item) error) error) (int, error) {
	now := r.s.now().UnixMilli()
	added := 0
	err := pgx.BeginFunc(ctx, r.s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('herald load ' || $1, 0))`, r.campaign); err != nil {
			return err
		}
		var hash string
		err := tx.QueryRow(ctx, `SELECT template_hash FROM herald_campaigns WHERE name = $1`, r.campaign).Scan(&hash)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err == nil && hash != info.TemplateHash {
			var others int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM herald_runs r WHERE r.campaign = $1 AND r.ended IS NULL
				AND r.id <> $2 AND `+pgAlive, r.campaign, r.id).Scan(&others); err != nil {
				return err
			}
			if others > 0 {
				return &MismatchError{Campaign: r.campaign}
			}
		}
		var keys, emails, fields []string
		var lines []int32
		flush := func() error {
			if len(keys) == 0 {
				return nil
			}
			// Rows already there are refreshed only while they wait (pending or
			// deferred) and only when the list changed them: a run that joins others
			// with the same list locks none of the rows they are claiming (a claim
			// skips locked rows, and would find nothing to do while the load lasts).
			// New rows are inserted with DO NOTHING. An upsert (ON
			// CONFLICT DO UPDATE … WHERE) would lock every row of the list, sent and
			// in flight ones too, in list order for the whole load, while settlement
			// and a run's batched outcomes lock in flight rows in their own order: a
			// deadlock. Rows that wait are changed by no one else but a claim, which
			// skips locked rows, so no writer holding rows waits for the load.
			tag, err := tx.Exec(ctx, `UPDATE herald_recipients x SET email = u.e, line = u.l, fields = u.f
				FROM unnest($2::text[], $3::text[], $4::int[], $5::text[]) AS u(k, e, l, f)
				WHERE x.campaign = $1 AND x.key = u.k AND x.state IN `+tClaim.fromSQL()+`
				AND (x.email, x.line, x.fields) IS DISTINCT FROM (u.e, u.l, u.f)`, r.campaign, keys, emails, lines, fields)
			if err != nil {
				return err
			}
			added += int(tag.RowsAffected())
			tag, err = tx.Exec(ctx, `INSERT INTO herald_recipients (campaign, key, email, line, state, fields, updated_at)
				SELECT $1, k, e, l, `+tLoad.to()+`, f, $6 FROM unnest($2::text[], $3::text[], $4::int[], $5::text[]) AS u(k, e, l, f)
				ON CONFLICT (campaign, key) DO NOTHING`, r.campaign, keys, emails, lines, fields, now)
			if err != nil {
				return err
			}
			added += int(tag.RowsAffected())
			keys, emails, lines, fields = keys[:0], emails[:0], lines[:0], fields[:0]
			return nil
		}
		if err := feed(func(it Item) error {
			key := normalize(it.Key)
			if key == "" {
				return nil
			}
			keys = append(keys, key)
			emails = append(emails, it.Email)
			lines = append(lines, int32(it.Line))
			fields = append(fields, jsonArg(nonNil(it.Fields)))
			if len(keys) == loadChunk {
				return flush()
			}
			return nil
		}); err != nil {
			return err
		}
		if err := flush(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO herald_campaigns (name, columns, template_hash, total, invalid, duplicate, suppressed, loaded_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO UPDATE SET columns = excluded.columns,
			template_hash = excluded.template_hash, total = excluded.total, invalid = excluded.invalid,
			duplicate = excluded.duplicate, suppressed = excluded.suppressed, loaded_at = excluded.loaded_at`,
			r.campaign, jsonArg(nonNil(info.Columns)), info.TemplateHash, info.Total, info.Invalid, info.Duplicate, info.Suppressed, now); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		var me *MismatchError
		if errors.As(err, &me) {
			return 0, me
		}
		return 0, r.errorf("load list", err)
	}
	return added, nil
}

func (r *pgRun) Claim(ctx context.Context, n int) ([]Item, error) {
	if n <= 0 {
		return nil, nil
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	now := r.s.now().UnixMilli()
	// Pending and due deferred rows are read apart, each in list order along the
	// (campaign, state, line) index, so that a claim reads about n rows, not the queue.
	rows, err := r.s.pool.Query(ctx, `WITH p AS (
			SELECT q.campaign, q.key, q.line FROM herald_recipients q WHERE q.campaign = $3 AND q.state = 'pending'
			AND NOT EXISTS (SELECT 1 FROM herald_suppressions s WHERE s.key = q.key)
			ORDER BY q.line LIMIT $4 FOR UPDATE SKIP LOCKED),
		d AS (
			SELECT q.campaign, q.key, q.line FROM herald_recipients q WHERE q.campaign = $3 AND q.state = 'deferred'
			AND coalesce(q.next_attempt, 0) <= $2
			AND NOT EXISTS (SELECT 1 FROM herald_suppressions s WHERE s.key = q.key)
			ORDER BY q.line LIMIT $4 FOR UPDATE SKIP LOCKED)
		UPDATE herald_recipients x SET state = `+tClaim.to()+`, run_id = $1, updated_at = $2
		FROM (SELECT * FROM (SELECT * FROM p UNION ALL SELECT * FROM d) u ORDER BY u.line LIMIT $4) c
		WHERE x.campaign = c.campaign AND x.key = c.key
		RETURNING x.key, x.email, x.line, x.fields, x.attempts, x.first_attempt`, r.id, now, r.campaign, n)
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

// pgHandoffSQL makes one hand-off ($1 now, $2 campaign, $3 key, $4 run).
var pgHandoffSQL = `UPDATE herald_recipients SET state = ` + tHandoff.to() + `, attempts = attempts + 1,
	first_attempt = coalesce(first_attempt, $1), last_attempt = $1, updated_at = $1
	WHERE campaign = $2 AND key = $3 AND run_id = $4 AND ` + tHandoff.fromTest("state")

// pgOutcomeSQL records one outcome with the provider's answer by transition t ($1
// provider id, $2 code, $3 enhanced, $4 reason, $5 next attempt, $6 now, $7 campaign,
// $8 key, $9 run, $10 provider).
func pgOutcomeSQL(t Transition) string {
	return `UPDATE herald_recipients SET state = ` + t.to() + `, provider_id = $1, code = $2, enhanced = $3,
		reason = $4, next_attempt = $5, updated_at = $6, provider = coalesce(nullif($10, ''), provider)
		WHERE campaign = $7 AND key = $8 AND run_id = $9 AND ` + t.fromTest("state")
}

// apply writes a batch of hand-offs and outcomes in one transaction: one pipelined
// batch, which PostgreSQL runs as one implicit transaction (all of it commits, or none),
// so that a group commit costs one round trip and one WAL flush. Each row is written by
// a statement of its own, found by primary key (see fromTest): one statement per kind
// for the whole batch (UPDATE … FROM unnest) was measured slower, its plan made anew at
// every execution, or, forced generic, reading the queue index.
func (r *pgRun) apply(ctx context.Context, ops []op, results []error) error {
	ctx, cancel := context.WithTimeout(ctx, pgStatementTimeout)
	defer cancel()
	now := r.s.now()
	ms := now.UnixMilli()
	b := &pgx.Batch{}
	kinds := make([]Transition, len(ops))
	for i, o := range ops {
		if !o.isOut {
			kinds[i] = tHandoff
			b.Queue(pgHandoffSQL, ms, r.campaign, o.key, r.id)
			continue
		}
		oc := o.outcome
		t, ok := outcomeTransition(oc)
		if !ok {
			results[i] = fmt.Errorf("journal: campaign %q: outcome of %s has invalid state %q", r.campaign, oc.Key, oc.State)
			continue
		}
		kinds[i] = t
		if t.Name == tReopen.Name {
			b.Queue(`UPDATE herald_recipients SET state = `+t.to()+`, run_id = NULL, code = 0, enhanced = '', reason = '',
				updated_at = $1 WHERE campaign = $2 AND key = $3 AND run_id = $4 AND `+t.fromTest("state"), ms, r.campaign, oc.Key, r.id)
			b.Queue(`DELETE FROM herald_suppressions WHERE key = $1 AND source = $2`, oc.Key, "bounce:"+r.campaign)
			continue
		} else if t.Name == tRelease.Name || t.Name == tHold.Name {
			// The attempt never reached the provider: it does not count. A hold keeps
			// the row the run's (claimed) until the run ends.
			owner := "NULL"
			if t.Name == tHold.Name {
				owner = "run_id"
			}
			b.Queue(`UPDATE herald_recipients SET state = `+t.to()+`, run_id = `+owner+`,
				attempts = CASE WHEN state = 'sending' THEN greatest(attempts - 1, 0) ELSE attempts END,
				first_attempt = CASE WHEN state = 'sending' AND attempts <= 1 THEN NULL ELSE first_attempt END,
				updated_at = $1 WHERE campaign = $2 AND key = $3 AND run_id = $4 AND `+t.fromTest("state"), ms, r.campaign, oc.Key, r.id)
		} else {
			b.Queue(pgOutcomeSQL(t),
				oc.ProviderID, oc.Code, oc.Enhanced, truncate(oc.Reason, maxReason), millis(oc.NextAttempt), ms, r.campaign, oc.Key, r.id, oc.Provider)
		}
		if oc.Suppress {
			email := oc.Email
			if email == "" {
				email = oc.Key
			}
			if key, em, reason, source, at, ok := suppressionArgs(Suppression{Email: email, Reason: oc.Reason, Source: "bounce:" + r.campaign}, now); ok {
				b.Queue(pgInsertSuppression, key, em, reason, source, at)
			}
		}
	}
	br := r.s.pool.SendBatch(ctx, b)
	var refused []int
	for i, o := range ops {
		if kinds[i].Name == "" {
			continue
		}
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return err
		}
		n := tag.RowsAffected()
		if kinds[i].Name == tReopen.Name {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return err
			}
			continue
		}
		switch {
		case kinds[i].Name == tHandoff.Name && n != 1:
			refused = append(refused, i)
		case o.isOut && n == 0 && kinds[i].Name != tRelease.Name && kinds[i].Name != tHold.Name:
			results[i] = fmt.Errorf("journal: campaign %q: outcome %s of %s without this run's hand-off", r.campaign, o.outcome.State, o.key)
		}
		if o.isOut && o.outcome.Suppress {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return err
			}
		}
	}
	if err := br.Close(); err != nil {
		return err
	}
	// Committed. A refused hand-off says what the recipient is now (for the message
	// only: it is not this run's either way).
	for _, i := range refused {
		var st string
		err := r.s.pool.QueryRow(ctx, `SELECT state FROM herald_recipients WHERE campaign = $1 AND key = $2`, r.campaign, ops[i].key).Scan(&st)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			st = "no longer claimed"
		}
		results[i] = &StateError{Campaign: r.campaign, Key: ops[i].key, State: State(st)}
	}
	return nil
}

func (r *pgRun) End(ctx context.Context, summary []byte) error {
	r.endOnce.Do(func() {
		ctx := context.WithoutCancel(ctx)
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		err := r.w.close()
		now := r.s.now().UnixMilli()
		if _, rerr := r.s.pool.Exec(ctx, `UPDATE herald_recipients SET state = `+tRelease.to()+`, run_id = NULL, updated_at = $1
			WHERE campaign = $3 AND state = 'claimed' AND run_id = $2`, now, r.id, r.campaign); rerr != nil && err == nil {
			err = r.errorf("release claims", rerr)
		}
		if _, rerr := r.s.pool.Exec(ctx, `UPDATE herald_runs SET ended = $1, summary = $2 WHERE id = $3 AND ended IS NULL`, now, summary, r.id); rerr != nil && err == nil {
			err = r.errorf(fmt.Sprintf("end run %d", r.id), rerr)
		}
		select {
		case <-r.stop:
		default:
			close(r.stop)
		}
		r.wg.Wait()
		r.connMu.Lock()
		_, _ = r.conn.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, int32(runLockClass), int32(r.id))
		r.conn.Close(ctx)
		r.connMu.Unlock()
		r.endErr = err
	})
	return r.endErr
}
