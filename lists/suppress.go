package lists

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ReadAddresses reads a suppression file named name from r and calls fn
// with each trimmed, lower-cased address and its line.
//
// The file is either a CSV list whose header has an "email" or "Email
// Address" column (case-insensitive; delimiter detected as for NewReader;
// rows with an empty address are skipped), or a plain file with one address
// per line, where blank lines and lines starting with '#' are ignored. It is
// plain when its first line that is neither blank nor a comment contains an
// '@'. Both must be UTF-8 (a byte-order mark is allowed).
//
// Structural problems are *Error; an error returned by fn stops the reading
// and is returned as is.
func ReadAddresses(r io.Reader, name string, fn func(key string, line int) error) error {
	br := bufio.NewReaderSize(r, bufferSize)
	plain, err := looksPlain(br)
	if err != nil {
		return fmt.Errorf("%s: %w", displayName(name), err)
	}
	if !plain {
		rd, err := newReader(br, Options{Name: name}, []string{"email", "email address"})
		if err != nil {
			return err
		}
		for {
			row, err := rd.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if row.Key == "" {
				continue
			}
			if err := fn(row.Key, row.Line); err != nil {
				return err
			}
		}
	}
	return readPlain(br, name, fn)
}

// looksPlain peeks at the start of br and reports whether it is a plain
// address-per-line file.
func looksPlain(br *bufio.Reader) (bool, error) {
	b, err := br.Peek(bufferSize)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		if len(b) == 0 {
			return false, err
		}
	}
	if len(b) >= len(utf8BOM) && string(b[:len(utf8BOM)]) == utf8BOM {
		b = b[len(utf8BOM):]
	}
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		return bytes.IndexByte(line, '@') >= 0, nil
	}
	// Empty (or only comments): a plain file with no addresses.
	return true, nil
}

// readPlain reads an address-per-line file.
func readPlain(br *bufio.Reader, name string, fn func(key string, line int) error) error {
	if b, _ := br.Peek(len(utf8BOM)); string(b) == utf8BOM {
		_, _ = br.Discard(len(utf8BOM))
	}
	lineNo := 0
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for err == bufio.ErrBufferFull {
				if len(long) > MaxRecordBytes {
					return &Error{File: name, Line: lineNo + 1, Reason: fmt.Sprintf("line longer than %d bytes", MaxRecordBytes)}
				}
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: reading line %d: %w", displayName(name), lineNo+1, err)
		}
		if len(line) == 0 {
			return nil
		}
		lineNo++
		if !utf8.Valid(line) {
			i := validPrefix(line)
			return invalidUTF8(name, lineNo, i, line[i:])
		}
		s := strings.TrimSpace(string(line))
		if s != "" && s[0] != '#' {
			if err := fn(strings.ToLower(s), lineNo); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// displayName is the file name used in messages.
func displayName(name string) string {
	if name == "" {
		return "list"
	}
	return name
}
