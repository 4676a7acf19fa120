package templates

import (
	"fmt"
	"strings"
	"testing"
)

// benchHTML is a personalised HTML newsletter of about 10 KB.
func benchSources() Sources {
	var b strings.Builder
	b.WriteString(`<html><head><style>body{font-family:sans-serif}</style></head><body>
<h1>Hello {{ .first_name }}, our November picks</h1>
`)
	for i := 0; b.Len() < 9800; i++ {
		fmt.Fprintf(&b, `<h2>Pick %d for {{ .city }}</h2>
<p>We thought you, {{ .first_name }}, might enjoy this: a carefully chosen item with a long description that goes on for a while so that the message looks like a real one &amp; wraps.</p>
<p><a href="https://acme.example/picks/%d?campaign={{ .Campaign }}">See pick %d</a></p>
`, i, i, i)
	}
	b.WriteString(`<p>You get this because {{ .Email }} subscribed. <a href="{{ .UnsubscribeURL }}">Unsubscribe</a></p></body></html>`)
	return Sources{Subject: "{{ .first_name }}, our November picks", HTML: b.String(), HTMLFile: "template.html"}
}

func benchData() map[string]string {
	return recipient(map[string]string{"first_name": "Zoë", "city": "Berlin", "name": "Zoë Dvořák"})
}

// BenchmarkRender renders the ~10 KB HTML body, the subject and the derived text part.
func BenchmarkRender(b *testing.B) {
	s, err := Parse(benchSources())
	if err != nil {
		b.Fatal(err)
	}
	data := benchData()
	r, err := s.Render(data)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(r.HTML) + len(r.Text)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Render(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuild builds the MIME message (text + html alternative) of one rendered
// ~10 KB HTML message.
func BenchmarkBuild(b *testing.B) {
	s, err := Parse(benchSources())
	if err != nil {
		b.Fatal(err)
	}
	r, err := s.Render(benchData())
	if err != nil {
		b.Fatal(err)
	}
	bld, err := NewBuilder(fixedOptions())
	if err != nil {
		b.Fatal(err)
	}
	m, err := bld.Build(r, "zoe@example.com", r.ToName, unsubURL)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(m.Raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := bld.Build(r, "zoe@example.com", r.ToName, unsubURL); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderBuildParallel is one message end to end on every CPU, as the workers
// run it.
func BenchmarkRenderBuildParallel(b *testing.B) {
	s, err := Parse(benchSources())
	if err != nil {
		b.Fatal(err)
	}
	bld, err := NewBuilder(fixedOptions())
	if err != nil {
		b.Fatal(err)
	}
	data := benchData()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := s.Render(data)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := bld.Build(r, "zoe@example.com", r.ToName, unsubURL); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
