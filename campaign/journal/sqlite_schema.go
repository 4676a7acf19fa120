package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteMigrations are the SQLite schema steps in order; sqliteMigrations[i] takes a
// file from schema version i (PRAGMA user_version) to i+1. Steps are only ever appended.
var sqliteMigrations = []string{
	// v1: recipients, runs, the suppression list and store metadata.
	`CREATE TABLE recipients (
		campaign      TEXT    NOT NULL,
		key           TEXT    NOT NULL,
		email         TEXT    NOT NULL,
		line          INTEGER NOT NULL DEFAULT 0,
		state         TEXT    NOT NULL,
		attempts      INTEGER NOT NULL DEFAULT 0,
		code          INTEGER NOT NULL DEFAULT 0,
		enhanced      TEXT    NOT NULL DEFAULT '',
		reason        TEXT    NOT NULL DEFAULT '',
		provider_id   TEXT    NOT NULL DEFAULT '',
		first_attempt INTEGER,
		last_attempt  INTEGER,
		next_attempt  INTEGER,
		updated_at    INTEGER NOT NULL,
		PRIMARY KEY (campaign, key)
	) WITHOUT ROWID;
	CREATE TABLE runs (
		id       INTEGER PRIMARY KEY AUTOINCREMENT,
		campaign TEXT    NOT NULL,
		started  INTEGER NOT NULL,
		ended    INTEGER,
		pid      INTEGER NOT NULL
	);
	CREATE TABLE suppressions (
		key        TEXT PRIMARY KEY,
		email      TEXT NOT NULL,
		reason     TEXT NOT NULL DEFAULT '',
		source     TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE meta (
		key   TEXT PRIMARY KEY,
		value BLOB NOT NULL
	) WITHOUT ROWID;`,

	// v2: the run summary for status, an index for state counts, one for the last run.
	`ALTER TABLE runs ADD COLUMN summary BLOB;
	CREATE INDEX recipients_state ON recipients (campaign, state);
	CREATE INDEX runs_campaign ON runs (campaign, id);`,

	// v3: the store is the work queue. Rows carry their list fields and the run that
	// owns them; campaigns record what was loaded; runs record their host; the queue is
	// read in list order per state; in-flight rows are found by run.
	`ALTER TABLE recipients ADD COLUMN run_id INTEGER;
	ALTER TABLE recipients ADD COLUMN fields TEXT;
	ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';
	ALTER TABLE runs ADD COLUMN died INTEGER NOT NULL DEFAULT 0;
	CREATE TABLE campaigns (
		name          TEXT PRIMARY KEY,
		columns       TEXT NOT NULL DEFAULT '[]',
		template_hash TEXT NOT NULL DEFAULT '',
		total         INTEGER NOT NULL DEFAULT 0,
		invalid       INTEGER NOT NULL DEFAULT 0,
		duplicate     INTEGER NOT NULL DEFAULT 0,
		suppressed    INTEGER NOT NULL DEFAULT 0,
		loaded_at     INTEGER NOT NULL DEFAULT 0
	) WITHOUT ROWID;
	DROP INDEX recipients_state;
	CREATE INDEX recipients_queue ON recipients (campaign, state, line);
	CREATE INDEX recipients_inflight ON recipients (run_id) WHERE state IN ('claimed', 'sending');`,

	// v4: the provider that took a recipient's last attempt (the fallback's after a switch).
	`ALTER TABLE recipients ADD COLUMN provider TEXT NOT NULL DEFAULT '';`,
}

// migrateSQLite brings the schema of db up to version target in one transaction. It is
// a no-op on a file that is already there, and refuses a file written by a newer herald.
func migrateSQLite(ctx context.Context, db *sql.DB, target int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("schema migration: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("schema migration: read version: %w", err)
	}
	if version > len(sqliteMigrations) {
		return fmt.Errorf("schema version %d is newer than this herald knows (%d); upgrade herald", version, len(sqliteMigrations))
	}
	if version >= target {
		return nil
	}
	for v := version; v < target; v++ {
		if _, err := tx.ExecContext(ctx, sqliteMigrations[v]); err != nil {
			return fmt.Errorf("schema migration to v%d: %w", v+1, err)
		}
	}
	// PRAGMA takes no bound parameters; target is an int from this package.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", target)); err != nil {
		return fmt.Errorf("schema migration: set version %d: %w", target, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("schema migration to v%d: commit: %w", target, err)
	}
	return nil
}

// migrateSQLiteWhenFree is migrateSQLite, tried again while SQLite answers busy, for up
// to busyTimeout. Switching a new file to WAL (the connection's first pragma) needs the
// file to itself and answers SQLITE_BUSY at once, without the busy timeout, when another
// process or connection opens the same new file at that moment.
func migrateSQLiteWhenFree(ctx context.Context, db *sql.DB, target int) error {
	deadline := time.Now().Add(busyTimeout)
	wait := 5 * time.Millisecond
	for {
		err := migrateSQLite(ctx, db, target)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait + rand.N(wait)):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// SQLiteSchemaVersion is the SQLite schema version this package writes.
func SQLiteSchemaVersion() int { return len(sqliteMigrations) }

// MigrateSQLiteTo creates or upgrades the SQLite file at path to schema version v only
// (tests: files of earlier versions).
func MigrateSQLiteTo(ctx context.Context, path string, v int) error {
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	defer db.Close()
	return migrateSQLite(ctx, db, v)
}
