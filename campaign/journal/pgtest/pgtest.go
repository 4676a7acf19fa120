// Package pgtest runs throwaway PostgreSQL clusters for tests: initdb into a temporary
// folder, a server on 127.0.0.1 and a free port, a random password. One shared cluster
// serves a test binary (Shared, stopped by Main); a test that stops and starts its
// server takes its own (New). Without initdb the tests are skipped, except in CI (CI=true),
// where a missing server is a failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is one running throwaway server.
type Cluster struct {
	Dir      string
	Port     int
	Password string
	bin      string
	asUser   string // run the server's tools as this user ("" when not root)
}

var (
	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error
	dbSeq      atomic.Int64

	durableOnce sync.Once
	durable     *Cluster
	durableErr  error
)

// Main runs the tests of a package and stops the shared cluster afterwards.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// StopShared stops the shared cluster, if one was started (for a TestMain of its own).
func StopShared() {
	if shared != nil {
		shared.Stop("fast")
		os.RemoveAll(shared.Dir)
		shared = nil
	}
	if durable != nil {
		durable.Stop("fast")
		os.RemoveAll(durable.Dir)
		durable = nil
	}
}

// Available reports whether a cluster can be started here.
func Available() bool {
	_, err := binDir()
	return err == nil
}

// require skips t (or fails it in CI) when no server can be run.
func require(t testing.TB) {
	t.Helper()
	if _, err := binDir(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required in CI: %v", err)
		}
		t.Skipf("PostgreSQL not available: %v", err)
	}
}

// URL returns the URL of a fresh, empty database on the shared cluster.
func URL(t testing.TB) string {
	t.Helper()
	require(t)
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-pg-")
		if err != nil {
			sharedErr = err
			return
		}
		shared, sharedErr = start(dir, false)
	})
	if sharedErr != nil {
		t.Fatalf("start PostgreSQL: %v", sharedErr)
	}
	return shared.NewDatabase(t)
}

// SharedDurable returns a cluster with fsync on shared by the test binary (benchmarks
// that run more than once), stopped by Main.
func SharedDurable(t testing.TB) *Cluster {
	t.Helper()
	require(t)
	durableOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-pg-")
		if err != nil {
			durableErr = err
			return
		}
		durable, durableErr = start(dir, true)
	})
	if durableErr != nil {
		t.Fatalf("start PostgreSQL: %v", durableErr)
	}
	return durable
}

// New starts a cluster of the test's own, stopped at the end of the test. Its fsync is
// off, as the shared cluster's (tests kill herald, not the machine).
func New(t testing.TB) *Cluster { return newCluster(t, false) }

// NewDurable is New with fsync on, as in production (benchmarks).
func NewDurable(t testing.TB) *Cluster { return newCluster(t, true) }

func newCluster(t testing.TB, fsync bool) *Cluster {
	t.Helper()
	require(t)
	dir, err := os.MkdirTemp("", "herald-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c, err := start(dir, fsync)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		c.Stop("immediate")
		os.RemoveAll(dir)
	})
	return c
}

// AdminURL is the URL of the cluster's postgres database.
func (c *Cluster) AdminURL() string { return c.DatabaseURL("postgres") }

// DatabaseURL is the URL of database db, with the password in it.
func (c *Cluster) DatabaseURL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword("postgres", c.Password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// NewDatabase creates an empty database and returns its URL.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", dbSeq.Add(1))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		t.Fatalf("connect to the test cluster: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return c.DatabaseURL(name)
}

// Stop stops the server (mode "fast", or "immediate" to simulate a crash).
func (c *Cluster) Stop(mode string) error {
	return c.ctl("-m", mode, "stop")
}

// Start starts the server again after Stop.
func (c *Cluster) Start() error {
	return c.ctl("-l", filepath.Join(c.Dir, "log"), "-w", "start")
}

func (c *Cluster) ctl(args ...string) error {
	return c.run(filepath.Join(c.bin, "pg_ctl"), append([]string{"-D", filepath.Join(c.Dir, "data")}, args...)...)
}

func (c *Cluster) run(prog string, args ...string) error {
	var cmd *exec.Cmd
	if c.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.asUser, "--", prog}, args...)...)
	} else {
		cmd = exec.Command(prog, args...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", filepath.Base(prog), err, out)
	}
	return nil
}

