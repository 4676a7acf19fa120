package campaign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/lists"
)

// Recipient is a list row that is to be sent in this run.
type Recipient struct {
	Line  int
	Email string
	Key   string
	// Fields holds the row's fields, one per list column.
	Fields []string
	// Entry is the journal's record of an earlier attempt (nil for a first attempt).
	Entry *journal.Entry
	// GiveUp marks a deferred recipient past give_up_after: it is to be marked failed,
	// not sent.
	GiveUp bool
}

// StoreError is a failure of the store (the journal) met while reading the list
// against it: not a problem of the list.
type StoreError struct{ Err error }

func (e *StoreError) Error() string { return e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// Skipped counts rows that are not sent, by reason.
type Skipped struct {
	Invalid     int `json:"invalid"`
	Duplicate   int `json:"duplicate"`
	Suppressed  int `json:"suppressed"`
	AlreadyDone int `json:"already_done"`
}

// Warning is a row-level problem: the row is skipped, the rest still sends.
type Warning struct {
	Line   int
	Reason string
}

// Lookup is what the source asks of the journal; a nil Lookup means "no journal yet".
type Lookup interface {
	Lookup(ctx context.Context, campaign string, keys []string) (map[string]journal.Entry, error)
	Suppressed(ctx context.Context, keys []string) (map[string]journal.Suppression, error)
}

// Source reads the list of a campaign and sorts every row into exactly one of: to send,
// invalid, duplicate, suppressed, already done (or not yet due for a retry).
type Source struct {
	Campaign *Campaign
	// Journal answers lookups of earlier outcomes and the store's suppression list (nil: none).
	Journal Lookup
	// Now is the clock for deferred retries.
	Now func() time.Time
	// Warn receives invalid and duplicate rows (nil: ignored).
	Warn func(Warning)
	// ResendUnknown counts `unknown` recipients as to send (send --resend-unknown).
	ResendUnknown bool

	suppressed map[string]struct{}
	// dedup is kept between scans (reset each time): the table of a big list is
	// allocated once, not once a pass.
	dedup *lists.Deduper
	// expect is the number of distinct addresses the last scan found (0: none yet).
	expect int
}

// ScanResult is what one pass over the list found.
type ScanResult struct {
	// Total is the number of data rows.
	Total   int
	Skipped Skipped
	// NotDue counts deferred recipients whose next attempt is later than now.
	NotDue int
	// GaveUp counts deferred recipients past give_up_after, handed to fn with GiveUp set
	// (they are to be marked failed, not sent).
	GaveUp int
	// ToSend counts recipients handed to fn; Retries those of them that are deferred
	// recipients due for another attempt.
	ToSend, Retries int
}

const batchSize = 256

// Columns checks the list's header and returns its columns without reading the rows.
func (s *Source) Columns() ([]string, error) {
	f, r, err := s.open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return r.Columns(), nil
}

// open opens the list and reads its header; the caller closes the file.
func (s *Source) open() (*os.File, *lists.Reader, error) {
	f, err := os.Open(s.Campaign.ListFile)
	if err != nil {
		return nil, nil, configErr("list: %v", err)
	}
	r, err := lists.NewReader(f, lists.Options{
		Name:        s.Campaign.ListFile,
		Delimiter:   s.Campaign.ListDelimiter,
		Encoding:    s.Campaign.ListEncoding,
		EmailColumn: s.Campaign.ListEmailColumn,
	})
	if err != nil {
		f.Close()
		return nil, nil, &ConfigError{Err: err}
	}
	return f, r, nil
}

func (s *Source) loadSuppressFiles() error {
	if s.suppressed != nil {
		return nil
	}
	s.suppressed = map[string]struct{}{}
	for _, path := range s.Campaign.SuppressFiles {
		f, err := os.Open(path)
		if err != nil {
			return configErr("suppress: %v", err)
		}
		err = lists.ReadAddresses(f, path, func(key string, _ int) error {
			s.suppressed[key] = struct{}{}
			return nil
		})
		f.Close()
		if err != nil {
			return &ConfigError{Err: err}
		}
	}
	return nil
}

// Scan reads the whole list once and calls fn, in list order, with every recipient to
// send. A structural problem of the list is a *ConfigError; an error from fn stops the
// scan and is returned.
func (s *Source) Scan(ctx context.Context, fn func(*Recipient) error) (ScanResult, error) {
	var res ScanResult
	if err := s.loadSuppressFiles(); err != nil {
		return res, err
	}
	f, r, err := s.open()
	if err != nil {
		return res, err
	}
	defer f.Close()
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if s.dedup == nil {
		s.dedup = lists.NewDeduper()
	}
	dedup := s.dedup
	dedup.Reset(s.expected(f))
	batch := make([]*Recipient, 0, batchSize)
	keys := make([]string, 0, batchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		defer func() { batch, keys = batch[:0], keys[:0] }()
		var entries map[string]journal.Entry
		var supp map[string]journal.Suppression
		if s.Journal != nil {
			var err error
			if supp, err = s.Journal.Suppressed(ctx, keys); err != nil {
				return &StoreError{Err: err}
			}
			if entries, err = s.Journal.Lookup(ctx, s.Campaign.Name, keys); err != nil {
				return &StoreError{Err: err}
			}
		}
		t := now()
		for _, rc := range batch {
			e, inJournal := entries[rc.Key]
			if inJournal && e.State == journal.Unknown && s.ResendUnknown {
				e.State = journal.Pending
			}
			if inJournal && (e.State == journal.Sent || e.State == journal.Failed || e.State == journal.Unknown || e.State == journal.Sending || e.State == journal.Claimed) {
				res.Skipped.AlreadyDone++
				continue
			}
			if _, ok := supp[rc.Key]; ok {
				res.Skipped.Suppressed++
				continue
			}
			if inJournal {
				switch e.State {
				case journal.Pending:
				case journal.Deferred:
					if !e.FirstAttempt.IsZero() && t.Sub(e.FirstAttempt) > s.Campaign.Retry.GiveUpAfter {
						e := e
						rc.Entry, rc.GiveUp = &e, true
						res.GaveUp++
						if err := fn(rc); err != nil {
							return err
						}
						continue
					}
					if t.Before(e.NextAttempt) {
						res.NotDue++
						continue
					}
				default:
					res.Skipped.AlreadyDone++
					continue
				}
				e := e
				rc.Entry = &e
				if e.State == journal.Deferred {
					res.Retries++
				}
			}
			res.ToSend++
			if err := fn(rc); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, &ConfigError{Err: err}
		}
		res.Total++
		if row.Invalid != "" {
			res.Skipped.Invalid++
			s.warn(row.Line, fmt.Sprintf("invalid address %q: %s", row.Email, row.Invalid))
			continue
		}
		if first, dup := dedup.Add(row.Key, row.Line); dup {
			res.Skipped.Duplicate++
			s.warn(row.Line, fmt.Sprintf("duplicate of line %d (%s)", first, row.Email))
			continue
		}
		if _, ok := s.suppressed[row.Key]; ok {
			res.Skipped.Suppressed++
			continue
		}
		batch = append(batch, &Recipient{Line: row.Line, Email: row.Email, Key: row.Key, Fields: row.Fields})
		keys = append(keys, row.Key)
		if len(batch) == batchSize {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	s.expect = dedup.Len()
	return res, nil
}

// expected is the number of distinct addresses to size the dedupe table for: those of
// the last scan, or on a first scan an estimate from the size of the list file f, so
// that a large list's table is allocated once instead of grown by doubling (each growth
// holds the old and the new table at once: 36 MiB at the last growth for 1,000,000
// rows, where about 18 MiB sized in advance do).
func (s *Source) expected(f *os.File) int {
	if s.expect > 0 {
		return s.expect
	}
	return estimateRows(f)
}

// estimateRows estimates the rows of a list file of at least 1 MiB from its size and the
// mean line length of three samples (its start, middle and end: exact when the lines grow
// steadily longer down the list), with 10% to spare: a table sized a little too large
// costs less than one grown late. 0 for a smaller file, or when f cannot be read.
func estimateRows(f *os.File) int {
	const sample, minSize = 64 << 10, 1 << 20
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() < minSize {
		return 0
	}
	size := st.Size()
	buf := make([]byte, sample)
	var lineLen float64 // the sum of the samples' mean line lengths
	for _, off := range []int64{0, size/2 - sample/2, size - sample} {
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0
		}
		lines := bytes.Count(buf[:n], []byte{'\n'})
		if lines == 0 {
			return 0 // lines too long to estimate: the table grows as it needs
		}
		lineLen += float64(n) / float64(lines)
	}
	return int(float64(size) / (lineLen / 3) * 1.1)
}

func (s *Source) warn(line int, reason string) {
	if s.Warn != nil {
		s.Warn(Warning{Line: line, Reason: reason})
	}
}

// Load reads the whole list once and loads the rows to send into the store as
// `pending` (rows already there keep their state), in one transaction of run. Invalid
// and duplicate rows, and those on the campaign's suppress files, are counted, not
// loaded; the store's own suppression list is checked when a row is claimed.
func (s *Source) Load(ctx context.Context, run journal.Run, templateHash string) (journal.ListInfo, error) {
	var info journal.ListInfo
	if err := s.loadSuppressFiles(); err != nil {
		return info, err
	}
	f, r, err := s.open()
	if err != nil {
		return info, err
	}
	defer f.Close()
	info.Columns = r.Columns()
	info.TemplateHash = templateHash
	if s.dedup == nil {
		s.dedup = lists.NewDeduper()
	}
	dedup := s.dedup
	dedup.Reset(s.expected(f))
	// The rows stream into the store's load transaction: a structural error of the list
	// loads nothing.
	_, err = run.Load(ctx, &info, func(add func(journal.Item) error) error {
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			row, err := r.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return &ConfigError{Err: err}
			}
			info.Total++
			if row.Invalid != "" {
				info.Invalid++
				s.warn(row.Line, fmt.Sprintf("invalid address %q: %s", row.Email, row.Invalid))
				continue
			}
			if first, dup := dedup.Add(row.Key, row.Line); dup {
				info.Duplicate++
				s.warn(row.Line, fmt.Sprintf("duplicate of line %d (%s)", first, row.Email))
				continue
			}
			if _, ok := s.suppressed[row.Key]; ok {
				info.Suppressed++
				continue
			}
			if err := add(journal.Item{Key: row.Key, Email: row.Email, Line: row.Line, Fields: row.Fields}); err != nil {
				return err
			}
		}
	})
	s.expect = dedup.Len()
	return info, err
}
