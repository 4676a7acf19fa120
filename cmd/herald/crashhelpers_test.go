package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldmail/herald/providers/smtp/smtptest"
)

// crashCampaign is a campaign folder in a temporary directory whose list has n
// recipients (c0001@example.org …) and whose provider is an smtptest server.
type crashCampaign struct {
	t      *testing.T
	dir    string
	path   string
	store  string
	emails []string
	env    []string
}

// crashOptions shape a crashCampaign.
type crashOptions struct {
	// Name is the campaign's name (default "crash-test").
	Name string
	// Workers is the campaign's number of workers (default 4).
	Workers int
	// Provider holds extra YAML lines of the provider block, indented by two spaces.
	Provider string
	// Store, when set, is the journal file (default: herald.db in the folder).
	Store string
	// Env is added to the child's environment ("KEY=value").
	Env []string
}

// hostPort is a server to send to: an smtptest.Server or an outageProxy.
type hostPort interface {
	Host() string
	Port() int
}

// newCrashCampaign writes a campaign of n recipients that sends through srv without TLS.
func newCrashCampaign(t *testing.T, n int, srv hostPort, o crashOptions) *crashCampaign {
	t.Helper()
	if o.Name == "" {
		o.Name = "crash-test"
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
	dir := t.TempDir()
	c := &crashCampaign{t: t, dir: dir, path: filepath.Join(dir, "campaign.yaml"), store: o.Store}
	if c.store == "" {
		c.store = filepath.Join(dir, "herald.db")
	}
	var list strings.Builder
	list.WriteString("email,first_name\n")
	for i := 1; i <= n; i++ {
		e := fmt.Sprintf("c%04d@example.org", i)
		c.emails = append(c.emails, e)
		fmt.Fprintf(&list, "%s,Name%d\n", e, i)
	}
	c.write("subscribers.csv", list.String())
	c.write("template.txt", "Hello {{ .first_name }}\nUnsubscribe: {{ .UnsubscribeURL }}\n")
	c.write("campaign.yaml", fmt.Sprintf(`name: %s
from: "Crash Test <news@example.com>"
subject: "Hi {{ .first_name }}"
text: template.txt
list: subscribers.csv
unsubscribe: {url: "https://example.com/u"}
provider:
  kind: smtp
  host: %s
  port: %d
  tls: none
  timeout: 5s
%s
rate: "10000/s"
workers: %d
retry: {attempts: 3, backoff: 10ms, max_backoff: 50ms}
store: %s
`, o.Name, srv.Host(), srv.Port(), o.Provider, o.Workers, c.store))
	// The child sees the test's environment without herald's own variables, so that a
	// developer's HERALD_STORE or HERALD_SECRET cannot change what is tested.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			c.env = append(c.env, kv)
		}
	}
	c.env = append(c.env, o.Env...)
	return c
}

func (c *crashCampaign) write(name, content string) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, name), []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// child is a running herald process.
type child struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	started        time.Time
	done           chan struct{}
	waitErr        error
}

// start runs herald with args (stdin is not a terminal: /dev/null).
func (c *crashCampaign) start(args ...string) *child {
	c.t.Helper()
	ch := &child{cmd: exec.Command(heraldBin, args...), done: make(chan struct{})}
	ch.cmd.Dir = c.dir
	ch.cmd.Env = c.env
	ch.cmd.Stdout, ch.cmd.Stderr = &ch.stdout, &ch.stderr
	if err := ch.cmd.Start(); err != nil {
		c.t.Fatalf("start herald %s: %v", strings.Join(args, " "), err)
	}
	ch.started = time.Now()
	go func() {
		ch.waitErr = ch.cmd.Wait()
		close(ch.done)
	}()
	c.t.Cleanup(func() {
		select {
		case <-ch.done:
		default:
			_ = ch.cmd.Process.Kill()
			<-ch.done
		}
	})
	return ch
}

// startSend starts `herald send CAMPAIGN --yes --json` with extra flags.
func (c *crashCampaign) startSend(extra ...string) *child {
	return c.start(append([]string{"send", c.path, "--yes", "--json"}, extra...)...)
}

