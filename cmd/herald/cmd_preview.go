package main

import (
	"bytes"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/providers"
)

type previewOptions struct {
	limit int
	row   int
	out   string
	store string
}

func (a *app) previewCmd() *cobra.Command {
	var o previewOptions
	c := &cobra.Command{
		Use:   "preview CAMPAIGN.yaml",
		Short: "Render messages without sending: to stdout, or as .eml files and an index.html",
		Long: `Renders the first --limit messages (default 3) as complete RFC 5322 messages.
One message is printed as it is; several are printed as an mbox (each preceded by a
"From " line, body lines starting with "From " quoted as ">From "), which mail readers open.
With --out DIR, writes DIR/0001.eml … and DIR/index.html to look at in a browser.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if o.limit < 0 || o.row < 0 {
				return &usageError{err: fmt.Errorf("--limit and --row must be 0 or more")}
			}
			c, err := a.load(argv[0])
			if err != nil {
				return err
			}
			msgs, err := campaign.Preview(cmd.Context(), c, campaign.PreviewOptions{
				Limit: o.limit, Row: o.row, Store: campaign.StorePath(c, o.store, a.io.Getenv),
			}, a.env())
			if err != nil {
				return err
			}
			if o.out != "" {
				return a.writePreview(o.out, c, msgs)
			}
			a.printPreview(msgs)
			return nil
		},
	}
	c.Flags().IntVar(&o.limit, "limit", 3, "number of messages")
	c.Flags().IntVar(&o.row, "row", 0, "render only the recipient on this data row (1 = first row after the header)")
	c.Flags().StringVar(&o.out, "out", "", "write DIR/0001.eml … and DIR/index.html instead of printing")
	c.Flags().StringVar(&o.store, "store", "", "journal file (read only if it exists)")
	return c
}

func (a *app) printPreview(msgs []*providers.Message) {
	if len(msgs) == 1 {
		a.io.Stdout.Write(msgs[0].Raw)
		return
	}
	for _, m := range msgs {
		fmt.Fprintf(a.io.Stdout, "From %s %s\n", m.FromAddress, a.io.Now().UTC().Format(time.ANSIC))
		for _, line := range strings.SplitAfter(strings.ReplaceAll(string(m.Raw), "\r\n", "\n"), "\n") {
			if strings.HasPrefix(strings.TrimLeft(line, ">"), "From ") {
				line = ">" + line
			}
			fmt.Fprint(a.io.Stdout, line)
		}
		fmt.Fprintln(a.io.Stdout)
	}
}

var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{ .Campaign }}: preview</title>
<style>body{font-family:sans-serif;margin:2em}article{border:1px solid #ccc;margin:1em 0;padding:1em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}
iframe{width:100%;height:480px;border:1px solid #eee}pre{white-space:pre-wrap;background:#f7f7f7;padding:1em}</style>
</head><body><h1>{{ .Campaign }}: {{ len .Messages }} message(s)</h1>
{{ range .Messages }}<article><h2><a href="{{ .File }}">{{ .File }}</a></h2>
<dl><dt>To</dt><dd>{{ .To }}</dd><dt>Subject</dt><dd>{{ .Subject }}</dd><dt>Message-ID</dt><dd>{{ .MessageID }}</dd></dl>
{{ if .HTML }}<iframe sandbox srcdoc="{{ .HTML }}"></iframe>{{ end }}
{{ if .Text }}<pre>{{ .Text }}</pre>{{ end }}</article>
{{ end }}</body></html>
`))

func (a *app) writePreview(dir string, c *campaign.Campaign, msgs []*providers.Message) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	type item struct{ File, To, Subject, MessageID, HTML, Text string }
	data := struct {
		Campaign string
		Messages []item
	}{Campaign: c.Name}
	for i, m := range msgs {
		name := fmt.Sprintf("%04d.eml", i+1)
		if err := os.WriteFile(filepath.Join(dir, name), m.Raw, 0o644); err != nil {
			return err
		}
		to := m.To
		if m.ToName != "" {
			to = fmt.Sprintf("%s <%s>", m.ToName, m.To)
		}
		data.Messages = append(data.Messages, item{File: name, To: to, Subject: m.Subject, MessageID: m.MessageID, HTML: m.HTML, Text: m.Text})
	}
	var b bytes.Buffer
	if err := indexTmpl.Execute(&b, data); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.html"), b.Bytes(), 0o644); err != nil {
		return err
	}
	a.infof("wrote %d message(s) and %s", len(msgs), filepath.Join(dir, "index.html"))
	return nil
}
