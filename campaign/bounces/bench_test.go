package bounces

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkParsePostfixDSN parses a real Postfix DSN (about 2.4 KB).
func BenchmarkParsePostfixDSN(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "maildir", "new", "1796161977.0001.postfix"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if r := Parse(raw); r.Kind() != Hard {
			b.Fatal("not a hard bounce")
		}
	}
}