// result is how a herald process ended.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// wait waits up to timeout for ch to end and returns its exit code (-1 when it died of
// a signal) and output; on timeout it kills it and fails the test.
func (ch *child) wait(t *testing.T, timeout time.Duration) result {
	t.Helper()
	select {
	case <-ch.done:
	case <-time.After(timeout):
		_ = ch.cmd.Process.Kill()
		<-ch.done
		t.Fatalf("herald %s did not end within %s\nstdout: %s\nstderr: %s",
			strings.Join(ch.cmd.Args[1:], " "), timeout, ch.stdout.String(), ch.stderr.String())
	}
	r := result{code: 0, stdout: ch.stdout.String(), stderr: ch.stderr.String(), elapsed: time.Since(ch.started)}
	var ee *exec.ExitError
	switch {
	case ch.waitErr == nil:
	case errors.As(ch.waitErr, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("herald %s: %v", strings.Join(ch.cmd.Args[1:], " "), ch.waitErr)
	}
	return r
}

// signal sends sig to ch.
func (ch *child) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := ch.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to herald: %v", sig, err)
	}
}

// run runs herald with args to its end (at most timeout).
func (c *crashCampaign) run(timeout time.Duration, args ...string) result {
	c.t.Helper()
	return c.start(args...).wait(c.t, timeout)
}

// send runs `herald send CAMPAIGN --yes --json` with extra flags to its end.
func (c *crashCampaign) send(extra ...string) result {
	c.t.Helper()
	return c.startSend(extra...).wait(c.t, 60*time.Second)
}

// sendSummary is the JSON object `send --json` prints (PRODUCT.md).
type sendSummary struct {
	Campaign string `json:"campaign"`
	Total    int    `json:"total"`
	Sent     int    `json:"sent"`
	Failed   int    `json:"failed"`
	Deferred int    `json:"deferred"`
	Unknown  int    `json:"unknown"`
	Pending  int    `json:"pending"`
	Skipped  struct {
		Invalid     int `json:"invalid"`
		Duplicate   int `json:"duplicate"`
		Suppressed  int `json:"suppressed"`
		AlreadyDone int `json:"already_done"`
	} `json:"skipped"`
	DryRun  bool   `json:"dry_run"`
	Stopped string `json:"stopped"`
	Error   string `json:"error"`
}

// summary parses the one JSON object on r's stdout.
func (r result) summary(t *testing.T) sendSummary {
	t.Helper()
	var s sendSummary
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &s); err != nil {
		t.Fatalf("send --json printed no JSON object (%v)\nstdout: %q\nstderr: %s", err, r.stdout, r.stderr)
	}
	if n := s.Sent + s.Failed + s.Deferred + s.Unknown + s.Pending + s.Skipped.Invalid +
		s.Skipped.Duplicate + s.Skipped.Suppressed + s.Skipped.AlreadyDone; n != s.Total {
		t.Errorf("summary counts add up to %d, not total %d: %s", n, s.Total, r.stdout)
	}
	return s
}

// statusJSON is what `status --json --failed` prints.
type statusJSON struct {
	Campaign   string `json:"campaign"`
	Total      int    `json:"total"`
	Pending    int    `json:"pending"`
	Sending    int    `json:"sending"`
	Sent       int    `json:"sent"`
	Deferred   int    `json:"deferred"`
	Failed     int    `json:"failed"`
	Unknown    int    `json:"unknown"`
	Recipients []struct {
		Email  string `json:"email"`
		State  string `json:"state"`
		Reason string `json:"reason"`
	} `json:"recipients"`
}

// inState returns the addresses `status --failed` lists in state.
func (s statusJSON) inState(state string) map[string]bool {
	out := map[string]bool{}
	for _, r := range s.Recipients {
		if r.State == state {
			out[strings.ToLower(r.Email)] = true
		}
	}
	return out
}

// status runs `herald status CAMPAIGN --json --failed`.
func (c *crashCampaign) status() statusJSON {
	c.t.Helper()
	r := c.run(30*time.Second, "status", c.path, "--json", "--failed")
	if r.code != 0 {
		c.t.Fatalf("herald status: exit %d\nstderr: %s", r.code, r.stderr)
	}
	var s statusJSON
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &s); err != nil {
		c.t.Fatalf("status --json: %v\nstdout: %q", err, r.stdout)
	}
	if got := len(s.inState("unknown")); got != s.Unknown {
		c.t.Errorf("status: unknown is %d but --failed lists %d unknown recipients", s.Unknown, got)
	}
	return s
}

