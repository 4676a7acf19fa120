package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/campaign/journal/pgtest"
	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// sinkAddr is a host:port to send to.
type sinkAddr struct {
	host string
	port int
}

func (s sinkAddr) Host() string { return s.host }
func (s sinkAddr) Port() int    { return s.port }

// startSMTPSink starts Postfix's smtp-sink on a free port (skips without it).
func startSMTPSink(t *testing.T) sinkAddr {
	t.Helper()
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		t.Skip("smtp-sink not installed (Debian: postfix)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "-u", "nobody", "-c", "127.0.0.1:"+strconv.Itoa(port), "1024")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, 10*time.Second, "smtp-sink", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return sinkAddr{"127.0.0.1", port}
}

// TestBenchStores measures the figures of BENCHMARKS.md "Stores": one host on an
// SQLite and on a PostgreSQL store (fsync on) to smtp-sink, and one to three hosts on
// PostgreSQL against a relay that takes 20 ms per message. Run it with
// HERALD_BENCH_STORE=1 go test -run TestBenchStores -v ./cmd/herald/
func TestBenchStores(t *testing.T) {
	if os.Getenv("HERALD_BENCH_STORE") == "" {
		t.Skip("set HERALD_BENCH_STORE=1 to measure")
	}
	cl := pgtest.NewDurable(t)
	if os.Getenv("HERALD_BENCH_FSYNC") == "off" {
		cl = pgtest.New(t)
	}
	sink := startSMTPSink(t)
	const n = 5000
	for _, workers := range []int{4, 8} {
		for trial := range 2 {
			for _, kind := range []string{"sqlite", "postgres"} {
				o := crashOptions{Name: "bench", Workers: workers}
				var pw string
				if kind == "postgres" {
					o.Store, pw = pgStore(t, cl.NewDatabase(t))
					o.Env = []string{"PGPASSWORD=" + pw}
				}
				c := newCrashCampaign(t, n, sink, o)
				start := time.Now()
				r := c.send()
				el := time.Since(start)
				if r.code != 0 {
					t.Fatalf("%s: exit %d\n%s", kind, r.code, r.stderr)
				}
				s := r.summary(t)
				t.Logf("one host, %d workers, trial %d, %-8s: %d sent, %.0f msg/s in the send phase (%.0f msg/s over the whole run, %s)",
					workers, trial+1, kind, s.Sent, rateOf(r.stdout), float64(s.Sent)/el.Seconds(), el.Round(time.Millisecond))
			}
		}
	}
	slow := smtptest.Start(t, smtptest.Options{DataDelay: 20 * time.Millisecond})
	for hostsN := 1; hostsN <= 3; hostsN++ {
		const m = 1500
		cs, _ := hosts(t, hostsN, m, slow, cl.NewDatabase(t), crashOptions{Name: fmt.Sprintf("slow%d", hostsN), Workers: 4})
		start := time.Now()
		var chs []*child
		for _, c := range cs {
			chs = append(chs, c.startSend())
		}
		for _, ch := range chs {
			if r := ch.wait(t, 120*time.Second); r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
		}
		el := time.Since(start)
		t.Logf("%d host(s) x 4 workers, relay 20 ms per message: %d messages in %s = %.0f msg/s",
			hostsN, m, el.Round(time.Millisecond), float64(m)/el.Seconds())
	}
}

// rateOf reads rate_per_s from a JSON summary.
func rateOf(js string) float64 {
	i := strings.Index(js, `"rate_per_s":`)
	if i < 0 {
		return 0
	}
	rest := js[i+len(`"rate_per_s":`):]
	j := strings.IndexAny(rest, ",}")
	v, _ := strconv.ParseFloat(rest[:j], 64)
	return v
}
