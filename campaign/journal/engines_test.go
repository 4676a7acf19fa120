package journal_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/journal/journaltest"
	"github.com/heraldmail/herald/campaign/journal/pgtest"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestSQLiteConformance(t *testing.T) {
	journaltest.Run(t, journaltest.Engine{
		New: func(t *testing.T) string { return filepath.Join(t.TempDir(), "herald.db") },
	})
}

func TestPostgresConformance(t *testing.T) {
	journaltest.Run(t, journaltest.Engine{New: func(t *testing.T) string { return pgtest.URL(t) }, Shared: true})
}

// TestLockCanonicalPath: one store file is one store however it is reached: a symlink
// or another spelling of its path gets the same lock (issue 13, item 4).
func TestLockCanonicalPath(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "data", "herald.db")
	os.MkdirAll(filepath.Dir(real), 0o755)
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	dirLink := filepath.Join(dir, "d")
	if err := os.Symlink(filepath.Join(dir, "data"), dirLink); err != nil {
		t.Fatal(err)
	}
	s := journaltest.Open(t, real, nil)
	journaltest.Begin(t, s, "nov")
	wd, _ := os.Getwd()
	rel, _ := filepath.Rel(wd, real)
	for _, p := range []string{link, filepath.Join(dirLink, "herald.db"), filepath.Join(dir, "data", "..", "data", "herald.db"), rel} {
		other := journaltest.Open(t, p, nil)
		_, err := other.BeginRun(context.Background(), journal.RunSpec{Campaign: "nov"})
		var le *journal.LockedError
		if !errors.As(err, &le) {
			t.Errorf("run through %s = %v, want *LockedError", p, err)
		}
	}
	if journal.LockPath(link, "nov") != journal.LockPath(real, "nov") {
		t.Error("a symlink has its own lock file")
	}
}

// TestSQLiteMigrationFromEveryVersion: files of every earlier schema version open, keep
// their rows, and their claims from before runs owned rows are settled like a dead
// run's.
func TestSQLiteMigrationFromEveryVersion(t *testing.T) {
	ctx := context.Background()
	for v := 1; v < journal.SQLiteSchemaVersion(); v++ {
		path := filepath.Join(t.TempDir(), "old.db")
		if err := journal.MigrateSQLiteTo(ctx, path, v); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`INSERT INTO recipients (campaign, key, email, line, state, attempts, updated_at) VALUES ('nov', 'a@x', 'a@x', 2, 'sent', 1, 1)`,
			`INSERT INTO recipients (campaign, key, email, line, state, attempts, updated_at) VALUES ('nov', 'b@x', 'b@x', 3, 'sending', 1, 1)`,
			`INSERT INTO recipients (campaign, key, email, line, state, attempts, updated_at) VALUES ('nov', 'c@x', 'c@x', 4, 'pending', 0, 1)`,
			`INSERT INTO suppressions (key, email, created_at) VALUES ('d@x', 'd@x', 1)`,
			`INSERT INTO meta (key, value) VALUES ('unsubscribe_secret', X'0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20')`,
			`INSERT INTO runs (campaign, started, pid) VALUES ('nov', 1, 7)`,
		} {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
		s := journaltest.Open(t, path, nil)
		r := journaltest.Begin(t, s, "nov")
		got := journaltest.Counts(t, s, "nov")
		if got[journal.Sent] != 1 || got[journal.Unknown] != 1 || got[journal.Pending] != 1 {
			t.Fatalf("v%d: counts after migration = %v", v, got)
		}
		if ok, _ := s.IsSuppressed(ctx, "d@x"); !ok {
			t.Fatalf("v%d: suppression lost", v)
		}
		if sec, _ := s.Secret(ctx); len(sec) != 32 || sec[0] != 1 {
			t.Fatalf("v%d: secret lost", v)
		}
		items, err := r.Claim(ctx, 10)
		if err != nil || len(items) != 1 || items[0].Key != "c@x" {
			t.Fatalf("v%d: claim after migration = %+v, %v", v, items, err)
		}
		wantProviderRecorded(t, s, r, v)
	}
}

// wantProviderRecorded checks, on a migrated store whose c@x is claimed by r, that old
// rows have no provider and an outcome records the provider that took it.
func wantProviderRecorded(t *testing.T, s journal.Store, r journal.Run, v int) {
	t.Helper()
	ctx := context.Background()
	if err := r.Handoff(ctx, "c@x")(); err != nil {
		t.Fatalf("v%d: hand-off after migration: %v", v, err)
	}
	done := make(chan error, 1)
	r.RecordThen(journal.Outcome{Key: "c@x", State: journal.Sent, Provider: "ses"}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatalf("v%d: record after migration: %v", v, err)
	}
	got := map[string]string{}
	if err := s.EachRow(ctx, "nov", nil, func(row journal.Row) error { got[row.Email] = row.Provider; return nil }); err != nil {
		t.Fatal(err)
	}
	if got["a@x"] != "" || got["c@x"] != "ses" {
		t.Fatalf("v%d: providers after migration = %v, want a@x empty, c@x ses", v, got)
	}
}

