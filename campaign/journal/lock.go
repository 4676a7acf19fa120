package journal

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofrs/flock"
)

// LockedError reports that another process holds a campaign's run lock.
type LockedError struct {
	// Campaign is the campaign whose lock is held.
	Campaign string
	// PID is the holder's process id (0 when the lock file did not say).
	PID int
	// Since is when the holder took the lock (zero when the lock file did not say).
	Since time.Time
}

// Error names the running process and what to do about it.
func (e *LockedError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "process " + strconv.Itoa(e.PID)
	}
	since := ""
	if !e.Since.IsZero() {
		layout := "15:04:05"
		if y, m, d := e.Since.Date(); y != time.Now().Year() || m != time.Now().Month() || d != time.Now().Day() {
			layout = "2006-01-02 15:04:05"
		}
		since = " (since " + e.Since.Format(layout) + ")"
	}
	return fmt.Sprintf("campaign %q is already being sent by %s%s; wait for it or stop it", e.Campaign, who, since)
}

// LockPath returns the lock file of campaign in the store at storePath:
// "<canonical store path>.<first 12 hex digits of sha256(campaign)>.lock". The store's
// path is made absolute and its symbolic links resolved, so that one store file has one
// lock however it is reached (a symlink, a relative path, "dir/../herald.db").
func LockPath(storePath, campaign string) string {
	sum := sha256.Sum256([]byte(campaign))
	return CanonicalPath(storePath) + "." + hex.EncodeToString(sum[:])[:12] + ".lock"
}

// CanonicalPath returns path made absolute with every symbolic link resolved. When the
// file does not exist yet, its folder is resolved and the name kept.
func CanonicalPath(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		return p
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs))
	}
	return abs
}

// Lock takes the exclusive run lock of campaign in the store at storePath, an flock(2)
// on LockPath holding the owner's pid and start time. It never waits: a lock held by a
// live process fails at once with *LockedError. The kernel releases the lock of a
// process that dies, so a killed run never blocks the next one. release unlocks; it is
// safe to call more than once. The lock file itself is left in place (removing it would
// let two processes lock different files of the same name).
func Lock(storePath, campaign string) (release func() error, err error) {
	path := LockPath(storePath, campaign)
	fl := flock.New(path, flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o644))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("journal: lock campaign %q: %s: %w", campaign, path, err)
	}
	if !ok {
		le := &LockedError{Campaign: campaign}
		// The holder writes its details just after locking; give it a moment.
		for i := 0; i < 5; i++ {
			if le.PID, le.Since = readLockOwner(path); le.PID > 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil, le
	}
	owner := fmt.Sprintf("%d %d\n", os.Getpid(), time.Now().UnixMilli())
	if err := writeLockOwner(path, owner); err != nil {
		fl.Unlock()
		return nil, fmt.Errorf("journal: lock campaign %q: %s: %w", campaign, path, err)
	}
	var once sync.Once
	var uerr error
	return func() error {
		once.Do(func() {
			// Clear the owner first, while still holding the lock.
			_ = os.Truncate(path, 0)
			if err := fl.Unlock(); err != nil {
				uerr = fmt.Errorf("journal: unlock campaign %q: %s: %w", campaign, path, err)
			}
		})
		return uerr
	}, nil
}

// writeLockOwner replaces the content of the lock file with owner.
func writeLockOwner(path, owner string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(owner)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readLockOwner parses "PID UNIXMILLIS" from the lock file; zeros when unreadable.
func readLockOwner(path string) (pid int, since time.Time) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 64 {
		return 0, time.Time{}
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, time.Time{}
	}
	p, err1 := strconv.Atoi(f[0])
	ms, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || p <= 0 {
		return 0, time.Time{}
	}
	return p, time.UnixMilli(ms)
}
