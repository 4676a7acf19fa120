// Package lists reads herald's subscriber lists: RFC 4180 CSV files with a
// header row, streamed row by row so that memory does not grow with the list.
//
// It detects the delimiter (comma, semicolon or tab), accepts UTF-8 with or
// without a byte-order mark or any encoding known to the WHATWG/IANA indexes,
// finds the address column, and reports structural problems (a list that
// cannot be used at all) as *Error values carrying the file, line and column.
// Per-row problems (an invalid address) are not errors: they are reported on
// the Row so that the caller can count them and carry on.
//
// The package also validates addresses (ValidateAddress), remembers the
// addresses seen in one pass with bounded memory (Deduper) and reads
// suppression files (ReadAddresses).
package lists

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// MaxRecordBytes is the largest record (one CSV row, including the line
// breaks inside its quoted fields) a Reader accepts. It bounds memory when a
// quote is left open near the top of a large file.
const MaxRecordBytes = 1 << 20

// bufferSize is the size of the Reader's input buffer; the delimiter is
// detected from the part of the header row that fits in it.
const bufferSize = 64 << 10

// utf8BOM is the UTF-8 encoding of U+FEFF, which some tools write at the
// start of a UTF-8 file.
const utf8BOM = "\xEF\xBB\xBF"

// Options configures a Reader.
type Options struct {
	// Name is the file name used in errors, e.g. "subscribers.csv".
	Name string
	// Delimiter separates fields. 0 detects it from the header line among
	// ',', ';' and '\t' (outside quotes, the most frequent wins; ',' when
	// there is none).
	Delimiter rune
	// Encoding is the list's character encoding: "" or "utf-8" for UTF-8
	// (a byte-order mark is allowed), else a WHATWG or IANA name such as
	// "latin1", "iso-8859-1" or "windows-1252".
	Encoding string
	// EmailColumn names the address column, matched case-insensitively after
	// trimming; "" means "email".
	EmailColumn string
}

// Error is a structural problem: the list cannot be used at all.
//
// Line is 1-based (the header is line 1) and is 0 only when the problem is
// not at a place in the file (an unknown encoding name). Column is the
// 1-based byte offset within the line, 0 when it does not apply.
type Error struct {
	File   string // Options.Name of the list
	Line   int    // 1-based line; 0 when not at a place in the file
	Column int    // 1-based byte column; 0 when it does not apply
	Reason string // what is wrong, and what to do where that is known
}

// Error formats the problem as "file:line:column: reason", omitting the
// column (and the line) when it is 0.
func (e *Error) Error() string {
	name := displayName(e.File)
	var b strings.Builder
	b.Grow(len(name) + len(e.Reason) + 16)
	b.WriteString(name)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// Row is one data row of a list.
type Row struct {
	// Line is the line number where the record starts (1-based, the header
	// is line 1).
	Line int
	// Fields holds one value per column, as written (not trimmed), except
	// the address column, which holds the trimmed address.
	Fields []string
	// Email is the address, trimmed.
	Email string
	// Key is the canonical form used for comparisons: the lower-cased
	// trimmed address.
	Key string
	// Invalid is "" when the address is valid, else the reason (see
	// ValidateAddress).
	Invalid string
}

// Data returns the row as a map from column name to field, for the columns
// given (normally Reader.Columns()). Columns without a field map to "".
func (row *Row) Data(columns []string) map[string]string {
	m := make(map[string]string, len(columns))
	for i, c := range columns {
		if i < len(row.Fields) {
			m[c] = row.Fields[i]
		} else {
			m[c] = ""
		}
	}
	return m
}

// Reader reads the data rows of a list one at a time. The CSV itself is
// parsed by encoding/csv; Reader adds what a subscriber list needs around
// it: the byte-order mark, delimiter detection, encodings, a UTF-8 check and
// a record-size cap (see input), the header checks, and errors that name
// the file, line and column.
type Reader struct {
	name  string
	csv   *csv.Reader
	in    *input
	delim []byte

	columns    []string
	emailIndex int

	start int   // line where the current record starts
	err   error // sticky error
}

// NewReader reads and checks the header row of the list in r. Structural
// problems are returned as *Error.
func NewReader(r io.Reader, o Options) (*Reader, error) {
	col := strings.TrimSpace(o.EmailColumn)
	if col == "" {
		col = "email"
	}
	return newReader(r, o, []string{col})
}

// newReader is NewReader with a list of acceptable address column names,
// tried in order.
func newReader(r io.Reader, o Options, emailColumns []string) (*Reader, error) {
	rd := &Reader{name: o.Name}
	src, utf8Input, err := decode(r, o.Encoding)
	if err != nil {
		return nil, rd.errorf(0, 0, "%s", err.Error())
	}
	br := bufio.NewReaderSize(src, bufferSize)
	if b, _ := br.Peek(len(utf8BOM)); string(b) == utf8BOM {
		_, _ = br.Discard(len(utf8BOM))
	}
	delim := o.Delimiter
	if delim != 0 {
		if delim == '"' || delim == '\r' || delim == '\n' ||
			!utf8.ValidRune(delim) || delim == utf8.RuneError {
			return nil, rd.errorf(0, 0, "invalid delimiter %q", delim)
		}
	} else {
		delim = rune(detectDelimiter(br))
	}
	rd.delim = utf8.AppendRune(nil, delim)
	rd.in = &input{r: br, name: o.Name, checkUTF8: utf8Input, recLine: 1}
	rd.csv = csv.NewReader(rd.in)
	rd.csv.Comma = delim
	rd.csv.FieldsPerRecord = -1 // checked here, with a message of our own
	if err := rd.readHeader(emailColumns); err != nil {
		return nil, err
	}
	return rd, nil
}

// decode returns a reader of UTF-8 text for the named encoding, and whether
// the input is meant to be UTF-8 already (and so must be validated).
func decode(r io.Reader, name string) (io.Reader, bool, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" || n == "utf-8" || n == "utf8" {
		return r, true, nil
	}
	enc, err := htmlindex.Get(n)
	if err != nil {
		enc, err = ianaindex.IANA.Encoding(n)
		if err != nil || enc == nil {
			return nil, false, fmt.Errorf("unknown list_encoding %q (try utf-8, latin1, windows-1252)", name)
		}
	}
	if enc == unicode.UTF8 || enc == encoding.Nop {
		return r, true, nil
	}
	return transform.NewReader(r, enc.NewDecoder()), false, nil
}

