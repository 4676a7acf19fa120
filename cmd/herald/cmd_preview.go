package main

import (
	"fmt"
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
	serve bool
	addr  string
}

func (a *app) previewCmd() *cobra.Command {
	var o previewOptions
	c := &cobra.Command{
		Use:   "preview CAMPAIGN.yaml",
		Short: "Render messages without sending: to stdout, or as .eml files and an index.html",
		Long: `Renders the first --limit messages (default 3) as complete RFC 5322 messages.
One message is printed as it is; several are printed as an mbox (each preceded by a
"From " line, body lines starting with "From " quoted as ">From "), which mail readers open.
With --out DIR, writes DIR/0001.eml … and DIR/index.html to look at in a browser: per
message the headers that matter, the size (warned over Gmail's 102 KB), the HTML in a
frame with desktop and mobile (375 px) widths, the text part, the files and the links.
With --serve, serves that page on --addr and reloads it when the campaign, a template,
the list or a file changes: edit the newsletter with the browser beside the editor.

  herald preview news/campaign.yaml --out preview/
  herald preview news/campaign.yaml --serve --addr 127.0.0.1:8081`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if o.limit < 0 || o.row < 0 {
				return &usageError{err: fmt.Errorf("--limit and --row must be 0 or more")}
			}
			render := func() (*campaign.Campaign, []*providers.Message, error) {
				c, err := a.load(argv[0])
				if err != nil {
					return nil, nil, err
				}
				msgs, err := campaign.Preview(cmd.Context(), c, campaign.PreviewOptions{
					Limit: o.limit, Row: o.row, Store: campaign.StorePath(c, o.store, a.io.Getenv),
				}, a.env())
				return c, msgs, err
			}
			if o.serve {
				if _, _, err := render(); err != nil {
					return err
				}
				return a.servePreview(cmd.Context(), o.addr, argv[0], render)
			}
			c, msgs, err := render()
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
	c.Flags().BoolVar(&o.serve, "serve", false, "serve the preview page and reload it when a file of the campaign changes")
	c.Flags().StringVar(&o.addr, "addr", "127.0.0.1:8081", "with --serve: the address to listen on")
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