// received counts the messages srv accepted per envelope recipient (lower case).
func received(srv *smtptest.Server) map[string]int {
	out := map[string]int{}
	for _, m := range srv.Messages() {
		for _, to := range m.To {
			out[strings.ToLower(to)]++
		}
	}
	return out
}

// checkComplete asserts the guarantees once a campaign is done: nobody received it
// twice, every address received it exactly once or is `unknown`, at most maxUnknown
// are unknown, nothing is left pending or sending, and the journal's counts agree with
// what the server received. It returns the status.
func (c *crashCampaign) checkComplete(srv *smtptest.Server, maxUnknown int) statusJSON {
	c.t.Helper()
	t := c.t
	st := c.status()
	got := received(srv)
	unknown := st.inState("unknown")
	inList := map[string]bool{}
	for _, e := range c.emails {
		inList[e] = true
	}
	for addr, n := range got {
		if !inList[addr] {
			t.Errorf("the server received a message for %s, who is not in the list", addr)
		}
		if n > 1 {
			t.Errorf("%s received the campaign %d times", addr, n)
		}
	}
	sentNotUnknown := 0
	for _, e := range c.emails {
		switch {
		case unknown[e]:
		case got[e] == 1:
			sentNotUnknown++
		default:
			t.Errorf("%s received the campaign %d times and is not unknown", e, got[e])
		}
	}
	if st.Unknown > maxUnknown {
		t.Errorf("%d recipients are unknown, more than %d", st.Unknown, maxUnknown)
	}
	if st.Pending != 0 || st.Sending != 0 || st.Deferred != 0 || st.Failed != 0 {
		t.Errorf("status after completion: pending %d, sending %d, deferred %d, failed %d; want 0 each",
			st.Pending, st.Sending, st.Deferred, st.Failed)
	}
	if st.Sent != sentNotUnknown {
		t.Errorf("status says %d sent; the server received %d addresses that are not unknown", st.Sent, sentNotUnknown)
	}
	if st.Sent+st.Unknown != len(c.emails) || st.Total != len(c.emails) {
		t.Errorf("status: sent %d + unknown %d, total %d; want %d", st.Sent, st.Unknown, st.Total, len(c.emails))
	}
	return st
}

// waitFor polls cond every 5 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// outageProxy forwards TCP connections from its own 127.0.0.1 address to a server. Cut
// is a network outage: the listener closes and every connection is cut at once, without
// an answer from the server; Restore listens again on the same address.
type outageProxy struct {
	t      *testing.T
	target string

	mu    sync.Mutex
	addr  string
	l     net.Listener
	conns map[net.Conn]struct{}
}

// startProxy starts a proxy to target; the test's Cleanup cuts it.
func startProxy(t *testing.T, target string) *outageProxy {
	t.Helper()
	p := &outageProxy{t: t, target: target, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Cut)
	return p
}

// Host is the proxy's IP address.
func (p *outageProxy) Host() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, _, _ := net.SplitHostPort(p.addr)
	return h
}

// Port is the proxy's port.
func (p *outageProxy) Port() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

// Restore listens (again) on the proxy's address.
func (p *outageProxy) Restore() error {
	p.mu.Lock()
	addr := p.addr
	p.mu.Unlock()
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may take a moment to be free again
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("proxy: listen on %s: %w", addr, err)
	}
	p.mu.Lock()
	p.l, p.addr = l, l.Addr().String()
	p.mu.Unlock()
	go p.serve(l)
	return nil
}

// Cut closes the listener and every connection. It is safe to call more than once.
func (p *outageProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *outageProxy) serve(l net.Listener) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.l != l { // cut meanwhile
			p.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(in, out)
		go pipe(out, in)
	}
}

// relisten starts a new smtptest server on addr, where a closed one listened, and
// closes it when the test ends.
func relisten(t *testing.T, addr string, o smtptest.Options) *smtptest.Server {
	t.Helper()
	var srv *smtptest.Server
	waitFor(t, 5*time.Second, "listening again on "+addr, func() bool {
		var err error
		srv, err = smtptest.Listen(addr, o)
		return err == nil
	})
	t.Cleanup(srv.Close)
	return srv
}
