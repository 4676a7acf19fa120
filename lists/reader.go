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

// fieldPos is where a field starts in the input.
type fieldPos struct{ line, col int }

// Reader reads the data rows of a list one at a time.
type Reader struct {
	name      string
	br        *bufio.Reader
	delim     []byte
	checkUTF8 bool

	columns    []string
	emailIndex int

	line  int    // number of physical lines read so far
	long  []byte // assembles a physical line longer than the buffer
	rec   []byte // the current record's field contents, back to back
	ends  []int  // end offset in rec of each field
	pos   []fieldPos
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
	rd.checkUTF8 = utf8Input
	rd.br = bufio.NewReaderSize(src, bufferSize)
	if b, _ := rd.br.Peek(len(utf8BOM)); string(b) == utf8BOM {
		_, _ = rd.br.Discard(len(utf8BOM))
	}
	if o.Delimiter != 0 {
		if o.Delimiter == '"' || o.Delimiter == '\r' || o.Delimiter == '\n' ||
			!utf8.ValidRune(o.Delimiter) || o.Delimiter == utf8.RuneError {
			return nil, rd.errorf(0, 0, "invalid delimiter %q", o.Delimiter)
		}
		rd.delim = utf8.AppendRune(nil, o.Delimiter)
	} else {
		rd.delim = []byte{rd.detectDelimiter()}
	}
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
func (rd *Reader) detectDelimiter() byte {
	b, _ := rd.br.Peek(bufferSize)
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
	if err := rd.readRecord(); err != nil {
		if err == io.EOF {
			return rd.errorf(1, 0, "empty file: no header row")
		}
		return err
	}
	n := len(rd.ends)
	rd.columns = make([]string, n)
	seen := make(map[string]int, n)
	s := string(rd.rec)
	prev := 0
	for i, end := range rd.ends {
		name := strings.TrimSpace(s[prev:end])
		prev = end
		p := rd.pos[i]
		if name == "" {
			return rd.errorf(p.line, p.col, "column %d has an empty name", i+1)
		}
		lower := strings.ToLower(name)
		if j, dup := seen[lower]; dup {
			return rd.errorf(p.line, p.col, "duplicate column name: %q (column %d) and %q (column %d)",
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
func (rd *Reader) Delimiter() rune {
	r, _ := utf8.DecodeRune(rd.delim)
	return r
}

// Next returns the next data row, io.EOF after the last one, or an *Error
// for a structural problem. Blank lines are skipped. After an error, Next
// keeps returning it.
func (rd *Reader) Next() (*Row, error) {
	if rd.err != nil {
		return nil, rd.err
	}
	if err := rd.readRecord(); err != nil {
		rd.err = err
		return nil, err
	}
	if len(rd.ends) != len(rd.columns) {
		rd.err = rd.errorf(rd.start, 0, "%d fields, header has %d", len(rd.ends), len(rd.columns))
		return nil, rd.err
	}
	s := string(rd.rec)
	fields := make([]string, len(rd.ends))
	prev := 0
	for i, end := range rd.ends {
		fields[i] = s[prev:end]
		prev = end
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

// errorf builds an *Error for this list.
func (rd *Reader) errorf(line, col int, format string, args ...any) *Error {
	return &Error{File: rd.name, Line: line, Column: col, Reason: fmt.Sprintf(format, args...)}
}

// readLine returns the next physical line including its line break (the
// last line may have none), or io.EOF when there is no more input. The
// slice is valid until the next call.
func (rd *Reader) readLine() ([]byte, error) {
	line, err := rd.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		rd.long = append(rd.long[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(rd.long) > MaxRecordBytes {
				return nil, rd.errorf(rd.line+1, 0, "line longer than %d bytes", MaxRecordBytes)
			}
			line, err = rd.br.ReadSlice('\n')
			rd.long = append(rd.long, line...)
		}
		line = rd.long
	}
	if len(line) == 0 {
		if err == nil || err == io.EOF {
			return nil, io.EOF
		}
		return nil, rd.readError(err)
	}
	if err != nil && err != io.EOF {
		return nil, rd.readError(err)
	}
	rd.line++
	if rd.checkUTF8 && !utf8.Valid(line) {
		return nil, rd.invalidUTF8(line)
	}
	return line, nil
}

// readError wraps an error of the underlying reader.
func (rd *Reader) readError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%s: reading line %d: %w", displayName(rd.name), rd.line+1, err)
}

// invalidUTF8 reports the first byte of line that is not valid UTF-8.
func (rd *Reader) invalidUTF8(line []byte) *Error {
	i := 0
	for i < len(line) {
		r, size := utf8.DecodeRune(line[i:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		i += size
	}
	b := byte(0)
	if i < len(line) {
		b = line[i]
	}
	return rd.errorf(rd.line, i+1,
		"text is not valid UTF-8 (byte 0x%02X); set list_encoding to the file's encoding (e.g. latin1, windows-1252)", b)
}

// trimEOL removes a trailing "\n" or "\r\n" (or a lone "\r" at the end of
// the input) and reports whether a line break was removed.
func trimEOL(line []byte) ([]byte, bool) {
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
		if n > 0 && line[n-1] == '\r' {
			n--
		}
		return line[:n], true
	}
	if n > 0 && line[n-1] == '\r' {
		return line[:n-1], false
	}
	return line, false
}

// readRecord parses the next record into rd.rec, rd.ends and rd.pos,
// skipping blank lines. It returns io.EOF at the end of the input.
func (rd *Reader) readRecord() error {
	var (
		line  []byte
		hasNL bool
	)
	for len(line) == 0 {
		l, err := rd.readLine()
		if err != nil {
			return err
		}
		line, hasNL = trimEOL(l)
	}
	rd.start = rd.line
	rd.rec = rd.rec[:0]
	rd.ends = rd.ends[:0]
	rd.pos = rd.pos[:0]

	col := 1
	for {
		rd.pos = append(rd.pos, fieldPos{rd.line, col})
		if len(line) == 0 || line[0] != '"' {
			// Unquoted field: up to the next delimiter or the end of the line.
			i := bytes.Index(line, rd.delim)
			field := line
			if i >= 0 {
				field = line[:i]
			}
			if j := bytes.IndexByte(field, '"'); j >= 0 {
				return rd.errorf(rd.line, col+j,
					`bare " in unquoted field (quote the whole field and double the quote: "a ""b"" c")`)
			}
			rd.rec = append(rd.rec, field...)
			rd.ends = append(rd.ends, len(rd.rec))
			if i < 0 {
				return nil
			}
			line = line[i+len(rd.delim):]
			col += i + len(rd.delim)
			continue
		}
		// Quoted field: up to the closing quote, across line breaks.
		qLine, qCol := rd.line, col
		line = line[1:]
		col++
		for {
			i := bytes.IndexByte(line, '"')
			if i < 0 {
				rd.rec = append(rd.rec, line...)
				if len(rd.rec) > MaxRecordBytes {
					return rd.errorf(qLine, qCol, "quoted field longer than %d bytes (unterminated quoted field?)", MaxRecordBytes)
				}
				if !hasNL {
					return rd.errorf(qLine, qCol, "unterminated quoted field")
				}
				l, err := rd.readLine()
				if err == io.EOF {
					return rd.errorf(qLine, qCol, "unterminated quoted field")
				}
				if err != nil {
					return err
				}
				rd.rec = append(rd.rec, '\n')
				line, hasNL = trimEOL(l)
				col = 1
				continue
			}
			rd.rec = append(rd.rec, line[:i]...)
			line = line[i+1:]
			col += i + 1
			if len(line) > 0 && line[0] == '"' {
				rd.rec = append(rd.rec, '"')
				line = line[1:]
				col++
				continue
			}
			break
		}
		rd.ends = append(rd.ends, len(rd.rec))
		if len(line) == 0 {
			return nil
		}
		if !bytes.HasPrefix(line, rd.delim) {
			return rd.errorf(rd.line, col,
				"unexpected text after the closing quote of the field at line %d column %d", qLine, qCol)
		}
		line = line[len(rd.delim):]
		col += len(rd.delim)
	}
}
