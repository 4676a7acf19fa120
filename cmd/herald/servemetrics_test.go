package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestServeMetrics runs `herald serve --metrics-addr` and counts a one-click unsubscribe
// in herald_unsubscribes_total.
func TestServeMetrics(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"init", "news"}, {"send", "news/campaign.yaml", "--limit", "1", "--yes"}} {
		cmd := exec.Command(heraldBin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("herald %v: %v\n%s", args, err, out)
		}
	}
	emls, _ := filepath.Glob(filepath.Join(dir, "news", "outbox", "*.eml"))
	if len(emls) != 1 {
		t.Fatalf("outbox holds %d messages", len(emls))
	}
	raw, _ := os.ReadFile(emls[0])
	m := regexp.MustCompile(`List-Unsubscribe: <https://news\.acme\.example(/unsubscribe/[^>]+)>`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("no List-Unsubscribe URL in %s", raw)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	l.Close()
	base := startServe(t, dir, nil, "--campaign", "news/campaign.yaml", "--metrics-addr", metricsAddr)
	resp, err := http.Post(base+string(m[1]), "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("one-click POST = %d", resp.StatusCode)
	}
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"\nherald_unsubscribes_total 1\n", `herald_build_info{command="serve",version=`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
