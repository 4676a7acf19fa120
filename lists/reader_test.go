package lists

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll reads every row of a list, failing the test on an error.
func readAll(t *testing.T, input string, o Options) (*Reader, []*Row) {
	t.Helper()
	rd, err := NewReader(strings.NewReader(input), o)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	var rows []*Row
	for {
		row, err := rd.Next()
		if err == io.EOF {
			return rd, rows
		}
		if err != nil {
			t.Fatalf("Next after %d rows: %v", len(rows), err)
		}
		rows = append(rows, row)
	}
}

func TestReaderQuirks(t *testing.T) {
	type want struct {
		line   int
		fields []string
	}
	tests := []struct {
		name    string
		input   string
		opts    Options
		columns []string
		delim   rune
		email   int
		rows    []want
	}{
		{
			name:    "comma LF trailing newline",
			input:   "email,name\na@x.com,Ann\nb@x.com,Bob\n",
			columns: []string{"email", "name"}, delim: ',',
			rows: []want{{2, []string{"a@x.com", "Ann"}}, {3, []string{"b@x.com", "Bob"}}},
		},
		{
			name:    "no trailing newline",
			input:   "email,name\na@x.com,Ann\nb@x.com,Bob",
			columns: []string{"email", "name"}, delim: ',',
			rows: []want{{2, []string{"a@x.com", "Ann"}}, {3, []string{"b@x.com", "Bob"}}},
		},
		{
			name:    "CRLF",
			input:   "email,name\r\na@x.com,Ann\r\nb@x.com,Bob\r\n",
			columns: []string{"email", "name"}, delim: ',',
			rows: []want{{2, []string{"a@x.com", "Ann"}}, {3, []string{"b@x.com", "Bob"}}},
		},
		{
			name:    "CRLF without final newline",
			input:   "email,name\r\na@x.com,Ann\r\nb@x.com,Bob",
			columns: []string{"email", "name"}, delim: ',',
			rows: []want{{2, []string{"a@x.com", "Ann"}}, {3, []string{"b@x.com", "Bob"}}},
		},
		{
			name:    "UTF-8 BOM",
			input:   "\xEF\xBB\xBFemail,name\na@x.com,Zoë\n",
			columns: []string{"email", "name"}, delim: ',',
			rows: []want{{2, []string{"a@x.com", "Zoë"}}},
		},
		{
			name:    "semicolon detected",
			input:   "name;email;city\nAnn;a@x.com;Köln, Germany\n",
			columns: []string{"name", "email", "city"}, delim: ';', email: 1,
			rows: []want{{2, []string{"Ann", "a@x.com", "Köln, Germany"}}},
		},
		{
			name:    "tab detected",
			input:   "email\tname\tnote\na@x.com\tAnn\tx, y; z\n",
			columns: []string{"email", "name", "note"}, delim: '\t',
			rows: []want{{2, []string{"a@x.com", "Ann", "x, y; z"}}},
		},
		{
			name:    "delimiters inside quoted header names do not count",
			input:   "\"a;b;c\",email\n1,a@x.com\n",
			columns: []string{"a;b;c", "email"}, delim: ',', email: 1,
			rows: []want{{2, []string{"1", "a@x.com"}}},
		},
		{
			name:    "explicit delimiter",
			input:   "email|name\na@x.com|Ann, Jr.\n",
			opts:    Options{Delimiter: '|'},
			columns: []string{"email", "name"}, delim: '|',
			rows: []want{{2, []string{"a@x.com", "Ann, Jr."}}},
		},
		{
			name:    "one-column header",
			input:   "email\na@x.com\nb@x.com\n",
			columns: []string{"email"}, delim: ',',
			rows: []want{{2, []string{"a@x.com"}}, {3, []string{"b@x.com"}}},
		},
		{
			name:    "quoted delimiter, doubled quotes, empty quoted",
			input:   "email,name,note\na@x.com,\"Doe, Jane\",\"She said \"\"hi\"\"\"\nb@x.com,\"\",\n",
			columns: []string{"email", "name", "note"}, delim: ',',
			rows: []want{
				{2, []string{"a@x.com", "Doe, Jane", `She said "hi"`}},
				{3, []string{"b@x.com", "", ""}},
			},
		},
		{
			name:    "newlines inside quoted fields keep line numbers right",
			input:   "email,address\na@x.com,\"1 Main St\nSpringfield\"\nb@x.com,\"x\r\ny\r\n\r\nz\"\nc@x.com,plain\n",
			columns: []string{"email", "address"}, delim: ',',
			rows: []want{
				{2, []string{"a@x.com", "1 Main St\nSpringfield"}},
				{4, []string{"b@x.com", "x\ny\n\nz"}},
				{8, []string{"c@x.com", "plain"}},
			},
		},
		{
			name:    "header only",
			input:   "email,name\n",
			columns: []string{"email", "name"}, delim: ',',
		},
		{
			name:    "header only without newline",
			input:   "email,name",
			columns: []string{"email", "name"}, delim: ',',
		},
		{
			name:    "blank lines at the end and in the middle",
			input:   "email,name\na@x.com,Ann\n\r\n\nb@x.com,Bob\n\n",
			columns: []string{"email", "name"}, delim: ',',
			rows: []want{{2, []string{"a@x.com", "Ann"}}, {5, []string{"b@x.com", "Bob"}}},
		},
		{
			name:    "header names trimmed, address column case-insensitive, fields not trimmed",
			input:   " Name , EMAIL \n Ann ,  A@X.com \n",
			columns: []string{"Name", "EMAIL"}, delim: ',', email: 1,
			rows: []want{{2, []string{" Ann ", "A@X.com"}}},
		},
		{
			name:    "email column option",
			input:   "Email Address,First Name\na@x.com,Ann\n",
			opts:    Options{EmailColumn: " email address "},
			columns: []string{"Email Address", "First Name"}, delim: ',',
			rows: []want{{2, []string{"a@x.com", "Ann"}}},
		},
		{
			name:    "utf-8 encoding named explicitly",
			input:   "email,name\na@x.com,Zoë\n",
			opts:    Options{Encoding: "UTF-8"},
			columns: []string{"email", "name"}, delim: ',',
			rows: []want{{2, []string{"a@x.com", "Zoë"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd, rows := readAll(t, tt.input, tt.opts)
			if !reflect.DeepEqual(rd.Columns(), tt.columns) {
				t.Errorf("Columns() = %q, want %q", rd.Columns(), tt.columns)
			}
			if rd.Delimiter() != tt.delim {
				t.Errorf("Delimiter() = %q, want %q", rd.Delimiter(), tt.delim)
			}
			if rd.EmailIndex() != tt.email {
				t.Errorf("EmailIndex() = %d, want %d", rd.EmailIndex(), tt.email)
			}
			if len(rows) != len(tt.rows) {
				t.Fatalf("got %d rows, want %d", len(rows), len(tt.rows))
			}
			for i, w := range tt.rows {
				if rows[i].Line != w.line {
					t.Errorf("row %d: Line = %d, want %d", i, rows[i].Line, w.line)
				}
				if !reflect.DeepEqual(rows[i].Fields, w.fields) {
					t.Errorf("row %d: Fields = %q, want %q", i, rows[i].Fields, w.fields)
				}
			}
			// Next keeps answering io.EOF at the end.
			if _, err := rd.Next(); err != io.EOF {
				t.Errorf("Next after the end = %v, want io.EOF", err)
			}
		})
	}
}

func TestRowEmailKeyInvalidData(t *testing.T) {
	_, rows := readAll(t, "name,email\nAnn,  Ann@Example.COM \nBob,bob@\n,\n", Options{})
	if len(rows) != 3 {
		t.Fatalf("got %d rows, want 3", len(rows))
	}
	r := rows[0]
	if r.Email != "Ann@Example.COM" || r.Key != "ann@example.com" || r.Invalid != "" {
		t.Errorf("row 1: Email %q Key %q Invalid %q", r.Email, r.Key, r.Invalid)
	}
	if got := r.Data([]string{"name", "email"}); !reflect.DeepEqual(got, map[string]string{"name": "Ann", "email": "Ann@Example.COM"}) {
		t.Errorf("Data = %v", got)
	}
	if got := r.Data([]string{"name", "email", "extra"}); got["extra"] != "" || len(got) != 3 {
		t.Errorf("Data with an extra column = %v", got)
	}
	if rows[1].Invalid != "no domain" {
		t.Errorf("row 2: Invalid = %q, want %q", rows[1].Invalid, "no domain")
	}
	if rows[2].Invalid != "empty address" || rows[2].Key != "" {
		t.Errorf("row 3: Invalid = %q Key = %q", rows[2].Invalid, rows[2].Key)
	}
}

func TestReaderRowsAreIndependent(t *testing.T) {
	_, rows := readAll(t, "email,name\na@x.com,Ann\nb@x.com,Bob\n", Options{})
	if rows[0].Fields[1] != "Ann" || rows[1].Fields[1] != "Bob" {
		t.Fatalf("rows share storage: %q %q", rows[0].Fields, rows[1].Fields)
	}
}

func TestReaderStructuralErrors(t *testing.T) {
	tests := []struct {
		name   string
		input  string
		opts   Options
		inNext bool // the error comes from Next rather than NewReader
		line   int
		col    int
		reason string // substring of Reason
	}{
		{name: "empty file", input: "", line: 1, reason: "empty file: no header row"},
		{name: "only a BOM", input: "\xEF\xBB\xBF", line: 1, reason: "empty file"},
		{name: "only blank lines", input: "\n\r\n\n", line: 1, reason: "empty file"},
		{name: "empty column name", input: "email,,name\n", line: 1, col: 7, reason: "column 2 has an empty name"},
		{name: "blank column name", input: "email,  ,name\n", line: 1, col: 7, reason: "column 2 has an empty name"},
		{name: "trailing delimiter in header", input: "email,name,\n", line: 1, col: 12, reason: "column 3 has an empty name"},
		{
			name: "duplicate column names both named", input: "email,Name,NAME\n", line: 1, col: 12,
			reason: `duplicate column name: "Name" (column 2) and "NAME" (column 3)`,
		},
		{
			name: "no address column", input: "a,b,c\n1,2,3\n", line: 1,
			reason: `no "email" column (columns: a, b, c); set list_email_column`,
		},
		{
			name: "no configured address column", input: "email\n", opts: Options{EmailColumn: "Email Address"}, line: 1,
			reason: `no "Email Address" column (columns: email); set list_email_column`,
		},
		{
			name: "unterminated quote in data", input: "email,name\na@x.com,\"Jane\n", inNext: true,
			line: 2, col: 9, reason: "unterminated quoted field",
		},
		{
			name: "unterminated quote without final newline", input: "email,name\na@x.com,\"Jane", inNext: true,
			line: 2, col: 9, reason: "unterminated quoted field",
		},
		{
			name: "unterminated quote spanning lines", input: "email,name\nb@x.com,b\na@x.com,\"Jane\nDoe\n\n", inNext: true,
			line: 3, col: 9, reason: "unterminated quoted field",
		},
		{
			name: "unterminated quote in header", input: "email,\"name\n", line: 1, col: 7,
			reason: "unterminated quoted field",
		},
		{
			name: "bare quote", input: "email,name\na@x.com,Ja\"ne\n", inNext: true,
			line: 2, col: 11, reason: `bare " in unquoted field`,
		},
		{
			name: "text after closing quote", input: "email,name\na@x.com,\"Jane\"x\n", inNext: true,
			line: 2, col: 15, reason: "unexpected text after the closing quote of the field at line 2 column 9",
		},
		{
			name: "text after closing quote on a continuation line", input: "email,name\na@x.com,\"Ja\nne\" \n", inNext: true,
			line: 3, col: 4, reason: "closing quote of the field at line 2 column 9",
		},
		{
			name: "too few fields", input: "email,name,city\na@x.com,Ann,Rome\nb@x.com,Bob\n", inNext: true,
			line: 3, reason: "2 fields, header has 3",
		},
		{
			name: "too many fields, record spanning lines", input: "email,name\na@x.com,\"A\nB\",extra\n", inNext: true,
			line: 2, reason: "3 fields, header has 2",
		},
		{
			name: "invalid UTF-8 in data", input: "email,name\na@x.com,Jos\xE9\n", inNext: true,
			line: 2, col: 12, reason: "not valid UTF-8 (byte 0xE9); set list_encoding",
		},
		{
			name: "invalid UTF-8 in header after BOM", input: "\xEF\xBB\xBFemail,n\xFFme\n",
			line: 1, col: 8, reason: "not valid UTF-8 (byte 0xFF)",
		},
		{
			name: "invalid UTF-8 inside a quoted continuation line", input: "email,name\na@x.com,\"ok\nbad\x80\"\n", inNext: true,
			line: 3, col: 4, reason: "not valid UTF-8 (byte 0x80)",
		},
		{
			name: "truncated multibyte sequence at the end", input: "email,name\na@x.com,Zo\xC3", inNext: true,
			line: 2, col: 11, reason: "not valid UTF-8 (byte 0xC3)",
		},
		{name: "unknown encoding", input: "email\n", opts: Options{Encoding: "klingon"}, reason: `unknown list_encoding "klingon"`},
		{name: "invalid delimiter", input: "email\n", opts: Options{Delimiter: '"'}, reason: "invalid delimiter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Name = "subscribers.csv"
			rd, err := NewReader(strings.NewReader(tt.input), tt.opts)
			if tt.inNext {
				if err != nil {
					t.Fatalf("NewReader: %v", err)
				}
				for err == nil {
					_, err = rd.Next()
				}
				if err == io.EOF {
					t.Fatalf("Next reached io.EOF, want an error")
				}
				// The error is sticky.
				if _, again := rd.Next(); again != err {
					t.Errorf("second Next = %v, want the same error %v", again, err)
				}
			} else if err == nil {
				t.Fatalf("NewReader succeeded, want an error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if e.File != "subscribers.csv" || e.Line != tt.line || e.Column != tt.col {
				t.Errorf("error at %s:%d:%d, want subscribers.csv:%d:%d (%v)", e.File, e.Line, e.Column, tt.line, tt.col, e)
			}
			if !strings.Contains(e.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", e.Reason, tt.reason)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "subscribers.csv", Line: 12, Column: 7, Reason: "unterminated quoted field"}, "subscribers.csv:12:7: unterminated quoted field"},
		{Error{File: "subscribers.csv", Line: 7, Reason: "3 fields, header has 4"}, "subscribers.csv:7: 3 fields, header has 4"},
		{Error{File: "s.csv", Reason: `unknown list_encoding "x"`}, `s.csv: unknown list_encoding "x"`},
		{Error{Line: 1, Reason: "empty file: no header row"}, "list:1: empty file: no header row"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestEncodings(t *testing.T) {
	tests := []struct {
		encoding string
		input    string
		want     string
	}{
		{"latin1", "email,name\na@x.com,Jos\xE9\n", "José"},
		{"iso-8859-1", "email,name\na@x.com,Jos\xE9\n", "José"},
		{"ISO-8859-1", "email,name\na@x.com,Jos\xE9\n", "José"},
		{"windows-1252", "email,name\na@x.com,\x80 10 \x96 Jos\xE9\n", "€ 10 – José"},
		{"cp1252", "email,name\na@x.com,\x80\n", "€"},
		{"iso-8859-15", "email,name\na@x.com,\xA4\n", "€"},
	}
	for _, tt := range tests {
		t.Run(tt.encoding, func(t *testing.T) {
			_, rows := readAll(t, tt.input, Options{Encoding: tt.encoding})
			if len(rows) != 1 || rows[0].Fields[1] != tt.want {
				t.Fatalf("rows = %v, want name %q", rows, tt.want)
			}
		})
	}
}

// genList is an io.Reader producing a header and n generated rows without
// holding them in memory.
type genList struct {
	n, i int
	buf  []byte
}

func (g *genList) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.i > g.n {
			return 0, io.EOF
		}
		if g.i == 0 {
			g.buf = append(g.buf, "email,first_name,last_name,city,plan\r\n"...)
		} else {
			g.buf = append(g.buf, "user"...)
			g.buf = appendInt(g.buf, g.i)
			g.buf = append(g.buf, "@example.com,Firstname,\"Last, Name\",Springfield,gold\r\n"...)
		}
		g.i++
	}
	n := copy(p, g.buf)
	g.buf = g.buf[:copy(g.buf, g.buf[n:])]
	return n, nil
}

func appendInt(b []byte, v int) []byte {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}

func TestReaderStreamsLargeList(t *testing.T) {
	const n = 200_000
	rd, err := NewReader(&genList{n: n}, Options{Name: "big.csv"})
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for {
		row, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		count++
		if row.Line != count+1 || row.Invalid != "" || row.Fields[2] != "Last, Name" {
			t.Fatalf("row %d: %+v", count, row)
		}
	}
	if count != n {
		t.Fatalf("read %d rows, want %d", count, n)
	}
}

func TestReaderPassesOnReadErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader("email,name\na@x.com,Ann\n"), iotest.ErrReader(boom))
	rd, err := NewReader(r, Options{Name: "s.csv"})
	if err != nil {
		t.Fatal(err)
	}
	row, err := rd.Next()
	if err != nil || row.Email != "a@x.com" {
		t.Fatalf("first row: %v, %v", row, err)
	}
	_, err = rd.Next()
	var e *Error
	if !errors.Is(err, boom) || errors.As(err, &e) || !strings.Contains(err.Error(), "s.csv: reading line 3") {
		t.Fatalf("Next = %v, want a wrapped read error naming s.csv line 3", err)
	}
}

// TestReaderOneByteReads reads through a reader that returns one byte at a
// time, so that every multi-byte UTF-8 sequence is split between reads: the
// valid ones are read intact, the invalid one is still placed exactly.
func TestReaderOneByteReads(t *testing.T) {
	const input = "email,name\r\na@x.com,\"José\r\nÅsa\"\nb@x.com,Zoë 😀\n"
	rd, err := NewReader(iotest.OneByteReader(strings.NewReader(input)), Options{Name: "l.csv"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		row, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%s", row.Line, row.Fields[1]))
	}
	if want := []string{"2:José\nÅsa", "4:Zoë 😀"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rows %q, want %q", got, want)
	}

	rd, err = NewReader(iotest.OneByteReader(strings.NewReader("email,name\na@x.com,Zo\xC3\xABe\xC3(\n")), Options{Name: "l.csv"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rd.Next()
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || e.Column != 14 || !strings.Contains(e.Reason, "byte 0xC3") {
		t.Errorf("Next = %v, want l.csv:2:14 and byte 0xC3", err)
	}
}

// TestReaderRecordCap stops a record that grows past MaxRecordBytes (an
// unterminated quote near the top of a large file) at the record's line,
// before it is held in memory whole.
func TestReaderRecordCap(t *testing.T) {
	for _, tt := range []struct{ name, rest string }{
		{"one long line", strings.Repeat("x", MaxRecordBytes+csvBuffer+10)},
		{"open quote across many lines", "\"" + strings.Repeat("line of text\n", MaxRecordBytes/10)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			input := "email,name\na@x.com,Ann\n\nb@x.com," + tt.rest
			rd, err := NewReader(strings.NewReader(input), Options{Name: "big.csv"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rd.Next(); err != nil {
				t.Fatal(err)
			}
			_, err = rd.Next()
			var e *Error
			if !errors.As(err, &e) || e.Line != 4 || !strings.Contains(e.Reason, "record longer than") {
				t.Fatalf("Next = %v, want big.csv:4: record longer than …", err)
			}
		})
	}
}
