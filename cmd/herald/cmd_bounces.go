package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/bounces"
	"github.com/heraldmail/herald/campaign/journal"
	"github.com/heraldmail/herald/campaign/unsubscribe"
)

// bouncesOptions are the flags of `herald bounces`.
type bouncesOptions struct {
	campaignFile, store                 string
	imapURL, pop3URL, maildir, mboxFile string
	caFile, moveTo                      string
	asJSON                              bool
}

func (a *app) bouncesCmd() *cobra.Command {
	var o bouncesOptions
	c := &cobra.Command{
		Use:   "bounces [CAMPAIGN.yaml] (--imap URL | --pop3 URL | --maildir DIR | --mbox FILE)",
		Short: "Read a bounce mailbox: hard bounces become failed and suppressed, complaints suppressed",
		Long: `Reads delivery status notifications (RFC 3464), complaint reports (ARF, RFC 5965) and
common non-standard bounces from a mailbox, matches each to the campaign and recipient it
is about (by the unsubscribe token in the returned message, its Message-ID, or the
address), marks hard-bounced recipients failed with the report's status code and
suppresses them and complainers. Soft bounces change nothing; other mail is left alone and
nothing is deleted. A second run over the same mail changes nothing. With --move-to the
reports that were about herald's recipients are moved to that folder; the rest stays.

The store is the campaign file's, or --store. IMAP and POP3 passwords come from
HERALD_BOUNCES_PASSWORD (or the URL). Exit status: 0 when the mailbox was read (also when
nothing was found), 1 when it could not be read, 2 for bad usage.`,
		Example: `  HERALD_BOUNCES_PASSWORD=… herald bounces news.yaml --imap imaps://bounces@mail.acme.example/INBOX
  herald bounces --store herald.db --maildir /var/mail/bounces/Maildir --json
  herald bounces news.yaml --mbox /var/mail/bounces
  herald bounces news.yaml --pop3 pop3s://bounces@mail.acme.example`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if len(argv) == 1 {
				o.campaignFile = argv[0]
			}
			return a.runBounces(cmd.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.store, "store", "", "store file (default: the campaign file's store)")
	f.StringVar(&o.imapURL, "imap", "", "IMAP mailbox: imaps://USER@HOST[:PORT]/FOLDER (imap:// uses STARTTLS; plain only on loopback)")
	f.StringVar(&o.pop3URL, "pop3", "", "POP3 mailbox: pop3s://USER@HOST[:PORT] (pop3:// uses STLS; plain only on loopback)")
	f.StringVar(&o.maildir, "maildir", "", "Maildir folder (with new/ and cur/)")
	f.StringVar(&o.mboxFile, "mbox", "", "mbox file")
	f.StringVar(&o.moveTo, "move-to", "", "move the messages processed to this folder (--imap: an IMAP folder; --maildir: a Maildir++ subfolder DIR/.FOLDER)")
	f.StringVar(&o.caFile, "ca-file", "", "PEM file of extra roots to trust for the IMAP/POP3 server's certificate")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object with the counts and the addresses acted on")
	return c
}

func (a *app) runBounces(ctx context.Context, o bouncesOptions) error {
	mb, err := a.bounceMailbox(o)
	if err != nil {
		return err
	}
	var opts bounces.Options
	storePath := o.store
	if o.campaignFile != "" {
		c, err := a.load(o.campaignFile)
		if err != nil {
			return err
		}
		storePath = campaign.StorePath(c, o.store, a.io.Getenv)
		opts.Campaign = c.Name
	} else if storePath == "" {
		storePath = a.io.Getenv("HERALD_STORE")
	}
	if storePath == "" {
		return &usageError{err: errors.New("bounces: name a campaign file or --store")}
	}
	if _, err := os.Stat(storePath); err != nil && !journal.IsURL(storePath) {
		return &usageError{err: fmt.Errorf("bounces: store %s: %w (nothing was sent from it)", storePath, err)}
	}
	st, err := campaign.OpenStore(ctx, storePath, journal.Options{Now: a.io.Now})
	if err != nil {
		return err
	}
	defer st.Close()
	secret, err := campaign.Secret(ctx, st, a.io.Getenv)
	if err != nil {
		return err
	}
	if opts.Tokens, err = unsubscribe.NewSigner(secret); err != nil {
		return err
	}
	j, ok := st.(bounces.Journal)
	if !ok {
		return fmt.Errorf("bounces: a %s store cannot record bounces", st.Kind())
	}
	res, err := bounces.Process(ctx, mb, j, opts)
	if err != nil {
		// What was recorded before the failure stays recorded: a re-run is idempotent.
		return fmt.Errorf("bounces: %w", err)
	}
	if o.asJSON {
		b, _ := json.Marshal(struct {
			Mailbox string `json:"mailbox"`
			*bounces.Result
		}{mb.String(), res})
		fmt.Fprintf(a.io.Stdout, "%s\n", b)
		return nil
	}
	w := a.io.Stdout
	fmt.Fprintf(w, "read %d message(s) from %s\n", res.Messages, mb)
	fmt.Fprintf(w, "hard bounces: %d (%d newly failed and suppressed)\n", res.HardBounces, len(res.Failed))
	fmt.Fprintf(w, "complaints: %d (%d newly suppressed)\n", res.Complaints, len(res.Suppressed))
	fmt.Fprintf(w, "soft bounces: %d, other permanent failures: %d (no change)\n", res.SoftBounces, res.Rejected)
	fmt.Fprintf(w, "already recorded: %d; matching no recipient: %d; not bounces: %d\n", res.AlreadyRecorded, res.Unmatched, res.Other)
	for _, e := range res.Failed {
		fmt.Fprintf(w, "failed\t%s\n", e)
	}
	for _, e := range res.Suppressed {
		fmt.Fprintf(w, "suppressed\t%s\n", e)
	}
	return nil
}

// bounceMailbox builds the one mailbox the flags name.
func (a *app) bounceMailbox(o bouncesOptions) (bounces.Mailbox, error) {
	var set []string
	for name, v := range map[string]string{"--imap": o.imapURL, "--pop3": o.pop3URL, "--maildir": o.maildir, "--mbox": o.mboxFile} {
		if v != "" {
			set = append(set, name)
		}
	}
	if len(set) != 1 {
		return nil, &usageError{err: fmt.Errorf("bounces: name exactly one mailbox (--imap, --pop3, --maildir or --mbox), not %d", len(set))}
	}
	if o.moveTo != "" && o.imapURL == "" && o.maildir == "" {
		return nil, &usageError{err: errors.New("bounces: --move-to works with --imap and --maildir")}
	}
	if o.maildir != "" && strings.ContainsAny(o.moveTo, "/.") {
		return nil, &usageError{err: fmt.Errorf("bounces: --move-to %q: a Maildir subfolder name has no slash or dot", o.moveTo)}
	}
	switch {
	case o.maildir != "":
		return bounces.Maildir{Dir: o.maildir, MoveTo: o.moveTo}, nil
	case o.mboxFile != "":
		return bounces.Mbox(o.mboxFile), nil
	}
	family, raw := "imap", o.imapURL
	if o.pop3URL != "" {
		family, raw = "pop3", o.pop3URL
	}
	r, err := bounces.ParseRemote(raw, family, a.io.Getenv("HERALD_BOUNCES_PASSWORD"))
	if err != nil {
		return nil, &usageError{err: fmt.Errorf("bounces: %w", err)}
	}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, &usageError{err: fmt.Errorf("bounces: --ca-file: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &usageError{err: fmt.Errorf("bounces: --ca-file %s holds no PEM certificate", o.caFile)}
		}
		r.RootCAs = pool
	}
	if family == "pop3" {
		return bounces.POP3{Remote: r}, nil
	}
	return bounces.IMAP{Remote: r, MoveTo: o.moveTo}, nil
}
