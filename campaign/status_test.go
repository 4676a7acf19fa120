package campaign

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
