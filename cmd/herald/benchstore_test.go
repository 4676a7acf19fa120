package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
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
// SQLite and on a PostgreSQL store (fsync on) to smtp-sink, side by side, and one to
// three hosts on PostgreSQL against a relay that takes 20 ms per message. Run it with
// HERALD_BENCH_STORE=1 go test -run TestBenchStores -v ./cmd/herald/
//
// HERALD_BENCH_BASE names another herald binary (a build of main) run in turn with this
// one, A B A B; HERALD_BENCH_ROUNDS (default 2) how many rounds; HERALD_BENCH_WORKERS
// the worker counts of the one-host case (default "4 8"); HERALD_BENCH_PART "one" or
// "hosts" runs one part only; HERALD_BENCH_FSYNC=off runs the cluster without fsync;
// HERALD_BENCH_STATEMENTS=1 lists the statements PostgreSQL spent most time on.
// Lines starting with "RESULT" are what .ci/bench-stores.sh prints.
func TestBenchStores(t *testing.T) {
	if os.Getenv("HERALD_BENCH_STORE") == "" {
		t.Skip("set HERALD_BENCH_STORE=1 to measure")
	}
	cl := pgtest.NewDurable(t)
	if os.Getenv("HERALD_BENCH_FSYNC") == "off" {
		cl = pgtest.New(t)
	}
	type variant struct{ name, bin string }
	variants := []variant{{"this", heraldBin}}
	if base := os.Getenv("HERALD_BENCH_BASE"); base != "" {
		variants = []variant{{"base", base}, {"this", heraldBin}}
	}
	self := heraldBin
	t.Cleanup(func() { heraldBin = self })
	rounds := 2
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	workerCounts := []int{4, 8}
	if v := os.Getenv("HERALD_BENCH_WORKERS"); v != "" {
		workerCounts = nil
		for _, f := range strings.Fields(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("HERALD_BENCH_WORKERS: %v", err)
			}
			workerCounts = append(workerCounts, n)
		}
	}
	part := os.Getenv("HERALD_BENCH_PART")
	load := func() string {
		b, _ := os.ReadFile("/proc/loadavg")
		f := strings.Fields(string(b))
		if len(f) < 3 {
			return "?"
		}
		return strings.Join(f[:3], " ")
	}
	if part == "" || part == "one" {
		sink := startSMTPSink(t)
		const n = 5000
		for _, workers := range workerCounts {
			ratios := map[string][]float64{}
			for round := range rounds {
				t.Logf("round %d, %d workers: fsync %s (median of 200 8 KB writes), load %s",
					round+1, workers, cl.FsyncLatency(200).Round(time.Microsecond), load())
				for _, v := range variants {
					heraldBin = v.bin
					rate := map[string]float64{}
					for _, kind := range []string{"sqlite", "postgres"} {
						o := crashOptions{Name: "bench", Workers: workers}
						var pw string
						if kind == "postgres" {
							o.Store, pw = pgStore(t, cl.NewDatabase(t))
							o.Env = []string{"PGPASSWORD=" + pw}
						}
						c := newCrashCampaign(t, n, sink, o)
						statements := kind == "postgres" && os.Getenv("HERALD_BENCH_STATEMENTS") != ""
						if statements {
							if err := cl.ResetStatements(); err != nil {
								t.Fatal(err)
							}
						}
						pg0 := cl.CPU()
						ch := c.startSend()
						r := ch.wait(t, 300*time.Second)
						if r.code != 0 {
							t.Fatalf("%s %s: exit %d\n%s", v.name, kind, r.code, r.stderr)
						}
						s := r.summary(t)
						rate[kind] = rateOf(r.stdout)
						cpu := ch.cmd.ProcessState.UserTime() + ch.cmd.ProcessState.SystemTime()
						t.Logf("one host, %d workers, %s, %-8s: %d sent, %5.0f msg/s in the send phase (%s in all); CPU per message: herald %3.0f µs, PostgreSQL %3.0f µs",
							workers, v.name, kind, s.Sent, rate[kind], r.elapsed.Round(time.Millisecond),
							float64(cpu.Microseconds())/float64(n), float64((cl.CPU()-pg0).Microseconds())/float64(n))
						if statements {
							top, err := cl.TopStatements(6)
							if err != nil {
								t.Fatal(err)
							}
							for _, st := range top {
								q := strings.Join(strings.Fields(st.Query), " ")
								if len(q) > 110 {
									q = q[:110] + "…"
								}
								t.Logf("    %6d calls, %6.0f ms (%5.1f µs per message, %2.0f%% planning), %5.1f rows each: %s",
									st.Calls, st.TotalMS, st.TotalMS*1000/float64(n), 100*st.PlanMS/max(st.TotalMS, 1e-9), st.RowsPer, q)
							}
						}
					}
					ratios[v.name] = append(ratios[v.name], rate["postgres"]/rate["sqlite"])
				}
			}
			for _, v := range variants {
				t.Logf("RESULT one host, %d workers, %s: PostgreSQL/SQLite %s", workers, v.name, spread(ratios[v.name]))
			}
		}
	}
	if part == "" || part == "hosts" {
		slow := smtptest.Start(t, smtptest.Options{DataDelay: 20 * time.Millisecond})
		rates := map[string][]map[int]float64{}
		for round := range rounds {
			t.Logf("round %d of the hosts: fsync %s, load %s", round+1, cl.FsyncLatency(200).Round(time.Microsecond), load())
			for _, v := range variants {
				heraldBin = v.bin
				got := map[int]float64{}
				for hostsN := 1; hostsN <= 3; hostsN++ {
					const m = 1500
					cs, _ := hosts(t, hostsN, m, slow, cl.NewDatabase(t), crashOptions{Name: fmt.Sprintf("slow%d", hostsN), Workers: 4})
					start := time.Now()
					var chs []*child
					for _, c := range cs {
						chs = append(chs, c.startSend())
					}
					var each []string
					sendPhase := 0.0 // the hosts' send-phase rates added up
					for _, ch := range chs {
						r := ch.wait(t, 120*time.Second)
						if r.code != 0 {
							t.Fatalf("exit %d\n%s", r.code, r.stderr)
						}
						s := r.summary(t)
						sendPhase += rateOf(r.stdout)
						each = append(each, fmt.Sprintf("%d sent at %.0f/s, ended at %s", s.Sent, rateOf(r.stdout), time.Since(start).Round(10*time.Millisecond)))
					}
					el := time.Since(start)
					got[hostsN] = float64(m) / el.Seconds()
					t.Logf("%s: %d host(s) x 4 workers, relay 20 ms per message: %d messages in %s = %.0f msg/s, %.0f msg/s in the send phases together (%s)",
						v.name, hostsN, m, el.Round(time.Millisecond), got[hostsN], sendPhase, strings.Join(each, "; "))
				}
				rates[v.name] = append(rates[v.name], got)
			}
		}
		for _, v := range variants {
			var two, three []float64
			for _, g := range rates[v.name] {
				two = append(two, g[2]/g[1])
				three = append(three, g[3]/g[1])
			}
			t.Logf("RESULT hosts against a 20 ms relay, %s: 2 hosts %s, 3 hosts %s of one host", v.name, spread(two), spread(three))
		}
	}
}

// spread formats ratios as "0.81x (0.78-0.85)".
func spread(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	mid := s[len(s)/2]
	if len(s)%2 == 0 {
		mid = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("%.2fx (%.2f-%.2f over %d)", mid, s[0], s[len(s)-1], len(s))
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
