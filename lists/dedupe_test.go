package lists

import (
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestDeduper(t *testing.T) {
	d := NewDeduper()
	steps := []struct {
		key       string
		line      int
		wantFirst int
		wantDup   bool
	}{
		{"a@x.com", 2, 2, false},
		{"b@x.com", 3, 3, false},
		{"a@x.com", 4, 2, true},
		{"b@x.com", 9, 3, true},
		{"a@x.com", 10, 2, true},
		{"", 11, 11, false},
		{"", 12, 11, true},
	}
	for _, s := range steps {
		first, dup := d.Add(s.key, s.line)
		if first != s.wantFirst || dup != s.wantDup {
			t.Errorf("Add(%q, %d) = (%d, %v), want (%d, %v)", s.key, s.line, first, dup, s.wantFirst, s.wantDup)
		}
	}
	if d.Len() != 3 {
		t.Errorf("Len() = %d, want 3", d.Len())
	}
}

// The Deduper is case-insensitive through Row.Key, and keeps the first line.
func TestDeduperWithRowKeys(t *testing.T) {
	_, rows := readAll(t, "email\nAnn@X.com\nbob@x.com\n  ann@x.COM \nBOB@X.COM\n", Options{})
	d := NewDeduper()
	var got []string
	for _, r := range rows {
		if first, dup := d.Add(r.Key, r.Line); dup {
			got = append(got, fmt.Sprintf("%d dup of %d", r.Line, first))
		}
	}
	want := "4 dup of 2, 5 dup of 3"
	if strings.Join(got, ", ") != want {
		t.Errorf("duplicates = %q, want %q", strings.Join(got, ", "), want)
	}
}

func TestDeduperGrowsAndKeepsEverything(t *testing.T) {
	d := NewDeduper()
	const n = 100_000
	for i := 0; i < n; i++ {
		if first, dup := d.Add("user"+strconv.Itoa(i)+"@x.com", i+2); dup {
			t.Fatalf("key %d reported as a duplicate of line %d", i, first)
		}
	}
	for i := 0; i < n; i += 997 {
		if first, dup := d.Add("user"+strconv.Itoa(i)+"@x.com", n+i); !dup || first != i+2 {
			t.Fatalf("key %d: Add = (%d, %v), want (%d, true)", i, first, dup, i+2)
		}
	}
	if d.Len() != n {
		t.Fatalf("Len() = %d, want %d", d.Len(), n)
	}
}

func TestDeduperLineClamping(t *testing.T) {
	d := NewDeduper()
	d.Add("a", 1<<40)
	if first, _ := d.Add("a", 1); first != 1<<32-1 {
		t.Errorf("first line = %d, want %d", first, 1<<32-1)
	}
}

// heapAfterGC returns the live heap in bytes.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestDeduperHeapOneMillion measures the heap held by a Deduper of 1,000,000
// keys and fails above 32 MiB.
func TestDeduperHeapOneMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("adds 1,000,000 keys")
	}
	before := heapAfterGC()
	d := NewDeduper()
	key := make([]byte, 0, 32)
	for i := 0; i < 1_000_000; i++ {
		key = append(key[:0], "subscriber"...)
		key = strconv.AppendInt(key, int64(i), 10)
		key = append(key, "@example.com"...)
		d.Add(string(key), i+2)
	}
	after := heapAfterGC()
	runtime.KeepAlive(d)
	used := float64(after-before) / (1 << 20)
	t.Logf("Deduper with %d keys: heap %.1f MiB (%.1f bytes/key)", d.Len(), used, float64(after-before)/float64(d.Len()))
	if used > 32 {
		t.Errorf("Deduper with 1,000,000 keys holds %.1f MiB, want at most 32", used)
	}
}

// TestReaderHeapDoesNotGrow reads a 300,000-row list and checks that the
// heap stays flat.
func TestReaderHeapDoesNotGrow(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 300,000 rows")
	}
	rd, err := NewReader(&genList{n: 300_000}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var base uint64
	for i := 0; ; i++ {
		if i == 1000 {
			base = heapAfterGC()
		}
		if _, err := rd.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	end := heapAfterGC()
	runtime.KeepAlive(rd)
	growth := int64(end) - int64(base)
	t.Logf("heap after 1,000 rows %d B, after 300,000 rows %d B", base, end)
	if growth > 1<<20 {
		t.Errorf("heap grew by %d bytes while streaming", growth)
	}
}

func TestDeduperReset(t *testing.T) {
	d := NewDeduper()
	for i := 0; i < 5000; i++ {
		d.Add(fmt.Sprintf("k%d@example.org", i), i+2)
	}
	slots := len(d.keys)
	d.Reset(0)
	if d.Len() != 0 || len(d.keys) != slots {
		t.Fatalf("after Reset: %d keys, %d slots (had %d)", d.Len(), len(d.keys), slots)
	}
	// Told what to expect, the table fits it: 3/4 full at most, no growth while adding.
	d.Reset(100000)
	sized := len(d.keys)
	if sized < 133334 || sized > 140000 {
		t.Fatalf("Reset(100000) made %d slots", sized)
	}
	for i := 0; i < 100000; i++ {
		if _, dup := d.Add(fmt.Sprintf("r%d@example.org", i), i+2); dup {
			t.Fatalf("false duplicate at %d", i)
		}
	}
	if len(d.keys) != sized {
		t.Fatalf("the sized table grew from %d to %d slots", sized, len(d.keys))
	}
	if first, dup := d.Add("r77@example.org", 5); !dup || first != 79 {
		t.Fatalf("Add of a known key = %d %v", first, dup)
	}
	d.Reset(0)
	if first, dup := d.Add("k1@example.org", 9); dup || first != 9 {
		t.Fatalf("a reset Deduper still knew a key: %d %v", first, dup)
	}
	if first, dup := d.Add("k1@example.org", 12); !dup || first != 9 {
		t.Fatalf("Add after Reset = %d %v", first, dup)
	}
}
