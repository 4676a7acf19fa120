package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldmail/herald/campaign"
	"github.com/heraldmail/herald/campaign/serve"
	"github.com/heraldmail/herald/providers"
)

func (a *app) serveCmd() *cobra.Command {
	var (
		sf        storeFlags
		addr      string
		publicURL string
		limits    = serve.DefaultLimits()
	)
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve one-click unsubscribe (RFC 8058) and provider event webhooks over HTTP, feeding the suppression list",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := a.openStore(ctx, sf)
			if err != nil {
				return err
			}
			defer st.Close()
			secret, err := campaign.Secret(ctx, st, a.io.Getenv)
			if err != nil {
				return err
			}
			h, err := serve.New(a.countSuppressions(st), secret, a.io.Now)
			if err != nil {
				return err
			}
			if publicURL == "" {
				publicURL = a.io.Getenv(serve.EnvPublicURL)
			}
			err = h.EnableWebhooks(serve.WebhookConfig{
				SendGridKey:  a.io.Getenv(serve.EnvSendGridKey),
				MandrillKey:  providers.NewSecret(a.io.Getenv(serve.EnvMandrillKey)),
				PublicURL:    publicURL,
				SNSTopicARNs: strings.Split(a.io.Getenv(serve.EnvSNSTopicARN), ","),
				Logf:         a.infof,
			})
			if err != nil {
				return &usageError{err: err}
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return &usageError{err: fmt.Errorf("serve: %w", err)}
			}
			for _, d := range []struct {
				name string
				v    time.Duration
			}{{"--header-timeout", limits.ReadHeaderTimeout}, {"--read-timeout", limits.ReadTimeout},
				{"--write-timeout", limits.WriteTimeout}, {"--idle-timeout", limits.IdleTimeout}} {
				if d.v <= 0 {
					return &usageError{err: fmt.Errorf("%s %s: must be more than 0", d.name, d.v)}
				}
			}
			srv := serve.NewServer(h, limits)
			a.infof("herald serve: listening on http://%s (unsubscribe links: any path ending in a token; webhooks: …/webhooks/sendgrid, …/webhooks/mandrill, …/webhooks/ses)", ln.Addr())
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	sf.bind(c)
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	c.Flags().DurationVar(&limits.ReadHeaderTimeout, "header-timeout", limits.ReadHeaderTimeout, "longest time to read a request's headers")
	c.Flags().DurationVar(&limits.ReadTimeout, "read-timeout", limits.ReadTimeout, "longest time to read a whole request, body included")
	c.Flags().DurationVar(&limits.WriteTimeout, "write-timeout", limits.WriteTimeout, "longest time to write a response")
	c.Flags().DurationVar(&limits.IdleTimeout, "idle-timeout", limits.IdleTimeout, "longest time a keep-alive connection stays idle")
	c.Flags().StringVar(&publicURL, "public-url", "", "public base URL of this server, or the Mandrill webhook URL as configured there (default: $"+serve.EnvPublicURL+")")
	return c
}
