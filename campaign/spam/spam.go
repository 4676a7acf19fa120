// Package spam scores a rendered message with SpamAssassin (`spamassassin -t -L`: test
// mode, local tests only, no network) and reads its report: the score, the threshold and
// each rule that hit.
package spam

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// Rule is one SpamAssassin rule that hit.
type Rule struct {
	Name        string  `json:"name"`
	Points      float64 `json:"points"`
	Description string  `json:"description"`
}

// Report is SpamAssassin's verdict on one message.
type Report struct {
	Score     float64 `json:"score"`
	Threshold float64 `json:"threshold"`
	Rules     []Rule  `json:"rules"`
}

// Spam reports whether the score reaches the threshold (SpamAssassin's own rule).
func (r *Report) Spam() bool { return r.Score >= r.Threshold }

// DefaultCommand is the scorer run by Check.
var DefaultCommand = []string{"spamassassin", "-t", "-L"}

// InstallHint says how to install SpamAssassin.
const InstallHint = "install it: apt-get install spamassassin (Debian, Ubuntu), dnf install spamassassin (Fedora), brew install spamassassin (macOS)"

// ErrNotInstalled is returned when the scorer is not on PATH.
var ErrNotInstalled = errors.New("SpamAssassin is not installed (" + InstallHint + ")")

// Check runs command (DefaultCommand when empty) with raw on its standard input and
// parses the report it prints.
func Check(ctx context.Context, raw []byte, command []string) (*Report, error) {
	if len(command) == 0 {
		command = DefaultCommand
	}
	path, err := exec.LookPath(command[0])
	if err != nil {
		return nil, ErrNotInstalled
	}
	cmd := exec.CommandContext(ctx, path, command[1:]...)
	cmd.Stdin = bytes.NewReader(raw)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		// spamassassin -t exits 0 or 1 (spam) and prints the report either way.
		var ee *exec.ExitError
		if !errors.As(err, &ee) || out.Len() == 0 {
			return nil, fmt.Errorf("%s: %v: %s", command[0], err, strings.TrimSpace(stderr.String()))
		}
	}
	return Parse(out.Bytes())
}

var (
	summaryRe = regexp.MustCompile(`Content analysis details:\s+\((-?[\d.]+) points?, (-?[\d.]+) required\)`)
	ruleRe    = regexp.MustCompile(`^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$`)
)

// Parse reads the report `spamassassin -t` appends to the message.
func Parse(out []byte) (*Report, error) {
	i := summaryRe.FindSubmatchIndex(out)
	if i == nil {
		return nil, errors.New("spamassassin printed no report (\"Content analysis details\")")
	}
	r := &Report{Rules: []Rule{}}
	r.Score, _ = strconv.ParseFloat(string(out[i[2]:i[3]]), 64)
	r.Threshold, _ = strconv.ParseFloat(string(out[i[4]:i[5]]), 64)
	sc := bufio.NewScanner(bytes.NewReader(out[i[1]:]))
	inTable := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "----"):
			inTable = true
			continue
		case !inTable:
			continue
		case strings.TrimSpace(line) == "":
			return r, nil
		}
		if m := ruleRe.FindStringSubmatch(line); m != nil {
			p, _ := strconv.ParseFloat(m[1], 64)
			r.Rules = append(r.Rules, Rule{Name: m[2], Points: p, Description: strings.TrimSpace(m[3])})
			continue
		}
		if strings.HasPrefix(line, "  ") && len(r.Rules) > 0 {
			// A description continued on the next line.
			last := &r.Rules[len(r.Rules)-1]
			last.Description = strings.TrimSpace(last.Description + " " + strings.TrimSpace(line))
			continue
		}
		return r, nil
	}
	return r, nil
}
