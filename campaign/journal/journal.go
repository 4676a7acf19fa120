// Package journal is herald's durable record of every recipient of every campaign and
// of the store-wide suppression list, kept in one SQLite file.
//
// # Guarantees
//
// A recipient is handed to a provider only after its claim (state `sending`) is
// committed, and its outcome is recorded after the provider answered. A process that
// dies in between leaves the row `sending`; the next run of the campaign (BeginRun,
// under the campaign's run lock) turns such rows into `unknown`, which are never resent
// automatically. Nobody is mailed twice and nobody is lost.
//
// The file runs in WAL mode with synchronous=NORMAL: every commit is in the WAL file
// before Commit returns, so it survives the death of the process (kill -9, a panic, an
// OOM kill) at any moment, which is the guarantee herald gives. It may lose the last
// commits on a power failure or an operating-system crash; synchronous=FULL would cost
// an fsync per commit for that.
//
// # Concurrency
//
// One Writer per running campaign batches claims and outcomes into group commits. The
// other writes (Suppress, Unsuppress, BeginRun, EndRun, Secret) are short transactions
// on the same single write connection, so within a process they simply queue behind a
// batch; other processes (herald serve) wait on SQLite's busy timeout. Reads use their
// own connections and, thanks to WAL, never wait for writers.
package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// State is the journal state of one recipient of one campaign.
type State string

// The states a recipient goes through. A recipient is `pending` until a worker claims
// it (`sending`); the claim ends in `sent`, `deferred` (temporary failure, retried by a
// later run), `failed` (permanent) or `unknown` (the message may or may not have been
// accepted; never resent automatically).
const (
	Pending  State = "pending"
	Sending  State = "sending"
	Sent     State = "sent"
	Deferred State = "deferred"
	Failed   State = "failed"
	Unknown  State = "unknown"
)

// States lists every State in report order. It is never modified.
var States = []State{Pending, Sending, Sent, Deferred, Failed, Unknown}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	switch s {
	case Pending, Sending, Sent, Deferred, Failed, Unknown:
		return true
	}
	return false
}

// busyTimeout is how long a write waits for another process's write transaction
// (herald serve adding a suppression, another campaign's run) before failing.
const busyTimeout = 15 * time.Second

// Options tune a Store.
type Options struct {
	// Now is the clock used for every timestamp the store writes (nil: time.Now).
	Now func() time.Time
}

// Store is an open journal file. It is safe for concurrent use.
type Store struct {
	path string
	now  func() time.Time
	wdb  *sql.DB // the single write connection
	rdb  *sql.DB // read-only connections
}

// Open opens the journal at path, creating the file if needed (not its folder),
// and brings its schema up to date.
func Open(ctx context.Context, path string, o Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("journal: open: empty store path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	s := &Store{path: path, now: o.Now}
	if s.now == nil {
		s.now = time.Now
	}
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
	if err := migrate(ctx, s.wdb, len(migrations)); err != nil {
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

// Close closes the store's connections. Writers must be closed first.
func (s *Store) Close() error {
	err := s.wdb.Close()
	if rerr := s.rdb.Close(); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("journal: close %s: %w", s.path, err)
	}
	return nil
}

// Path returns the path the store was opened with.
func (s *Store) Path() string { return s.path }

// errorf builds an error that names the store and the operation.
func (s *Store) errorf(op string, err error) error {
	return fmt.Errorf("journal %s: %s: %w", s.path, op, err)
}

// millis converts t to unix milliseconds for storage; the zero time is NULL.
func millis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// fromMillis converts a stored time back; NULL is the zero time.
func fromMillis(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64)
}

// normalize returns the canonical key of an address: trimmed and lower-cased.
func normalize(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
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
