package journal

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// maxBatch caps the operations one group commit carries.
const maxBatch = 512

// queueLen is how many operations may wait for the writer before Record blocks.
const queueLen = 4096

// op is one queued write: a hand-off (with the channel its answer goes to), an outcome,
// or a flush marker (only flush set).
type op struct {
	key     string
	done    chan error // non-nil for a hand-off or a flush
	flush   bool
	outcome Outcome
	isOut   bool
	// recorded, when set, is called with the outcome's result after its batch.
	recorded func(error)
}

// applyFunc writes ops in one transaction; results[i] receives the refusal of a
// hand-off, or the mismatch of an outcome (the row was not in the state the outcome
// expects, or not this run's). A returned error means nothing of the batch was committed.
type applyFunc func(ctx context.Context, ops []op, results []error) error

// writer is the group-commit writer of one run: the hand-offs and outcomes queued while
// a transaction commits go together into the next one, so many workers cost a few
// hundred commits per second rather than one per message.
type writer struct {
	campaign string
	apply    applyFunc

	mu     sync.RWMutex // guards closed against sends on ops
	closed bool
	ops    chan op

	finished chan struct{}
	commits  atomic.Int64

	errMu sync.Mutex
	err   error
}

func newWriter(campaign string, apply applyFunc) *writer {
	w := &writer{campaign: campaign, apply: apply, ops: make(chan op, queueLen), finished: make(chan struct{})}
	go w.loop()
	return w
}

func (w *writer) handoff(ctx context.Context, key string) func() error {
	fail := func(err error) func() error { return func() error { return err } }
	key = normalize(key)
	if err := w.Err(); err != nil {
		return fail(err)
	}
	done := make(chan error, 1)
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return fail(fmt.Errorf("journal: campaign %q: hand-off of %s after the run ended", w.campaign, key))
	}
	select {
	case w.ops <- op{key: key, done: done}:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return fail(ctx.Err())
	}
	return func() error { return <-done }
}

func (w *writer) record(o Outcome, done func(error)) {
	o.Key = normalize(o.Key)
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		err := fmt.Errorf("journal: campaign %q: outcome %s of %s recorded after the run ended", w.campaign, o.State, o.Key)
		w.setErr(err)
		if done != nil {
			done(err)
		}
		return
	}
	w.ops <- op{key: o.Key, outcome: o, isOut: true, recorded: done}
	w.mu.RUnlock()
}

// flush waits until everything queued before it is committed.
func (w *writer) flush(ctx context.Context) error {
	done := make(chan error, 1)
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return w.Err()
	}
	select {
	case w.ops <- op{flush: true, done: done}:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close commits everything queued and stops the goroutine; it is idempotent.
func (w *writer) close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ops)
	}
	w.mu.Unlock()
	<-w.finished
	return w.Err()
}

func (w *writer) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *writer) setErr(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
}

func (w *writer) loop() {
	defer close(w.finished)
	batch := make([]op, 0, maxBatch)
	for {
		first, ok := <-w.ops
		if !ok {
			return
		}
		batch = append(batch[:0], first)
		// Let workers that are ready to run queue their work into this batch.
		runtime.Gosched()
	fill:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-w.ops:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		w.write(batch)
		clear(batch)
	}
}

// write commits one batch and answers its hand-offs, outcomes and flushes after the
// commit.
func (w *writer) write(batch []op) {
	var real []op
	for _, o := range batch {
		if !o.flush {
			real = append(real, o)
		}
	}
	res := make([]error, len(real))
	var err error
	if len(real) > 0 {
		if sticky := w.Err(); sticky != nil {
			// A broken journal hands out no more recipients; outcomes are still tried.
			var outs []op
			var at []int
			for i, o := range real {
				if o.isOut {
					outs = append(outs, o)
					at = append(at, i)
				} else {
					res[i] = sticky
				}
			}
			if len(outs) > 0 {
				ores := make([]error, len(outs))
				oerr := w.apply(context.Background(), outs, ores)
				for j, i := range at {
					res[i] = ores[j]
					if oerr != nil {
						res[i] = oerr
					}
				}
			}
		} else if err = w.apply(context.Background(), real, res); err != nil {
			err = fmt.Errorf("journal: campaign %q: write %d operations: %w", w.campaign, len(real), err)
			w.setErr(err)
		} else {
			w.commits.Add(1)
			for i, o := range real {
				if o.isOut && res[i] != nil {
					w.setErr(res[i]) // an outcome without this run's hand-off
				}
			}
		}
	}
	for j, o := range real {
		answer := res[j]
		if err != nil {
			answer = err
		}
		if o.recorded != nil {
			o.recorded(answer)
		}
		if o.done != nil {
			o.done <- answer
		}
	}
	for _, o := range batch {
		if o.flush {
			o.done <- w.Err()
		}
	}
}
