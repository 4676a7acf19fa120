package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign/dnscheck"
)

func (a *app) dnsCmd() *cobra.Command {
	var check, asJSON bool
	c := &cobra.Command{
		Use:   "dns CAMPAIGN.yaml",
		Short: "Print the DNS records the campaign's mail needs (DKIM, SPF, DMARC); --check looks them up",
		Long: `Prints the TXT records to publish: one DKIM record per key of the smtp provider's dkim:
block, an SPF record for the envelope sender's domain (a starting point: merge it with what
the domain has), and a DMARC policy that only reports (p=none) for From's domain.

With --check, looks each record up and says which are missing or wrong (exit 1 if any);
HERALD_DNS_SERVER=HOST:PORT asks that server instead of the system's resolver (for
example the domain's authoritative server, before the change has propagated).`,
		Example: `  herald dns news.yaml
  herald dns news.yaml --check
  HERALD_DNS_SERVER=ns1.acme.example:53 herald dns news.yaml --check --json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.load(argv[0])
			if err != nil {
				return err
			}
			recs, err := dnscheck.Records(c)
			if err != nil {
				return err
			}
			if !check {
				if asJSON {
					b, _ := json.Marshal(recs)
					fmt.Fprintf(a.io.Stdout, "%s\n", b)
					return nil
				}
				for _, r := range recs {
					fmt.Fprintf(a.io.Stdout, "; %s: %s\n%s. IN TXT %s\n\n", r.Kind, r.Note, r.Name, quoteTXT(r.Value))
				}
				return nil
			}
			res, err := dnscheck.Check(cmd.Context(), a.resolver(), recs)
			if err != nil {
				return err
			}
			bad := 0
			for _, r := range res {
				if r.Status != dnscheck.OK {
					bad++
				}
			}
			if asJSON {
				b, _ := json.Marshal(res)
				fmt.Fprintf(a.io.Stdout, "%s\n", b)
			} else {
				for _, r := range res {
					fmt.Fprintf(a.io.Stdout, "%-7s %-5s %s", r.Status, r.Kind, r.Name)
					if r.Detail != "" {
						fmt.Fprintf(a.io.Stdout, ": %s", r.Detail)
					}
					fmt.Fprintln(a.io.Stdout)
					if r.Status != dnscheck.OK {
						fmt.Fprintf(a.io.Stdout, "        publish: %s. IN TXT %s\n", r.Name, quoteTXT(r.Value))
					}
				}
			}
			if bad > 0 {
				if !asJSON {
					a.infof("%d of %d record(s) missing or wrong", bad, len(res))
				}
				return &exitError{code: exitFailed}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&check, "check", false, "look the records up and say which are missing or wrong (exit 1 if any)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the records (or the check's results) as JSON")
	return c
}

// resolver is the system's, or one that asks HERALD_DNS_SERVER.
func (a *app) resolver() *net.Resolver {
	server := a.io.Getenv("HERALD_DNS_SERVER")
	if server == "" {
		return net.DefaultResolver
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
}

// quoteTXT writes a TXT value as zone-file strings of at most 255 bytes each.
func quoteTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	if len(parts) == 1 {
		return parts[0]
	}
	return "( " + strings.Join(parts, " ") + " )"
}
