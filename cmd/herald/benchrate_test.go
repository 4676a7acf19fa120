package main

import (
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// TestBenchRate is the wall-clock half of the rate accuracy figure in BENCHMARKS.md
// (campaign's TestRateAccuracy is the exact half, in a synctest bubble): `herald send`
// at --rate 2000/s with 8 workers for 20 s to the in-process SMTP server, which notes when
// each message's data arrived. It reports the achieved rate and the fullest closed
// one-second window, and fails when a window holds more than the ceiling or the rate is
// under 98% of it. Not part of `go test ./...`: HERALD_BENCH_RATE=1 runs it
// (.ci/bench-rate.sh).
func TestBenchRate(t *testing.T) {
	if os.Getenv("HERALD_BENCH_RATE") == "" {
		t.Skip("a 20-second benchmark: HERALD_BENCH_RATE=1 runs it")
	}
	const perSecond, seconds = 2000, 20
	var mu sync.Mutex
	arrived := make([]time.Time, 0, perSecond*seconds)
	srv := smtptest.Start(t, smtptest.Options{Discard: true, Data: func(smtptest.Message) *smtp.SMTPError {
		now := time.Now()
		mu.Lock()
		arrived = append(arrived, now)
		mu.Unlock()
		return nil
	}})
	cf := cliCampaign(t, perSecond*seconds, cliSMTPProvider(srv, ""), "workers: 8")
	r := (&cliEnv{}).run(t, "send", cf, "--yes", "--json", "--rate", "2000/s")
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrived) != perSecond*seconds {
		t.Fatalf("%d messages arrived, want %d", len(arrived), perSecond*seconds)
	}
	sort.Slice(arrived, func(i, j int) bool { return arrived[i].Before(arrived[j]) })
	worst, j := 0, 0
	for i := range arrived {
		for j < len(arrived) && arrived[j].Sub(arrived[i]) <= time.Second {
			j++
		}
		worst = max(worst, j-i)
	}
	// Messages in each whole second after the first arrival, to show where the rate dips.
	var perSec []int
	for _, a := range arrived {
		k := int(a.Sub(arrived[0]) / time.Second)
		for len(perSec) <= k {
			perSec = append(perSec, 0)
		}
		perSec[k]++
	}
	t.Logf("messages in each second: %v", perSec)
	achieved := float64(len(arrived)-1) / arrived[len(arrived)-1].Sub(arrived[0]).Seconds()
	t.Logf("rate 2000/s, 8 workers, %d messages: achieved %.1f/s (%.2f%% of the ceiling), fullest one-second window %d",
		len(arrived), achieved, achieved/perSecond*100, worst)
	if worst > perSecond {
		t.Errorf("a closed one-second window holds %d messages; the ceiling is %d", worst, perSecond)
	}
	if achieved < perSecond*0.98 {
		t.Errorf("achieved %.1f/s, under 98%% of the ceiling", achieved)
	}
}