// detectDelimiter looks at the header line (as much of it as fits in the
// buffer) and returns the most frequent of ',', ';' and '\t' outside quotes.
func detectDelimiter(br *bufio.Reader) byte {
	b, _ := br.Peek(bufferSize)
	var comma, semi, tab int
	inQuote := false
scan:
	for _, c := range b {
		switch c {
		case '"':
			inQuote = !inQuote
		case '\n':
			if !inQuote {
				break scan
			}
		case ',':
			if !inQuote {
				comma++
			}
		case ';':
			if !inQuote {
				semi++
			}
		case '\t':
			if !inQuote {
				tab++
			}
		}
	}
	switch {
	case semi > comma && semi >= tab:
		return ';'
	case tab > comma && tab > semi:
		return '\t'
	default:
		return ','
	}
}

// readHeader reads the header row, trims the names and finds the address
// column.
func (rd *Reader) readHeader(emailColumns []string) error {
	rec, err := rd.read()
	if err != nil {
		if err == io.EOF {
			return rd.errorf(1, 0, "empty file: no header row")
		}
		return err
	}
	n := len(rec)
	rd.columns = make([]string, n)
	seen := make(map[string]int, n)
	for i, field := range rec {
		name := strings.TrimSpace(field)
		line, col := rd.csv.FieldPos(i)
		if name == "" {
			return rd.errorf(line, col, "column %d has an empty name", i+1)
		}
		lower := strings.ToLower(name)
		if j, dup := seen[lower]; dup {
			return rd.errorf(line, col, "duplicate column name: %q (column %d) and %q (column %d)",
				rd.columns[j], j+1, name, i+1)
		}
		seen[lower] = i
		rd.columns[i] = name
	}
	rd.emailIndex = -1
	for _, want := range emailColumns {
		if i, ok := seen[strings.ToLower(strings.TrimSpace(want))]; ok {
			rd.emailIndex = i
			break
		}
	}
	if rd.emailIndex < 0 {
		quoted := make([]string, len(emailColumns))
		for i, c := range emailColumns {
			quoted[i] = strconv.Quote(c)
		}
		return rd.errorf(rd.start, 0, "no %s column (columns: %s); set list_email_column",
			strings.Join(quoted, " or "), strings.Join(rd.columns, ", "))
	}
	return nil
}

// Columns returns the trimmed header names, in order. The slice is shared:
// do not modify it.
func (rd *Reader) Columns() []string { return rd.columns }

// EmailIndex returns the index of the address column in Columns.
func (rd *Reader) EmailIndex() int { return rd.emailIndex }

