package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// commandHelp is what `--help`, the manual pages and the Markdown reference show beyond
// a command's flags: what it reads and writes, its exit status (restic's "EXIT STATUS"
// section is the model) and examples.
type commandHelp struct {
	long    string // what the command reads and writes; "" keeps the command's own Long
	exit    string // the EXIT STATUS lines
	example string
}

// exit statuses shared by several commands (PRODUCT.md "Exit codes and output").
const (
	exitSend = `  0    the run did what it was asked and nothing in it failed (with --limit the rest
       stays pending; earlier runs' failures do not count)
  1    this run left failed, deferred or unknown recipients, or stopped on a fatal
       provider error, a pause or a store that could not be used
  2    bad usage, campaign file, list or template: nothing was sent
  130  interrupted (Ctrl-C, SIGTERM) after recording the sends in flight; run again to
       resume`
	exitSimple = `  0    done
  1    the store or a file could not be read or written
  2    bad usage`
)

// helpTexts returns the help of every command, by command path without "herald ".
func helpTexts() map[string]commandHelp {
	return map[string]commandHelp{
		"": {
			exit: `  0    success
  1    the command ran and something in it failed (see each command)
  2    bad usage, campaign file, list or template
  130  interrupted; run the same command again to resume`,
			example: `  herald init news && herald send news/campaign.yaml --dry-run
  herald send news/campaign.yaml --yes --json --log-format json --metrics-addr 127.0.0.1:9464
  herald status news/campaign.yaml --failed
  herald --version`,
		},
		"init": {
			long: `Create DIR with a working campaign: campaign.yaml, template.html, template.txt and a
subscribers.csv of ten example rows, sending with the file provider into DIR/outbox.
Nothing in DIR is overwritten.`,
			exit: `  0    DIR was created
  1    DIR could not be written
  2    bad usage, or a file of the campaign already exists in DIR`,
			example: `  herald init news
  herald validate news/campaign.yaml && herald send news/campaign.yaml --dry-run`,
		},
		"validate": {
			long: `Check a campaign without sending anything: the campaign file, the provider's settings
and that its secret environment variables are set (without connecting), every row of the
list, and that every recipient renders. Invalid and duplicate rows are listed as
warnings. Reads the campaign file, its templates, list and suppression files; writes
nothing.`,
			exit: `  0    the campaign can be sent (warnings about rows may have been printed)
  1    with --spam: the sample message scored at or above SpamAssassin's threshold
  2    the campaign file, provider settings, list or a template is wrong (with
       --strict: also a deliverability warning)`,
			example: `  herald validate news/campaign.yaml
  SMTP_PASSWORD=… herald validate news/campaign.yaml --strict
  herald validate news/campaign.yaml --spam`,
		},
		"preview": {
			exit: `  0    the messages were written
  1    --out could not be written
  2    bad usage, campaign file, list or template`,
			example: `  # The first message, as a mail reader would receive it
  herald preview news/campaign.yaml --limit 1

  # Ten messages as .eml files and an index.html to open in a browser
  herald preview news/campaign.yaml --limit 10 --out preview/

  # The 42nd data row of the list
  herald preview news/campaign.yaml --row 42`,
		},
		"send": {
			long: `Send a campaign: render one message per recipient of the list and hand it to the
campaign's provider at the campaign's rate, recording every outcome in the store (the
journal) before and after the hand-over, so that a re-run sends only what is not yet
sent, failed or unknown, and nobody is mailed twice.

On a terminal it asks once for confirmation (count, provider, rate, ETA) unless --yes;
without a terminal on stdin it does not ask. Progress goes to stderr (a bar on a
terminal, a line every few seconds otherwise, or log records with --log-format); the
summary goes to stderr, or to stdout as one JSON object with --json.

With --metrics-addr HOST:PORT it serves Prometheus metrics at /metrics while it runs
(herald_messages_total{outcome=…} counts the outcomes of the summary).`,
			exit: exitSend,
			example: `  # Count and render everything, send nothing
  herald send news/campaign.yaml --dry-run

  # From cron: no question, a JSON summary on stdout, JSON logs on stderr
  herald send news/campaign.yaml --yes --json --log-format json

  # The first 100 at a lower rate; the next run goes on from there
  herald send news/campaign.yaml --limit 100 --rate 2/s

  # With Prometheus metrics while it runs
  herald send news/campaign.yaml --yes --metrics-addr 127.0.0.1:9464`,
		},
		"status": {
			long: `Print the count of recipients of the campaign in each state of the store (pending,
sending, sent, deferred, failed, unknown), the skipped rows of the list and the last
run; --failed lists the failed recipients with the provider's reason. Reads the store
and the list; writes nothing.`,
			exit: `  0    the counts were printed
  1    the store could not be read
  2    bad usage or campaign file`,
			example: `  herald status news/campaign.yaml
  herald status news/campaign.yaml --json
  herald status news/campaign.yaml --failed`,
		},
		"suppress": {
			long: `The suppression list of a store, shared by all its campaigns: addresses that are never
mailed (unsubscribed, hard-bounced, complained). The store is --store, else the
campaign's with --campaign, else herald.db in the current folder.`,
			exit: exitSimple,
			example: `  herald suppress add jane@example.org
  herald suppress import bounced.csv --store herald.db
  herald suppress list`,
		},
		"suppress add": {
			exit:    exitSimple,
			example: `  herald suppress add jane@example.org john@example.org`,
		},
		"suppress remove": {
			exit:    exitSimple,
			example: `  herald suppress remove jane@example.org`,
		},
		"suppress import": {
			exit: `  0    the file's addresses were added
  1    the store could not be written
  2    bad usage, or FILE cannot be read or is malformed (named with its line)`,
			example: `  # A CSV with an email (or "Email Address") column, or one address per line
  herald suppress import unsubscribed.csv`,
		},
		"suppress list": {
			exit:    exitSimple,
			example: `  herald suppress list > suppressed.txt`,
		},
		"schedule": {
			exit: `  0    stopped by SIGTERM or SIGINT after the runs in progress recorded their sends
  1    the store could not be used
  2    bad usage, or a campaign file or its schedule: is wrong`,
			example: `  # In the foreground under systemd, with metrics and JSON logs
  herald schedule weekly.yaml hourly.yaml --metrics-addr 127.0.0.1:9464 --log-format json`,
		},
		"serve": {
			long: `Serve HTTP for one-click unsubscribe (RFC 8058: GET shows a confirmation page, POST
unsubscribes) under any path prefix, and the SendGrid, Mandrill and SES (SNS) event
webhooks, each authenticated with the key from the environment. Unsubscribes, hard
bounces and complaints are added to the store's suppression list. Runs until SIGTERM or
SIGINT.`,
			exit: `  0    stopped by SIGTERM or SIGINT
  1    the store could not be used or the address could not be listened on
  2    bad usage`,
			example: `  herald serve --addr 127.0.0.1:8080 --store /var/lib/herald/herald.db
  herald serve --campaign news/campaign.yaml --metrics-addr 127.0.0.1:9464`,
		},
		"store": {
			exit:    exitSimple,
			example: `  herald store copy herald.db postgres://herald@db.internal/herald`,
		},
		"store copy": {
			exit: `  0    everything was copied
  1    a store could not be read or written (nothing was copied)
  2    bad usage, a missing FROM file or a malformed URL`,
			example: `  herald store copy herald.db postgres://herald@db.internal/herald`,
		},
		"bounces": {
			exit: `  0    the mailbox was read (also when nothing was found)
  1    the mailbox or the store could not be read
  2    bad usage`,
		},
		"dns": {
			exit: `  0    the records were printed (with --check: all of them are published)
  1    with --check: a record is missing or wrong, or could not be looked up
  2    bad usage or campaign file`,
		},
		"version": {
			exit:    `  0    always`,
			example: `  herald version`,
		},
		"docs": {exit: `  0    the files were written
  1    DIR could not be written
  2    bad usage`},
		"docs man":      {exit: exitSimple},
		"docs markdown": {exit: exitSimple},
		"completion": {
			exit: `  0    the script was printed
  2    no shell, or an unknown one`,
			example: `  herald completion bash > /etc/bash_completion.d/herald
  herald completion zsh > "${fpath[1]}/_herald"
  herald completion fish > ~/.config/fish/completions/herald.fish`,
		},
		"completion bash":       {exit: exitCompletion, example: `  source <(herald completion bash)`},
		"completion zsh":        {exit: exitCompletion, example: `  herald completion zsh > "${fpath[1]}/_herald"`},
		"completion fish":       {exit: exitCompletion, example: `  herald completion fish | source`},
		"completion powershell": {exit: exitCompletion, example: `  herald completion powershell | Out-String | Invoke-Expression`},
	}
}

