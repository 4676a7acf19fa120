package templates

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// A runaway template is stopped by the output bound, naming the template (issue 13
// item 10): a subject over MaxHeaderOutput, a body over MaxBodyOutput.
func TestRenderBoundsOutput(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		src        Sources
	}{
		{"subject", "subject", Sources{Subject: "{{ range 300000000 }}x{{ end }}", Text: "{{ .UnsubscribeURL }}"}},
		{"to_name", "to_name", Sources{Subject: "s", ToName: "{{ range 300000000 }}x{{ end }}", Text: "{{ .UnsubscribeURL }}"}},
		{"text", "t.txt", Sources{Subject: "s", Text: "{{ .UnsubscribeURL }}{{ range 300000000 }}xxxxxxxx{{ end }}", TextFile: "t.txt"}},
		{"html", "t.html", Sources{Subject: "s", HTML: "{{ .UnsubscribeURL }}{{ range 300000000 }}<p>x</p>{{ end }}", HTMLFile: "t.html"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Parse(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			_, err = set.Render(map[string]string{"UnsubscribeURL": "https://example.com/u"})
			var te *Error
			if !errors.As(err, &te) || te.File != tc.file || !strings.Contains(err.Error(), "renders more than") {
				t.Fatalf("Render = %v, want an *Error of %s about its size", err, tc.file)
			}
		})
	}
	// A subject just under the bound is fine.
	set, err := Parse(Sources{Subject: strings.Repeat("a", MaxHeaderOutput-100), Text: "{{ .UnsubscribeURL }}"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Render(map[string]string{"UnsubscribeURL": "u"}); err != nil {
		t.Fatalf("subject under the bound: %v", err)
	}
}

// A long render stops when its context is cancelled, with the context's error.
func TestRenderContextStopsLongRender(t *testing.T) {
	set, err := Parse(Sources{Subject: "s", Text: "{{ .UnsubscribeURL }}{{ range 300000000 }}{{ if . }}{{ end }}x{{ end }}", TextFile: "t.txt"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	_, err = set.RenderContext(ctx, map[string]string{"UnsubscribeURL": "u"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("RenderContext = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to stop", d)
	}
}
