package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// commit and date are set by the release build with -ldflags "-X main.commit=… -X
// main.date=…" (see .goreleaser.yaml), like version in cmd_version.go. A plain `go build`
// or `go install` leaves them empty and the Go toolchain's build information fills in.
var commit, date string

// buildInfo says which herald this is.
type buildInfo struct {
	Version  string // "v1.2.3", or "devel"
	Commit   string // VCS revision, "" when unknown
	Date     string // commit or build time, RFC 3339, "" when unknown
	Modified bool   // built from a work tree with uncommitted changes
}

// readBuildInfo combines the values stamped at link time with the module and VCS
// information the Go toolchain records in the binary.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Date: date}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.time":
				if b.Date == "" {
					b.Date = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true" && commit == ""
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// String is the version line: "v1.2.3 (commit 0123abc, 2026-12-01T10:00:00Z, go1.26.8
// linux/amd64)".
func (b buildInfo) String() string {
	var details []string
	if b.Commit != "" {
		c := b.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if b.Modified {
			c += "+dirty"
		}
		details = append(details, "commit "+c)
	}
	if b.Date != "" {
		details = append(details, b.Date)
	}
	details = append(details, fmt.Sprintf("%s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH))
	return b.Version + " (" + strings.Join(details, ", ") + ")"
}
