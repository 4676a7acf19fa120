package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkSendTenRows is the in-process part of start-up (.ci/bench-startup.sh times
// the whole binary): `herald send` of a 10-row campaign to the file provider on a fresh
// store, each iteration in a new folder.
func BenchmarkSendTenRows(b *testing.B) {
	root := b.TempDir()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		dir := filepath.Join(root, strings.Repeat("d", 1)+time.Now().Format("150405.000000000"))
		if code := Main([]string{"init", dir}, quietIO()); code != 0 {
			b.Fatalf("init: exit %d", code)
		}
		b.StartTimer()
		if code := Main([]string{"send", filepath.Join(dir, "campaign.yaml"), "--yes", "--json", "--rate", "100000/s"}, quietIO()); code != 0 {
			b.Fatalf("send: exit %d", code)
		}
	}
}

func quietIO() *IO {
	var out cliBuffer
	return &IO{
		Stdin:  strings.NewReader(""),
		Stdout: &out, Stderr: &out,
		Getenv: os.Getenv,
		Now:    time.Now,
		Exit:   func(int) {},
	}
}
