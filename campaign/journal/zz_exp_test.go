package journal_test

import (
	"testing"

	"github.com/heraldmail/herald/campaign/journal/pgtest"
)

func BenchmarkWriterPgNoFsync(b *testing.B) {
	cl := pgtest.New(b)
	benchWriter(b, cl.NewDatabase(b), cl)
}
