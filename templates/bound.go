package templates

import (
	"bytes"
	"context"
	"fmt"
)

// Output bounds of one render: a header template (subject, to_name) that renders more
// than MaxHeaderOutput bytes, or a body part more than MaxBodyOutput bytes, is an error.
// They stop a runaway template (a `range` over a huge number) before it eats the memory.
const (
	MaxHeaderOutput = 8 << 10
	MaxBodyOutput   = 8 << 20
)

// boundedWriter is the buffer a template renders into: it refuses to grow past max and
// stops the render when ctx is done (text/template returns a writer's error at once).
type boundedWriter struct {
	ctx    context.Context
	buf    *bytes.Buffer
	max    int
	writes int
}

// errTooLong is the writer's refusal; Render turns it into an *Error naming the file.
type errTooLong struct{ max int }

func (e errTooLong) Error() string {
	if e.max >= 1<<20 {
		return fmt.Sprintf("renders more than %d MiB: a runaway template?", e.max>>20)
	}
	return fmt.Sprintf("renders more than %d KiB: a runaway template?", e.max>>10)
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.max {
		return 0, errTooLong{w.max}
	}
	// Checking the context costs a lock; every 64th write is often enough.
	if w.writes++; w.writes%64 == 0 {
		if err := w.ctx.Err(); err != nil {
			return 0, err
		}
	}
	return w.buf.Write(p)
}