// Delimiter returns the field delimiter in use (given or detected).
func (rd *Reader) Delimiter() rune { return rd.csv.Comma }

// Next returns the next data row, io.EOF after the last one, or an *Error
// for a structural problem. Blank lines are skipped. After an error, Next
// keeps returning it.
func (rd *Reader) Next() (*Row, error) {
	if rd.err != nil {
		return nil, rd.err
	}
	fields, err := rd.read()
	if err != nil {
		rd.err = err
		return nil, err
	}
	if len(fields) != len(rd.columns) {
		rd.err = rd.errorf(rd.start, 0, "%d fields, header has %d", len(fields), len(rd.columns))
		return nil, rd.err
	}
	email := strings.TrimSpace(fields[rd.emailIndex])
	fields[rd.emailIndex] = email
	return &Row{
		Line:    rd.start,
		Fields:  fields,
		Email:   email,
		Key:     strings.ToLower(email),
		Invalid: ValidateAddress(email),
	}, nil
}

// read returns the next record from encoding/csv, with its errors turned
// into *Error.
func (rd *Reader) read() ([]string, error) {
	rec, err := rd.csv.Read()
	if err == nil {
		rd.start, _ = rd.csv.FieldPos(0)
		rd.in.startRecord(rd.csv.InputOffset())
		return rec, nil
	}
	var (
		e  *Error
		pe *csv.ParseError
	)
	switch {
	case err == io.EOF:
		return nil, io.EOF
	case errors.As(err, &e):
		return nil, e
	case errors.As(err, &pe):
		return nil, rd.parseError(pe)
	default:
		return nil, fmt.Errorf("%s: reading line %d: %w", displayName(rd.name), rd.in.line+1, err)
	}
}

// parseError words an encoding/csv error the way herald reports list
// problems.
func (rd *Reader) parseError(pe *csv.ParseError) *Error {
	switch pe.Err {
	case csv.ErrBareQuote:
		return rd.errorf(pe.Line, pe.Column,
			`bare " in unquoted field (quote the whole field and double the quote: "a ""b"" c")`)
	case csv.ErrQuote:
		if e := rd.quoteError(); e != nil {
			return e
		}
		return rd.errorf(pe.Line, pe.Column, `extraneous or missing " in quoted field`)
	default:
		return rd.errorf(pe.Line, pe.Column, "%v", pe.Err)
	}
}

// quoteError places a csv.ErrQuote. encoding/csv reports where it noticed
// the problem (for an unterminated field, the end of the input); a person
// fixing the file needs the field's opening quote. The bytes of the record
// are walked field by field, without unescaping anything, to find it. It
// returns nil when the record holds no such problem.
func (rd *Reader) quoteError() *Error {
	b, _ := rd.in.record()
	for n := lineBreak(b); n > 0; n = lineBreak(b) { // blank lines before the record
		b = b[n:]
	}
	line, col := rd.in.recordLine(), 1
	for len(b) > 0 {
		if b[0] != '"' {
			i := bytes.Index(b, rd.delim)
			if nl := bytes.IndexByte(b, '\n'); i < 0 || (nl >= 0 && nl < i) {
				return nil // the record ends without a quoted field in error
			}
			b, col = b[i+len(rd.delim):], col+i+len(rd.delim)
			continue
		}
		qLine, qCol := line, col
		b, col = b[1:], col+1
		for {
			i := bytes.IndexByte(b, '"')
			if i < 0 {
				return rd.errorf(qLine, qCol, "unterminated quoted field")
			}
			if n := bytes.Count(b[:i], []byte{'\n'}); n > 0 {
				line, col = line+n, i-bytes.LastIndexByte(b[:i], '\n')
			} else {
				col += i
			}
			b, col = b[i+1:], col+1 // past the quote
			if len(b) > 0 && b[0] == '"' {
				b, col = b[1:], col+1 // a doubled quote
				continue
			}
			break
		}
		switch {
		case bytes.HasPrefix(b, rd.delim):
			b, col = b[len(rd.delim):], col+len(rd.delim)
		case len(b) == 0 || lineBreak(b) > 0:
			return nil
		default:
			return rd.errorf(line, col,
				"unexpected text after the closing quote of the field at line %d column %d", qLine, qCol)
		}
	}
	return nil
}

// lineBreak returns the length of the line break at the start of b ("\n" or
// "\r\n"), or 0.
func lineBreak(b []byte) int {
	switch {
	case len(b) > 0 && b[0] == '\n':
		return 1
	case len(b) > 1 && b[0] == '\r' && b[1] == '\n':
		return 2
	}
	return 0
}

