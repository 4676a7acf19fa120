package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeUnsubscribesFromSentLink sends the quickstart into an outbox, takes the
// List-Unsubscribe URL of one message, and posts to it the way a mail client does
// (RFC 8058) through `herald serve` on the same store: the address lands on the
// suppression list and the next send counts it as suppressed.
func TestServeUnsubscribesFromSentLink(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(heraldBin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("herald %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("init", "news")
	// A campaign that is not finished yet: only two of ten are sent now.
	run("send", "news/campaign.yaml", "--limit", "2", "--yes")
	emls, _ := filepath.Glob(filepath.Join(dir, "news", "outbox", "*.eml"))
	if len(emls) != 2 {
		t.Fatalf("outbox holds %d messages", len(emls))
	}
	raw, _ := os.ReadFile(emls[0])
	m := regexp.MustCompile(`List-Unsubscribe: <https://news\.acme\.example(/unsubscribe/[^>]+)>`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("no List-Unsubscribe URL in %s", raw)
	}
	to := regexp.MustCompile(`(?m)^To: .*<([^>]+)>`).FindSubmatch(raw)

	base := startServe(t, dir, nil, "--campaign", "news/campaign.yaml")
	// Behind a reverse proxy the path keeps its prefix; the token is found all the same.
	resp, err := http.Post(base+"/proxy"+string(m[1]), "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("one-click POST = %d", resp.StatusCode)
	}
	// A recipient not sent yet unsubscribes through the link preview shows (preview signs
	// with the store's secret, like send).
	prev := regexp.MustCompile(`List-Unsubscribe: <https://news\.acme\.example(/unsubscribe/[^>]+)>`).FindStringSubmatch(run("preview", "news/campaign.yaml", "--row", "10"))
	if prev == nil {
		t.Fatal("preview shows no List-Unsubscribe URL")
	}
	resp, err = http.Post(base+prev[1], "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	list := run("suppress", "list", "--campaign", "news/campaign.yaml")
	if !strings.Contains(list, string(to[1])) || !strings.Contains(list, "rene@example.org") {
		t.Fatalf("suppression list after two unsubscribes:\n%s\nwant %s and rene@example.org", list, to[1])
	}
	out := run("send", "news/campaign.yaml", "--yes", "--json")
	if !strings.Contains(out, `"already_done":2`) || !strings.Contains(out, `"suppressed":1`) || !strings.Contains(out, `"sent":7`) {
		t.Fatalf("send after the unsubscribes: %s", out)
	}
}

// startServe runs `herald serve` on a free loopback port in dir with the extra
// environment and arguments, stops it with SIGTERM when the test ends, and returns its
// base URL as the process announced it.
func startServe(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	srv := exec.Command(heraldBin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	srv.Dir = dir
	srv.Env = append(os.Environ(), env...)
	stderr, _ := srv.StderrPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Signal(syscall.SIGTERM); _ = srv.Wait() })
	sc := bufio.NewScanner(stderr)
	var base string
	for sc.Scan() {
		if a := regexp.MustCompile(`listening on (http://\S+)`).FindStringSubmatch(sc.Text()); a != nil {
			base = a[1]
			break
		}
	}
	if base == "" {
		t.Fatal("serve did not say where it listens")
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	return base
}

// `herald serve` bounds every phase of a request: slow clients trickling headers are
// cut off while a normal request is answered, a trickled body is cut off, an idle
// keep-alive connection is closed, oversized headers get 431 (issue 13 item 9).
func TestServeBoundsSlowClients(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command(heraldBin, "init", filepath.Join(dir, "news")).CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	base := startServe(t, dir, nil, "--campaign", "news/campaign.yaml",
		"--header-timeout", "500ms", "--read-timeout", "1s", "--idle-timeout", "500ms", "--write-timeout", "2s")
	addr := strings.TrimPrefix(base, "http://")
	const slow = 200
	conns := make([]net.Conn, 0, slow)
	for i := 0; i < slow; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /u/x HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(base + "/not-a-token")
	if err != nil {
		t.Fatalf("normal request during the slow clients: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("normal request: %d, want 404", resp.StatusCode)
	}
	for i, c := range conns {
		if !serverCloses(c) {
			t.Fatalf("slow client %d never cut off", i)
		}
	}

	// A body trickled a byte at a time.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /webhooks/sendgrid HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
	stop := make(chan struct{})
	go func() {
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if _, err := io.WriteString(c, "x"); err != nil {
					return
				}
			}
		}
	}()
	closed := serverCloses(c)
	close(stop)
	if !closed {
		t.Fatal("trickled body never cut off")
	}

	// An idle keep-alive connection.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "GET /not-a-token HTTP/1.1\r\nHost: a\r\n\r\n")
	if !serverCloses(c2) {
		t.Fatal("idle keep-alive connection never closed")
	}

	req, _ := http.NewRequest("GET", base+"/not-a-token", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 256<<10))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("256 KiB header: %d, want 431", resp.StatusCode)
	}
}

// serverCloses reads c until the server closes it; false when it is still open after
// 20 s, far past any bound the test sets.
func serverCloses(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