// binDir finds initdb and pg_ctl: on PATH, else in Debian's folders.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", errors.New("initdb and pg_ctl not found on PATH nor in /usr/lib/postgresql/*/bin")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(dir string, fsync bool) (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	c := &Cluster{Dir: dir, bin: bin, Password: "pw" + hex.EncodeToString(pw)}
	if os.Geteuid() == 0 {
		// The server refuses to run as root: it runs as the postgres system user.
		u, err := user.Lookup("postgres")
		if err != nil {
			if out, err := exec.Command("useradd", "--system", "postgres").CombinedOutput(); err != nil {
				return nil, fmt.Errorf("useradd postgres: %v: %s", err, out)
			}
			if u, err = user.Lookup("postgres"); err != nil {
				return nil, err
			}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		c.asUser = "postgres"
		defer func() {
			filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, uid, gid) })
		}()
		chown := func(p string) error { return os.Chown(p, uid, gid) }
		pwfile := filepath.Join(dir, "pwfile")
		if err := os.WriteFile(pwfile, []byte(c.Password+"\n"), 0o600); err != nil {
			return nil, err
		}
		if err := chown(pwfile); err != nil {
			return nil, err
		}
	} else if err := os.WriteFile(filepath.Join(dir, "pwfile"), []byte(c.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if c.Port, err = freePort(); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := c.run(filepath.Join(bin, "initdb"), "-D", data, "-A", "scram-sha-256", "--pwfile="+filepath.Join(dir, "pwfile"),
		"-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nmax_connections = 200\n", c.Port, dir)
	if !fsync {
		conf += "fsync = off\n"
	} else {
		// Benchmarks read what the server spent its time on.
		conf += "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track_planning = on\n"
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	f.WriteString(conf)
	f.Close()
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// CPU returns the processor time the server has used so far: the postmaster's, its
// live processes' and those that ended (benchmarks compare it before and after a run).
// It is zero where /proc cannot be read.
func (c *Cluster) CPU() time.Duration {
	b, err := os.ReadFile(filepath.Join(c.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return 0
	}
	ticks := func(p string) (ppid int, own, children int64, ok bool) {
		b, err := os.ReadFile(filepath.Join("/proc", p, "stat"))
		if err != nil {
			return 0, 0, 0, false
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return 0, 0, 0, false
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 15 {
			return 0, 0, 0, false
		}
		num := func(k int) int64 { v, _ := strconv.ParseInt(f[k], 10, 64); return v }
		pp, _ := strconv.Atoi(f[1])
		// After the command: state, ppid, …, utime (12), stime (13), cutime (14), cstime (15).
		return pp, num(11) + num(12), num(13) + num(14), true
	}
	_, own, children, ok := ticks(strconv.Itoa(pid))
	if !ok {
		return 0
	}
	total := own + children
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if pp, o, _, ok := ticks(e.Name()); ok && pp == pid {
			total += o
		}
	}
	return time.Duration(total) * time.Second / 100 // USER_HZ
}

// FsyncLatency measures the median time of writing 8 KB and flushing it to disk in the
// cluster's folder, as a commit's WAL flush does (n rounds).
func (c *Cluster) FsyncLatency(n int) time.Duration {
	f, err := os.CreateTemp(c.Dir, "fsync-")
	if err != nil {
		return 0
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 8192)
	var d []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i%16)*8192); err != nil {
			return 0
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0
		}
		d = append(d, time.Since(start))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// Statement is one line of TopStatements.
type Statement struct {
	Calls int64
	// TotalMS is the time spent executing and planning, PlanMS the part planning.
	TotalMS, PlanMS, RowsPer float64
	Query                    string
}

// ResetStatements clears the server's statement statistics (a durable cluster's only).
func (c *Cluster) ResetStatements() error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `SELECT pg_stat_statements_reset()`)
	return err
}

// TopStatements returns the n statements the server spent most time planning and executing since
// ResetStatements.
func (c *Cluster) TopStatements(n int) ([]Statement, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.AdminURL())
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT calls, total_exec_time + total_plan_time, total_plan_time, rows::float8 / greatest(calls, 1), query
		FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Statement, error) {
		var st Statement
		err := r.Scan(&st.Calls, &st.TotalMS, &st.PlanMS, &st.RowsPer, &st.Query)
		return st, err
	})
}
