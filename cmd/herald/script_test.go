package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/mail"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/text/encoding/charmap"

	"github.com/heraldmail/herald/campaign/journal"
)

// TestScripts runs the end-to-end scripts in testdata/script/*.txtar against the herald
// binary built by TestMain. Each script starts in a fresh $WORK folder with herald on
// PATH, HOME=$WORK and no HERALD_* variables.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(e *testscript.Env) error {
			vars := e.Vars[:0]
			for _, kv := range e.Vars {
				if strings.HasPrefix(kv, "HERALD_") || strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "HOME=") {
					continue
				}
				vars = append(vars, kv)
			}
			e.Vars = append(vars,
				"PATH="+filepath.Dir(heraldBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
				"HOME="+e.WorkDir,
				"TZ=UTC",
			)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"countfiles":  cmdCountFiles,
			"exitcode":    cmdExitCode,
			"latin1":      cmdLatin1,
			"journalrows": cmdJournalRows,
			"jsonout":     cmdJSONOut,
			"mailhdr":     cmdMailHeader,
		},
	})
}

// cmdExitCode: exitcode N PROG ARGS… runs PROG like exec (its stdout and stderr are then
// checked by stdout and stderr) and asserts that it exits with status N. exec and ! exec
// only tell zero from non-zero; herald's exit codes (1, 2, 130) mean different things.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("exitcode does not support !")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// cmdLatin1: latin1 SRC DST writes the UTF-8 text of SRC to DST in ISO 8859-1, so that
// scripts can hold non-UTF-8 lists in readable form.
func cmdLatin1(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: latin1 SRC DST")
	}
	b, err := charmap.ISO8859_1.NewEncoder().Bytes([]byte(ts.ReadFile(args[0])))
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), b, 0o644))
}

// cmdJournalRows: journalrows STORE CAMPAIGN N asserts that the journal STORE holds
// exactly N recipient rows of CAMPAIGN, in any state (0 when STORE does not exist; it is
// not created).
func cmdJournalRows(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: journalrows STORE CAMPAIGN N")
	}
	want, err := strconv.Atoi(args[2])
	ts.Check(err)
	path := ts.MkAbs(args[0])
	got := 0
	if _, err := os.Stat(path); err == nil {
		ctx := context.Background()
		st, err := journal.Open(ctx, path, journal.Options{})
		ts.Check(err)
		defer st.Close()
		// Loaded rows wait as pending; a journal row here is one that was attempted.
		ts.Check(st.EachRow(ctx, args[1], nil, func(r journal.Row) error {
			if r.State != journal.Pending {
				got++
			}
			return nil
		}))
	} else if !errors.Is(err, fs.ErrNotExist) {
		ts.Check(err)
	}
	if got != want {
		ts.Fatalf("%s: %d journal row(s) of %q, want %d", args[0], got, args[1], want)
	}
}

// cmdCountFiles: countfiles N DIR [GLOB] asserts that DIR holds exactly N regular files
// matching GLOB (default *); a DIR that does not exist holds none.
func cmdCountFiles(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("countfiles does not support !")
	}
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: countfiles N DIR [GLOB]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	glob := "*"
	if len(args) == 3 {
		glob = args[2]
	}
	n, err := countDirFiles(ts.MkAbs(args[1]), glob)
	if errors.Is(err, fs.ErrNotExist) {
		n, err = 0, nil // no folder: no files
	}
	ts.Check(err)
	if n != want {
		ts.Fatalf("%s: %d file(s) matching %s, want %d", args[1], n, glob, want)
	}
}

func countDirFiles(dir, glob string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		ok, err := filepath.Match(glob, e.Name())
		if err != nil {
			return 0, err
		}
		if ok && e.Type().IsRegular() {
			n++
		}
	}
	return n, nil
}

// cmdJSONOut: jsonout KEY=VALUE… asserts that the last command's stdout is exactly one
// JSON object (nothing else but a final newline) and that each dotted KEY holds VALUE
// (compared as the JSON text of a number, string, bool or null).
func cmdJSONOut(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("jsonout does not support !")
	}
	obj, err := decodeOneObject(ts.ReadFile("stdout"))
	if err != nil {
		ts.Fatalf("stdout: %v", err)
	}
	for _, a := range args {
		key, want, ok := strings.Cut(a, "=")
		if !ok {
			ts.Fatalf("jsonout: %q: want KEY=VALUE", a)
		}
		got, err := jsonLookup(obj, key)
		if err != nil {
			ts.Fatalf("stdout: %v", err)
		}
		if got != want {
			ts.Fatalf("stdout: %s = %s, want %s", key, got, want)
		}
	}
}

// decodeOneObject decodes s as exactly one JSON object followed by at most whitespace.
func decodeOneObject(s string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("not one JSON object: %v (%q)", err, s)
	}
	if obj == nil {
		return nil, fmt.Errorf("not a JSON object: %q", s)
	}
	rest, _ := io.ReadAll(dec.Buffered())
	tail := string(rest) + s[dec.InputOffset()+int64(len(rest)):]
	if strings.TrimSpace(tail) != "" {
		return nil, fmt.Errorf("more than one JSON object, or text after it: %q", tail)
	}
	return obj, nil
}

// jsonLookup finds a dotted key in obj and returns its value as JSON text.
func jsonLookup(obj map[string]any, key string) (string, error) {
	var v any = obj
	for _, part := range strings.Split(key, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", fmt.Errorf("%s: %q is not inside an object", key, part)
		}
		v, ok = m[part]
		if !ok {
			return "", fmt.Errorf("no key %q", key)
		}
	}
	if s, ok := v.(string); ok {
		return s, nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// cmdMailHeader: mailhdr FILE NAME REGEXP parses FILE as an RFC 5322 message and asserts
// that its header NAME (RFC 2047 decoded, folding removed) matches REGEXP; with !, that
// the header is absent or does not match.
func cmdMailHeader(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: mailhdr FILE NAME REGEXP")
	}
	re, err := regexp.Compile(args[2])
	ts.Check(err)
	msg, err := mail.ReadMessage(bytes.NewReader([]byte(ts.ReadFile(args[0]))))
	if err != nil {
		ts.Fatalf("%s: not an RFC 5322 message: %v", args[0], err)
	}
	raw, present := msg.Header[textproto.CanonicalMIMEHeaderKey(args[1])]
	var got string
	if present {
		got, err = new(mime.WordDecoder).DecodeHeader(strings.Join(raw, "\n"))
		if err != nil {
			ts.Fatalf("%s: %s: %v", args[0], args[1], err)
		}
	}
	switch {
	case neg && present && re.MatchString(got):
		ts.Fatalf("%s: %s: %q matches %s", args[0], args[1], got, re)
	case !neg && !present:
		ts.Fatalf("%s: no %s header", args[0], args[1])
	case !neg && !re.MatchString(got):
		ts.Fatalf("%s: %s: %q does not match %s", args[0], args[1], got, re)
	}
}
