package campaign

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// damagePage overwrites page n (1-based, 4096-byte pages) of the SQLite file at path,
// after the WAL has been checkpointed into it by a clean close.
func damagePage(t *testing.T, path string, n int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	start := (n - 1) * 4096
	if len(b) < start+4096 {
		t.Fatalf("%s has %d bytes, no page %d", path, len(b), n)
	}
	for i := start + 8; i < start+4096; i++ {
		b[i] = 0x55
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"-wal", "-shm"} {
		os.Remove(path + ext)
	}
}

// status on a store whose recipient pages are damaged fails naming the store, rather
// than blaming the list (issue 13 item 7).
func TestStatusDamagedStoreIsAnError(t *testing.T) {
	f := newFixture(t, 10, "  kind: file\n  dir: outbox", "")
	if _, err := f.send(-1, SendOptions{}); err != nil {
		t.Fatal(err)
	}
	for page := 2; page <= 5; page++ {
		store := filepath.Join(t.TempDir(), "herald.db")
		data, err := os.ReadFile(f.store())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(store, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if len(data) < page*4096 {
			continue
		}
		damagePage(t, store, page)
		st, err := ReadStatus(t.Context(), f.load(), store, true, testEnv(nil))
		if err == nil {
			// Some pages hold nothing status reads; then every count must be right.
			if st.ListError != "" || st.Total != 10 || st.Sent != 10 {
				t.Errorf("page %d damaged: status %+v with no error", page, st)
			}
			continue
		}
		if !strings.Contains(err.Error(), store) {
			t.Errorf("page %d damaged: error %q does not name the store", page, err)
		}
	}
}

// validate on a runaway subject: the render's output bound stops it, naming the row
// (issue 13 item 10).
func TestValidateRunawayTemplateNamesTheRow(t *testing.T) {
	f := newFixture(t, 3, "  kind: file\n  dir: outbox", "")
	f.write("campaign.yaml", strings.Replace(mustRead(t, f.path), `subject: "Hi {{ .first_name }}"`,
		`subject: '{{ if eq .first_name "Name2" }}{{ range 300000000 }}x{{ end }}{{ end }}'`, 1))
	_, err := Validate(t.Context(), f.load(), f.store(), nil, testEnv(nil))
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "subject: renders more than") {
		t.Fatalf("Validate = %v, want a ConfigError naming line 3 and the subject's size", err)
	}
}

// validate stops promptly when interrupted in the middle of a render that loops without
// writing, and does not speak of sends (issue 13 item 10).
func TestValidateStopsPromptlyInALongRender(t *testing.T) {
	f := newFixture(t, 3, "  kind: file\n  dir: outbox", "")
	f.write("campaign.yaml", strings.Replace(mustRead(t, f.path), `subject: "Hi {{ .first_name }}"`,
		`subject: '{{ if eq .first_name "Name2" }}{{ range 300000000 }}{{ end }}{{ end }}'`, 1))
	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		_, err := Validate(ctx, f.load(), f.store(), nil, testEnv(nil))
		done <- result{err, time.Now()}
	}()
	// The render of the first row takes tens of seconds; stop it once it is under way
	// (should the stop come before, the run stops between rows all the same).
	time.Sleep(500 * time.Millisecond)
	cancel()
	stopped := time.Now()
	select {
	case r := <-done:
		var se *StopError
		if !errors.As(r.err, &se) || se.Reason != StopInterrupted {
			t.Fatalf("Validate = %v, want an interrupted stop", r.err)
		}
		if msg := r.err.Error(); strings.Contains(msg, "in-flight") || !strings.Contains(msg, "nothing was sent") {
			t.Errorf("stop message %q: validate sends nothing", msg)
		}
		if d := r.at.Sub(stopped); d > 5*time.Second {
			t.Errorf("stopped %s after the cancel", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Validate still rendering 20 s after the cancel")
	}
}
