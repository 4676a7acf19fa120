package journal

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are the schema steps in order; migrations[i] takes a file from schema
// version i (PRAGMA user_version) to i+1. Steps are only ever appended.
var migrations = []string{
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

	// v2: the run summary for `status`, an index for state counts and listings by
	// state, and one for the last run of a campaign. There is deliberately no index on
	// (campaign, line): EachRow sorts the rows it selects, and every index adds pages
	// to each of the writer's commits.
	`ALTER TABLE runs ADD COLUMN summary BLOB;
	CREATE INDEX recipients_state ON recipients (campaign, state);
	CREATE INDEX runs_campaign ON runs (campaign, id);`,
}

// migrate brings the schema of db up to version target (at most len(migrations)) in
// one transaction. It is a no-op on a file that is already there, and refuses a file
// written by a newer herald.
func migrate(ctx context.Context, db *sql.DB, target int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("schema migration: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("schema migration: read version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this herald knows (%d); upgrade herald", version, len(migrations))
	}
	if version >= target {
		return nil
	}
	for v := version; v < target; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
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

// SchemaVersion is the schema version this package writes.
func SchemaVersion() int { return len(migrations) }