const exitCompletion = `  0    the script was printed`

// applyHelp gives every command under root its help: the Long text (the command's own,
// or the one here) followed by its EXIT STATUS, and its examples when it has none.
func applyHelp(root *cobra.Command) {
	texts := helpTexts()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), root.Name()), " ")
		h, ok := texts[path]
		if ok {
			long := c.Long
			if long == "" {
				long = h.long
			}
			if long == "" {
				long = c.Short
			}
			if h.exit != "" && !strings.Contains(long, "EXIT STATUS") {
				long = strings.TrimRight(long, "\n") + "\n\nEXIT STATUS\n" + h.exit
			}
			c.Long = long
			if c.Example == "" {
				c.Example = h.example
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completeCampaignFiles completes the CAMPAIGN.yaml arguments of the commands that take
// campaign files, and leaves other commands' completion as it is.
func completeCampaignFiles(root *cobra.Command) {
	yaml := func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
	}
	for _, c := range root.Commands() {
		if c.ValidArgsFunction == nil && strings.Contains(c.Use, "CAMPAIGN.yaml") {
			c.ValidArgsFunction = yaml
		}
		if f := c.Flags().Lookup("campaign"); f != nil {
			_ = c.RegisterFlagCompletionFunc("campaign", yaml)
		}
	}
}
