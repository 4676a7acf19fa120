package lists

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// FuzzReader checks properties of the Reader on arbitrary input: it never
// panics; every Row has one field per column, a trimmed Email and a Key that
// is its lower-case form; line numbers grow; every error is an *Error with
// Line ≥ 1.
func FuzzReader(f *testing.F) {
	seeds := []string{
		"email,name\na@x.com,Ann\n",
		"\xEF\xBB\xBFname;email\r\nAnn; A@X.COM \r\n",
		"email\tnote\na@x.com\t\"x\ny\"\n",
		"email,name\na@x.com,\"Doe, \"\"J\"\"\"\n\n",
		"email,name\na@x.com,\"unterminated\n",
		"email,name\na@x.com,ba\"re\n",
		"email,name,city\na@x.com,Ann\n",
		"email,Email\n",
		"email,,x\n",
		"a,b\n",
		"",
		"email\nJos\xE9@x.com\n",
		"email\n\"a\"b\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkError := func(err error) {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if e.Line < 1 {
				t.Fatalf("error %v has Line %d", e, e.Line)
			}
		}
		rd, err := NewReader(bytes.NewReader(data), Options{Name: "fuzz.csv"})
		if err != nil {
			checkError(err)
			return
		}
		cols := rd.Columns()
		if len(cols) == 0 || rd.EmailIndex() < 0 || rd.EmailIndex() >= len(cols) {
			t.Fatalf("columns %q, email index %d", cols, rd.EmailIndex())
		}
		last := 1
		for {
			row, err := rd.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				checkError(err)
				return
			}
			if len(row.Fields) != len(cols) {
				t.Fatalf("row at line %d has %d fields, %d columns", row.Line, len(row.Fields), len(cols))
			}
			if row.Line <= last {
				t.Fatalf("row line %d after %d", row.Line, last)
			}
			last = row.Line
			if row.Email != strings.TrimSpace(row.Email) || row.Fields[rd.EmailIndex()] != row.Email {
				t.Fatalf("Email %q not trimmed or not in Fields", row.Email)
			}
			if row.Key != strings.ToLower(strings.TrimSpace(row.Email)) {
				t.Fatalf("Key %q for Email %q", row.Key, row.Email)
			}
			if (row.Invalid == "") != (ValidateAddress(row.Email) == "") {
				t.Fatalf("Invalid %q disagrees with ValidateAddress", row.Invalid)
			}
		}
	})
}

// FuzzRoundTrip writes records with encoding/csv and checks that the Reader
// reads back exactly what was written.
func FuzzRoundTrip(f *testing.F) {
	f.Add("a@x.com", "Doe, Jane", `say "hi"`, true)
	f.Add("b@x.com", "line\nbreak", "", false)
	f.Add(" c@x.com ", "tab\there", "semi;colon", true)
	f.Fuzz(func(t *testing.T, email, a, b string, crlf bool) {
		rec := []string{email, a, b}
		for _, s := range rec {
			// encoding/csv does not preserve these on its own round trip.
			if strings.ContainsRune(s, '\r') || !isValidUTF8(s) {
				return
			}
		}
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		w.UseCRLF = crlf
		if err := w.Write([]string{"email", "a", "b"}); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		rd, err := NewReader(&buf, Options{Delimiter: ','})
		if err != nil {
			t.Fatal(err)
		}
		row, err := rd.Next()
		if strings.Join(rec, "") == "" {
			// An all-empty record is written as a blank line, which is
			// skipped.
			if err != io.EOF {
				t.Fatalf("blank record: Next = %v, %v", row, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("reading %q: %v", buf.String(), err)
		}
		want := []string{strings.TrimSpace(email), a, b}
		if !reflect.DeepEqual(row.Fields, want) {
			t.Fatalf("read %q, want %q", row.Fields, want)
		}
	})
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
