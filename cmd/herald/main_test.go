package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/heraldmail/herald/campaign/journal/pgtest"
)

// heraldBin is the herald binary built once for the tests that run it as a process
// (end-to-end scripts, crash and signal tests).
var heraldBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "herald-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	defer pgtest.StopShared()
	heraldBin = filepath.Join(dir, "herald")
	build := []string{"build", "-o", heraldBin}
	if raceBuild {
		build = append(build, "-race")
	}
	cmd := exec.Command("go", append(build, ".")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building herald for the tests:", err)
		return 1
	}
	return m.Run()
}
