package journal

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv selects what TestHelperProcess does in a child process.
const helperEnv = "HERALD_JOURNAL_HELPER"

// TestHelperProcess is not a test: it is the child process the tests below start and
// SIGKILL. It does nothing unless helperEnv is set.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	path := os.Getenv("HERALD_JOURNAL_PATH")
	switch mode {
	case "lock":
		if _, err := Lock(path, "nov"); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
	case "claim":
		s, err := Open(context.Background(), path, Options{})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		w := s.NewWriter("nov")
		var mu sync.Mutex
		out := bufio.NewWriter(os.Stdout)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					key := fmt.Sprintf("g%d-%d@x", g, i)
					if err := w.Claim(context.Background(), Claim{Key: key, Email: key, Line: i}); err != nil {
						mu.Lock()
						fmt.Fprintln(out, "error", err)
						out.Flush()
						mu.Unlock()
						return
					}
					mu.Lock()
					fmt.Fprintln(out, "claimed", key)
					out.Flush()
					mu.Unlock()
					// Half the recipients get an outcome; the rest stay claimed.
					if i%2 == 0 {
						w.Record(Outcome{Key: key, State: Sent})
					}
				}
			}()
		}
		wg.Wait()
	}
	os.Exit(0)
}

// startHelper runs TestHelperProcess in mode and returns it with its stdout lines.
func startHelper(t *testing.T, mode, path string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "HERALD_JOURNAL_PATH="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewScanner(stdout)
}

func TestLockExclusivePerCampaign(t *testing.T) {
	store := filepath.Join(t.TempDir(), "herald.db")
	release, err := Lock(store, "nov")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(store, "nov")
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second Lock = %v, want *LockedError", err)
	}
	if le.PID != os.Getpid() || le.Campaign != "nov" || time.Since(le.Since) > time.Minute {
		t.Fatalf("LockedError = %+v", le)
	}
	if msg := err.Error(); !strings.Contains(msg, `campaign "nov" is already being sent by process `+strconv.Itoa(os.Getpid())) ||
		!strings.Contains(msg, "wait for it or stop it") {
		t.Fatalf("message %q", msg)
	}
	other, err := Lock(store, "dec")
	if err != nil {
		t.Fatalf("a different campaign is blocked: %v", err)
	}
	otherStore, err := Lock(store+"2", "nov")
	if err != nil {
		t.Fatalf("the same campaign in another store is blocked: %v", err)
	}
	for _, r := range []func() error{release, release, other, otherStore} {
		if err := r(); err != nil {
			t.Fatal(err)
		}
	}
	again, err := Lock(store, "nov")
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	again()
	if !strings.HasPrefix(filepath.Base(LockPath(store, "nov")), "herald.db.") || len(filepath.Base(LockPath(store, "nov"))) != len("herald.db.")+12+len(".lock") {
		t.Fatalf("LockPath = %s", LockPath(store, "nov"))
	}
}