// TestPostgresMigrationFromEveryVersion: databases of every earlier schema version open,
// keep their rows, and record the provider of new outcomes.
func TestPostgresMigrationFromEveryVersion(t *testing.T) {
	ctx := context.Background()
	for v := 1; v < journal.PGSchemaVersion(); v++ {
		url := pgtest.URL(t)
		if err := journal.MigratePGTo(ctx, url, v); err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`INSERT INTO herald_recipients (campaign, key, email, line, state, attempts, updated_at) VALUES ('nov', 'a@x', 'a@x', 2, 'sent', 1, 1)`,
			`INSERT INTO herald_recipients (campaign, key, email, line, state, attempts, updated_at) VALUES ('nov', 'c@x', 'c@x', 4, 'pending', 0, 1)`,
			`INSERT INTO herald_suppressions (key, email, created_at) VALUES ('d@x', 'd@x', 1)`,
		} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		conn.Close(ctx)
		s := journaltest.Open(t, url, nil)
		r := journaltest.Begin(t, s, "nov")
		got := journaltest.Counts(t, s, "nov")
		if got[journal.Sent] != 1 || got[journal.Pending] != 1 {
			t.Fatalf("v%d: counts after migration = %v", v, got)
		}
		if ok, _ := s.IsSuppressed(ctx, "d@x"); !ok {
			t.Fatalf("v%d: suppression lost", v)
		}
		items, err := r.Claim(ctx, 10)
		if err != nil || len(items) != 1 || items[0].Key != "c@x" {
			t.Fatalf("v%d: claim after migration = %+v, %v", v, items, err)
		}
		wantProviderRecorded(t, s, r, v)
	}
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	db, _ := sql.Open("sqlite", "file:"+path)
	db.Exec(`PRAGMA user_version = 99`)
	db.Close()
	_, err := journal.Open(context.Background(), path, journal.Options{})
	if err == nil || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), path) {
		t.Fatalf("open of a newer file = %v", err)
	}
}

// TestPostgresConcurrentFirstOpen: send and serve may create the tables at the same
// moment on a fresh database.
func TestPostgresConcurrentFirstOpen(t *testing.T) {
	url := pgtest.URL(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := journal.Open(context.Background(), url, journal.Options{})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestPostgresURLErrors(t *testing.T) {
	ctx := context.Background()
	_, err := journal.Open(ctx, "postgres://u:s3cret@127.0.0.1:notaport/db", journal.Options{})
	var ue *journal.URLError
	if !errors.As(err, &ue) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("malformed URL = %v, want a *URLError without the password", err)
	}
	// Nothing listens on this port.
	_, err = journal.Open(ctx, "postgresql://u:s3cret@127.0.0.1:1/herald?connect_timeout=2", journal.Options{})
	var une *journal.UnavailableError
	if !errors.As(err, &une) || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1:1/herald") {
		t.Fatalf("refused connection = %v, want an *UnavailableError naming host, port and database only", err)
	}
}

func TestPostgresWrongPassword(t *testing.T) {
	url := pgtest.URL(t)
	bad := strings.Replace(url, "@127.0.0.1", "x-wrong-pass@127.0.0.1", 1)
	bad = strings.Replace(bad, ":pw", ":zz", 1)
	_, err := journal.Open(context.Background(), bad, journal.Options{})
	var une *journal.UnavailableError
	if !errors.As(err, &une) || strings.Contains(err.Error(), "x-wrong-pass") {
		t.Fatalf("refused login = %v", err)
	}
}

// TestSQLiteConcurrentFirstOpen: two campaigns (or send and serve) may open a store file
// that does not exist yet at the same moment; switching a new file to WAL answers
// SQLITE_BUSY without waiting, and neither open may fail for it.
func TestSQLiteConcurrentFirstOpen(t *testing.T) {
	dir := t.TempDir()
	for i := range 20 {
		path := filepath.Join(dir, fmt.Sprintf("s%d.db", i))
		errs := make(chan error, 6)
		for range 6 {
			go func() {
				s, err := journal.Open(context.Background(), path, journal.Options{})
				if err == nil {
					s.Close()
				}
				errs <- err
			}()
		}
		for range 6 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
}