// errorf builds an *Error for this list.
func (rd *Reader) errorf(line, col int, format string, args ...any) *Error {
	return &Error{File: rd.name, Line: line, Column: col, Reason: fmt.Sprintf(format, args...)}
}

// csvBuffer is the size of encoding/csv's own input buffer: how far it
// reads ahead of the record it returns.
const csvBuffer = 4096

// input is the text that encoding/csv parses. On its way through it checks
// that UTF-8 input is valid (encoding/csv passes invalid bytes on), stops a
// record that grows past MaxRecordBytes (encoding/csv would buffer it
// whole), counts lines for those errors, and keeps the bytes of the current
// record so that a quote error can be placed (Reader.quoteError).
type input struct {
	r         io.Reader
	name      string
	checkUTF8 bool

	pending []byte // the start of a UTF-8 sequence split between two reads
	kept    []byte // the bytes delivered from offset base on
	base    int64
	off     int64 // bytes delivered
	line    int   // line breaks delivered
	lineAt  int64 // offset just after the last line break delivered
	recAt   int64 // offset where the current record starts
	recLine int   // line of the byte at recAt
	err     error // sticky
}

// Read fills p with checked input.
func (in *input) Read(p []byte) (int, error) {
	for in.err == nil {
		k := copy(p, in.pending)
		in.pending = in.pending[:copy(in.pending, in.pending[k:])]
		n, rerr := in.r.Read(p[k:])
		n += k
		good := n
		if in.checkUTF8 && !utf8.Valid(p[:n]) {
			good = validPrefix(p[:n])
			rest := p[good:n]
			if rerr == nil && len(rest) < utf8.UTFMax && !utf8.FullRune(rest) {
				in.pending = append(in.pending, rest...) // completed by the next read
			} else {
				in.deliver(p[:good])
				in.err = invalidUTF8(in.name, in.line+1, int(in.off-in.lineAt), rest)
				return good, nil
			}
		}
		in.deliver(p[:good])
		if in.off-in.recAt > MaxRecordBytes+csvBuffer {
			in.err = &Error{File: in.name, Line: in.recordLine(), Reason: fmt.Sprintf(
				"record longer than %d bytes (an unterminated quoted field?)", MaxRecordBytes)}
			return good, nil
		}
		if rerr != nil {
			if rerr == io.EOF && len(in.pending) > 0 {
				in.err = invalidUTF8(in.name, in.line+1, int(in.off-in.lineAt), in.pending)
				return good, nil
			}
			in.err = rerr
			return good, nil
		}
		if good > 0 {
			return good, nil
		}
	}
	return 0, in.err
}

// deliver accounts for bytes handed to encoding/csv.
func (in *input) deliver(b []byte) {
	if n := bytes.Count(b, []byte{'\n'}); n > 0 {
		in.line += n
		in.lineAt = in.off + int64(bytes.LastIndexByte(b, '\n')) + 1
	}
	in.off += int64(len(b))
	in.kept = append(in.kept, b...)
}

// startRecord notes that the next record starts at offset off and lets go
// of the bytes before it (in chunks, so that the copying stays small).
func (in *input) startRecord(off int64) {
	i := int(off - in.base)
	in.recLine += bytes.Count(in.kept[in.recAt-in.base:i], []byte{'\n'})
	in.recAt = off
	if i == len(in.kept) || i >= 32<<10 {
		in.kept = in.kept[:copy(in.kept, in.kept[i:])]
		in.base = off
	}
}

// record returns the bytes delivered from the start of the current record
// on, and the line where they start.
func (in *input) record() ([]byte, int) {
	return in.kept[in.recAt-in.base:], in.recLine
}

// recordLine returns the line where the current record starts, after any
// blank lines.
func (in *input) recordLine() int {
	b, line := in.record()
	for n := lineBreak(b); n > 0; n = lineBreak(b) {
		b, line = b[n:], line+1
	}
	return line
}

// validPrefix returns the length of the longest valid UTF-8 prefix of b.
func validPrefix(b []byte) int {
	i := 0
	for i < len(b) {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		i += size
	}
	return i
}

// invalidUTF8 reports the invalid byte bad[0] of the text at line, col
// bytes into it.
func invalidUTF8(name string, line, col int, bad []byte) *Error {
	b := byte(0)
	if len(bad) > 0 {
		b = bad[0]
	}
	return &Error{File: name, Line: line, Column: col + 1, Reason: fmt.Sprintf(
		"text is not valid UTF-8 (byte 0x%02X); set list_encoding to the file's encoding (e.g. latin1, windows-1252)", b)}
}
