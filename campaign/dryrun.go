package campaign

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/heraldmail/herald/templates"
)

// The dry run's queues: the list is read in batches of dryBatchRows recipients, and at
// most dryBatchesPerWorker batches a worker are read ahead of the renders, so that the
// memory of a dry run does not grow with the list.
const (
	dryBatchRows        = 64
	dryBatchesPerWorker = 4
)

// dryRun renders every recipient that would go, to find every problem now, and counts.
//
// The list is read and counted in order on this goroutine, exactly as a send reads it;
// the recipients are rendered by one worker per core (GOMAXPROCS), handed over in
// batches through bounded queues. The error is the one of the first failing row in list
// order, whichever worker finds it first: once a row has failed, later rows are no
// longer rendered (they cannot change the error) but are still counted. When ctx is
// done it returns ctx's error at once, also while a worker is in the middle of a render
// that loops without writing (that render is left to finish on its own).
func dryRun(ctx context.Context, src *Source, rd *Renderer, sum *Summary) error {
	return dryRunWith(ctx, src, rd, sum, runtime.GOMAXPROCS(0))
}

// dryRunWith is dryRun with the given number of render workers.
func dryRunWith(ctx context.Context, src *Source, rd *Renderer, sum *Summary, workers int) error {
	wctx, stop := context.WithCancel(ctx)
	defer stop() // workers still rendering when the run ends early stop at their next row
	var first firstFailure
	first.seq.Store(math.MaxInt64)
	nbatch := workers * dryBatchesPerWorker
	free := make(chan *dryBatch, nbatch)
	for range nbatch {
		free <- &dryBatch{rows: make([]*Recipient, 0, dryBatchRows)}
	}
	jobs := make(chan *dryBatch, nbatch)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newDryWorker(rd)
			for b := range jobs {
				w.renderBatch(wctx, b, &first)
				clear(b.rows) // the recipients are garbage once rendered
				b.rows = b.rows[:0]
				free <- b
			}
		}()
	}
	// done is closed when every worker has finished.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var cur *dryBatch
	var seq int64 // the recipient's place in list order
	send := func() error {
		if cur == nil || len(cur.rows) == 0 {
			return nil
		}
		select {
		case jobs <- cur:
			cur = nil
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	res, err := src.Scan(ctx, func(rc *Recipient) error {
		if rc.GiveUp {
			return nil
		}
		seq++
		if first.failed() {
			return nil // the error is known: count the rest of the list, render no more
		}
		if cur == nil {
			select {
			case cur = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			cur.first = seq
		}
		cur.rows = append(cur.rows, rc)
		if len(cur.rows) == dryBatchRows {
			return send()
		}
		return nil
	})
	if err == nil {
		err = send()
	}
	close(jobs)
	sum.Total, sum.Skipped = res.Total, res.Skipped
	sum.Pending = res.ToSend + res.GaveUp
	sum.Waiting = res.NotDue
	if err != nil {
		return err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err() // interrupted
	}
	if ctx.Err() != nil {
		return ctx.Err() // interrupted while the last renders finished
	}
	if first.err != nil {
		return &ConfigError{Err: first.err}
	}
	return nil
}

// dryBatch is a run of recipients in list order, the first of them the first-th
// rendered recipient of the list.
type dryBatch struct {
	first int64
	rows  []*Recipient
}

// firstFailure is the render error of the earliest row in list order found so far.
type firstFailure struct {
	// seq is the failing row's place in list order (math.MaxInt64: none yet).
	seq atomic.Int64
	mu  sync.Mutex
	err error
}

func (f *firstFailure) failed() bool { return f.seq.Load() != math.MaxInt64 }

// needed reports whether the row at seq can still change the error: it comes before
// every failing row found so far.
func (f *firstFailure) needed(seq int64) bool { return seq < f.seq.Load() }

// record keeps err when its row comes before every failing row found so far.
func (f *firstFailure) record(seq int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq < f.seq.Load() {
		f.err = err
		f.seq.Store(seq)
	}
}

// dryWorker renders recipients for the dry run, with its own reused recipient data.
type dryWorker struct {
	rd   *Renderer
	data map[string]string
}

func newDryWorker(rd *Renderer) *dryWorker {
	return &dryWorker{rd: rd, data: make(map[string]string, len(rd.columns)+3)}
}

// renderBatch renders the rows of b that can still change the dry run's error.
func (w *dryWorker) renderBatch(ctx context.Context, b *dryBatch, first *firstFailure) {
	for i, rc := range b.rows {
		seq := b.first + int64(i)
		if ctx.Err() != nil || !first.needed(seq) {
			return
		}
		err := w.check(ctx, rc)
		var ae *AttachmentError // listed by Validate; sending leaves that recipient pending
		if err == nil || errors.As(err, &ae) || ctx.Err() != nil {
			continue
		}
		first.record(seq, err)
		return // the rest of the batch comes later in the list
	}
}

// check renders r as Renderer.Message does and fails exactly when it would, without
// writing the MIME message nobody reads in a dry run: the templates with r's data, the
// To name, r's own attachment, and what the builder checks per recipient (the address,
// the unsubscribe URL, a non-empty body). A recipient with a file of its own is built in
// full, since only the builder's encoding of the file can refuse it.
func (w *dryWorker) check(ctx context.Context, r *Recipient) error {
	rd := w.rd
	data := w.data
	unsub := rd.fill(data, r, r.Email)
	// The bodies are looked at, never kept: views of the render's buffers, no copies.
	rendered := false
	err := rd.set.RenderFunc(ctx, data, func(out templates.Rendered) error {
		rendered = true
		return w.checkRendered(r, out, unsub)
	})
	if err != nil && !rendered {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		return fmt.Errorf("line %d (%s): %w", r.Line, r.Email, err)
	}
	return err
}

// checkRendered is check's part after the render: a template error is named with r's
// line, and what the builder refuses is found.
func (w *dryWorker) checkRendered(r *Recipient, out templates.Rendered, unsub string) error {
	rd := w.rd
	path, err := rd.RecipientAttachment(r)
	if err != nil {
		return err
	}
	if path != "" {
		a, rerr := readAttachment(path)
		if rerr != nil {
			return &AttachmentError{Line: r.Line, Email: r.Email, Path: r.Fields[rd.attCol], Err: rerr}
		}
		out.Attachments = append(out.Attachments, a)
		_, err = rd.builder.Build(out, r.Email, out.ToName, unsub)
	} else {
		err = rd.builder.Check(out, r.Email, unsub)
	}
	if err != nil {
		return fmt.Errorf("line %d (%s): %w", r.Line, r.Email, err)
	}
	return nil
}