func TestLockedErrorMessage(t *testing.T) {
	today := time.Now()
	since := time.Date(today.Year(), today.Month(), today.Day(), 10, 15, 3, 0, time.Local)
	for _, tc := range []struct {
		e    LockedError
		want string
	}{
		{LockedError{Campaign: "x", PID: 1234, Since: since},
			`campaign "x" is already being sent by process 1234 (since 10:15:03); wait for it or stop it`},
		{LockedError{Campaign: "x", PID: 1234, Since: since.AddDate(0, 0, -2)},
			`campaign "x" is already being sent by process 1234 (since ` + since.AddDate(0, 0, -2).Format("2006-01-02") + ` 10:15:03); wait for it or stop it`},
		{LockedError{Campaign: "x"}, `campaign "x" is already being sent by another process; wait for it or stop it`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

func TestLockOfKilledProcessDoesNotBlock(t *testing.T) {
	store := filepath.Join(t.TempDir(), "herald.db")
	cmd, lines := startHelper(t, "lock", store)
	if !lines.Scan() || lines.Text() != "locked" {
		t.Fatalf("helper: %q %v", lines.Text(), lines.Err())
	}
	_, err := Lock(store, "nov")
	var le *LockedError
	if !errors.As(err, &le) || le.PID != cmd.Process.Pid {
		t.Fatalf("Lock while the child holds it = %v, want *LockedError naming pid %d", err, cmd.Process.Pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	release, err := Lock(store, "nov")
	if err != nil {
		t.Fatalf("lock of a killed process blocks: %v", err)
	}
	release()
}

func TestCrashLeavesClaimsSending(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "herald.db")
	cmd, lines := startHelper(t, "claim", path)
	claimed := map[string]bool{}
	for len(claimed) < 400 && lines.Scan() {
		f := strings.Fields(lines.Text())
		if len(f) != 2 || f[0] != "claimed" {
			t.Fatalf("helper: %s", lines.Text())
		}
		claimed[f[1]] = true
	}
	if len(claimed) < 400 {
		t.Fatalf("helper stopped after %d claims: %v", len(claimed), lines.Err())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := make([]string, 0, len(claimed))
	for k := range claimed {
		keys = append(keys, k)
	}
	m, err := s.Lookup(ctx, "nov", keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		e, ok := m[k]
		if !ok {
			t.Fatalf("claim of %s was reported but is not in the file", k)
		}
		if e.State != Sending && e.State != Sent {
			t.Fatalf("%s is %s", k, e.State)
		}
	}
	counts, _ := s.Counts(ctx, "nov")
	t.Logf("after kill -9: %d claims reported, journal %v", len(claimed), counts)
	_, recovered, err := s.BeginRun(ctx, "nov", false)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := s.Counts(ctx, "nov")
	if recovered != counts[Sending] || after[Unknown] != counts[Sending] || after[Sending] != 0 || after[Sent] != counts[Sent] {
		t.Fatalf("BeginRun recovered %d; before %v, after %v", recovered, counts, after)
	}
	// Every recipient the child was told it owned is now sent or unknown: none lost.
	m, _ = s.Lookup(ctx, "nov", keys)
	for _, k := range keys {
		if st := m[k].State; st != Unknown && st != Sent {
			t.Fatalf("%s is %s after recovery", k, st)
		}
	}
}

func TestMigrationFromV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, db, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO recipients (campaign, key, email, line, state, attempts, updated_at)
		VALUES ('nov', 'a@x', 'A@x', 2, 'sent', 1, 1000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO runs (campaign, started, pid) VALUES ('nov', 1000, 42)`); err != nil {
		t.Fatal(err)
	}
	if v := userVersion(t, db); v != 1 {
		t.Fatalf("v1 file has version %d", v)
	}
	db.Close()

	for range 2 { // the second open finds nothing to do
		s, err := Open(ctx, path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if v := userVersion(t, s.rdb); v != SchemaVersion() || v < 2 {
			t.Fatalf("version after open = %d, want %d", v, SchemaVersion())
		}
		if e := lookup1(t, s, "nov", "a@x"); e.State != Sent {
			t.Fatalf("old row lost: %+v", e)
		}
		ri, ok, err := s.LastRun(ctx, "nov")
		if err != nil || !ok || ri.PID != 42 {
			t.Fatalf("old run: %+v %v %v", ri, ok, err)
		}
		if err := s.EndRun(ctx, ri.ID, []byte(`{}`)); err != nil { // v2 column
			t.Fatal(err)
		}
		var idx int
		if err := s.rdb.QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'recipients_state'`).Scan(&idx); err != nil || idx != 1 {
			t.Fatalf("index recipients_state: %d %v", idx, err)
		}
		s.Close()
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion()+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(context.Background(), path, Options{})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open = %v", err)
	}
}

func TestOpenSetsWAL(t *testing.T) {
	s := openTest(t, nil)
	var mode string
	if err := s.rdb.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	var sync, fk int
	if err := s.wdb.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 1 {
		t.Fatalf("synchronous = %d, %v (want 1, NORMAL)", sync, err)
	}
	if err := s.wdb.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Fatalf("foreign_keys = %d, %v", fk, err)
	}
}

func userVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}
