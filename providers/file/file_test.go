package file

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/providertest"
)

// readBack parses every .eml in dir; the recipient is taken from the To header.
func readBack(t *testing.T, dir string) []providertest.Received {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []providertest.Received
	for _, n := range names {
		raw, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		r, err := providertest.ParseRaw("", raw)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		to := r.Headers.Get("To")
		if i := strings.LastIndexByte(to, '<'); i >= 0 {
			to = strings.TrimSuffix(to[i+1:], ">")
		}
		r.To = to
		out = append(out, r)
	}
	return out
}

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Harness{
		Start: func(t *testing.T, _ providertest.Behaviour) (providers.Provider, func() []providertest.Received) {
			dir := filepath.Join(t.TempDir(), "outbox")
			p, err := New(Config{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			return p, func() []providertest.Received { return readBack(t, dir) }
		},
		Unsupported: []providertest.Behaviour{providertest.TempFail, providertest.PermFail, providertest.FatalFail, providertest.Hang},
	})
}

func TestSendWritesRawUnchangedAndNamesFile(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 28, 10, 15, 0, 123e6, time.UTC)
	p, err := New(Config{Dir: dir}, WithClock(func() time.Time { return at }))
	if err != nil {
		t.Fatal(err)
	}
	msg := providertest.Message("Jane.Doe+news@example.org", 1)
	r, err := p.Send(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "20261128T101500.123-000001-Jane.Doe_news_example.org.eml"; r.MessageID != want {
		t.Errorf("receipt = %q, want %q", r.MessageID, want)
	}
	got, err := os.ReadFile(filepath.Join(dir, r.MessageID))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg.Raw) {
		t.Errorf("file content differs from msg.Raw")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("outbox holds %v, want only the message (no temporary files)", names)
	}
}

func TestRerunNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 28, 10, 15, 0, 0, time.UTC)
	clock := WithClock(func() time.Time { return at })
	var ids []string
	// Two runs (two providers, each counting from 1) at the same instant, same recipient.
	for run := 0; run < 2; run++ {
		p, err := New(Config{Dir: dir}, clock)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			r, err := p.Send(context.Background(), providertest.Message("a@example.org", run*10+i))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.MessageID)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 6 {
		t.Fatalf("outbox holds %d files, want 6 (ids %v)", len(entries), ids)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("id %s returned twice", id)
		}
		seen[id] = true
	}
	for i, id := range ids {
		raw, _ := os.ReadFile(filepath.Join(dir, id))
		n := i%3 + (i/3)*10
		if !bytes.Equal(raw, providertest.Message("a@example.org", n).Raw) {
			t.Errorf("%s does not hold message %d", id, n)
		}
	}
}

func TestNamesSortByTime(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var mu sync.Mutex
	p, err := New(Config{Dir: dir}, WithClock(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		at = at.Add(1500 * time.Millisecond)
		return at
	}))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, to := range []string{"z@x.org", "a@x.org", "m@x.org"} {
		r, err := p.Send(context.Background(), providertest.Message(to, i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.MessageID)
	}
	if !sort.StringsAreSorted(ids) {
		t.Errorf("ids do not sort by time: %v", ids)
	}
}

func TestUnwritableDirIsFatal(t *testing.T) {
	dir := t.TempDir()
	p, err := New(Config{Dir: filepath.Join(dir, "outbox")})
	if err != nil {
		t.Fatal(err)
	}
	// Replace the folder by a plain file: nothing can be created in it, even as root.
	if err := os.Remove(p.Dir()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Dir(), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = p.Send(context.Background(), providertest.Message("a@example.org", 1))
	if k := providers.KindOf(err); err == nil || k != providers.Fatal {
		t.Fatalf("Send into a non-folder: err=%v kind=%s, want fatal", err, k)
	}
	if !strings.HasPrefix(err.Error(), "file: ") || !strings.Contains(err.Error(), p.Dir()) {
		t.Errorf("error %q should start with the provider and name the folder", err)
	}

	// A dir that cannot be created at all fails New.
	if _, err := New(Config{Dir: filepath.Join(p.Dir(), "sub")}); err == nil {
		t.Errorf("New below a plain file succeeded")
	}
}

func TestCancelledBeforeWrite(t *testing.T) {
	dir := t.TempDir()
	p, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.Send(ctx, providertest.Message("a@example.org", 1))
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context: %v, want context.Canceled", err)
	}
	if k := providers.KindOf(err); k != providers.Temporary {
		t.Errorf("kind = %s, want temporary", k)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a cancelled Send left %d files", len(entries))
	}
}

func TestSanitize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"jane.doe@example.org", "jane.doe_example.org"},
		{"Jane_Doe-1@Example.ORG", "Jane_Doe-1_Example.ORG"},
		{"a+b/../c@x", "a_b_.._c_x"},
		{"jöe@x", "j__e_x"},
		{"", "_"},
		{"a b\r\n@x", "a_b___x"},
		{strings.Repeat("a", 300), strings.Repeat("a", 100)},
	} {
		if got := Sanitize(c.in); got != c.want {
			t.Errorf("Sanitize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func spec(base, block string) providers.Spec {
	s := providertest.Spec(Kind, block, nil)
	s.BaseDir = base
	return s
}

func TestRegistration(t *testing.T) {
	base := t.TempDir()
	reg := Registration()
	if reg.Kind != "file" {
		t.Errorf("Kind = %q", reg.Kind)
	}
	for _, c := range []struct {
		name, block string
		ok          bool
	}{
		{"ok", "dir: outbox\n", true},
		{"missing dir", "{}\n", false},
		{"unknown key", "dir: outbox\nfolder: x\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := reg.Check(spec(base, c.block), true)
			if (err == nil) != c.ok {
				t.Fatalf("Check = %v, want ok=%v", err, c.ok)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "file: ") {
				t.Errorf("error %q does not start with the provider", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(base, "outbox")); err == nil {
		t.Errorf("Check created the outbox; only Open should")
	}
	p, err := reg.Open(context.Background(), spec(base, "dir: outbox\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Send(context.Background(), providertest.Message("a@example.org", 1)); err != nil {
		t.Fatal(err)
	}
	if got := readBack(t, filepath.Join(base, "outbox")); len(got) != 1 {
		t.Errorf("outbox relative to BaseDir holds %d messages, want 1", len(got))
	}
}

func BenchmarkSend(b *testing.B) {
	p, err := New(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	msg := providertest.Message("bench@example.org", 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Send(context.Background(), msg); err != nil {
			b.Fatal(err)
		}
	}
}
