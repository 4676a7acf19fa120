package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// docsOptions are the arguments of `herald docs man|markdown DIR`.
type docsOptions struct {
	format string // "man" or "markdown"
	dir    string
}

func (a *app) docsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "docs",
		Short: "Generate herald's manual pages or Markdown reference",
		Long: `Generate the reference of every herald command, from the commands themselves: manual
pages (section 1) with 'herald docs man DIR', or one Markdown file per command with
'herald docs markdown DIR'. DIR is created when missing; files in it are overwritten.

EXIT STATUS
  0  the files were written
  1  DIR could not be written
  2  bad usage`,
		Example: `  # Manual pages, then read one
  herald docs man ./man && man ./man/herald-send.1

  # The Markdown reference kept in the repository
  herald docs markdown docs/reference`,
		Args: args(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return &usageError{err: fmt.Errorf("docs: name a format: man or markdown")}
		},
	}
	for _, format := range []string{"man", "markdown"} {
		c.AddCommand(&cobra.Command{
			Use:   format + " DIR",
			Short: map[string]string{"man": "Write manual pages to DIR", "markdown": "Write the Markdown reference to DIR"}[format],
			Example: map[string]string{
				"man":      "  herald docs man /usr/local/share/man/man1",
				"markdown": "  herald docs markdown docs/reference",
			}[format],
			Args: args(cobra.ExactArgs(1)),
			RunE: func(cmd *cobra.Command, argv []string) error {
				return runDocs(cmd.Root(), docsOptions{format: format, dir: argv[0]})
			},
		})
	}
	return c
}

// runDocs writes the reference of root's commands. The output depends on nothing but the
// commands (no date, no version), so that the reference kept in the repository can be
// checked against the code.
func runDocs(root *cobra.Command, o docsOptions) error {
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	root.DisableAutoGenTag = true
	switch o.format {
	case "man":
		// A fixed date keeps the pages reproducible; man shows it in the footer.
		day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		return doc.GenManTree(root, &doc.GenManHeader{
			Title:   "HERALD",
			Section: "1",
			Source:  "herald",
			Manual:  "herald manual",
			Date:    &day,
		}, o.dir)
	case "markdown":
		return doc.GenMarkdownTree(root, o.dir)
	}
	return &usageError{err: fmt.Errorf("docs: unknown format %q", o.format)}
}
