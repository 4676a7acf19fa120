package campaign

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNewsletterExample runs examples/newsletter as the README shows it: validate, a
// test send, then the real send, which reaches every subscriber with the files each
// should get.
func TestNewsletterExample(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "examples", "newsletter"))); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "outbox"))
	os.Remove(filepath.Join(dir, "herald.db"))
	c, err := Load(filepath.Join(dir, "campaign.yaml"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cols, err := (&Source{Campaign: c}).Columns()
	if err != nil {
		t.Fatal(err)
	}
	rd, err := NewRenderer(t.Context(), c, cols, make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rd.set.CSSPerMessage() {
		t.Error("the example's CSS is inlined into every message, not once")
	}
	var warnings []Warning
	if _, err := Validate(t.Context(), c, filepath.Join(dir, "herald.db"), func(w Warning) { warnings = append(warnings, w) }, testEnv(nil)); err != nil || len(warnings) != 0 {
		t.Fatalf("validate: %v %+v", err, warnings)
	}
	if _, err := TestSend(t.Context(), c, TestSendOptions{To: []string{"seed@acme.example"}, Store: filepath.Join(dir, "herald.db")}, testEnv(nil)); err != nil {
		t.Fatal(err)
	}
	sum, err := Send(t.Context(), c, SendOptions{Limit: -1, Store: filepath.Join(dir, "herald.db")}, testEnv(nil))
	if err != nil || sum.Sent != 4 {
		t.Fatalf("send: %v %s", err, sum.JSON())
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "outbox"))
	if len(ents) != 5 {
		t.Fatalf("%d files in the outbox, want 5 (one test, four real)", len(ents))
	}
	for _, e := range ents {
		raw, _ := os.ReadFile(filepath.Join(dir, "outbox", e.Name()))
		files, bodies := mimeFiles(t, raw)
		want := 3 // logo, brochure, invoice
		if strings.Contains(e.Name(), "alan") {
			want = 2
		}
		if len(files) != want || !strings.Contains(bodies["text/html"], `style="`) || !strings.Contains(bodies["text/plain"], "Unsubscribe") {
			t.Errorf("%s: %d files, html inlined %v", e.Name(), len(files), strings.Contains(bodies["text/html"], `style="`))
		}
	}
}
