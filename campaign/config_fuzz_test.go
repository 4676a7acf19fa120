package campaign

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParseCampaign: whatever the file holds, Parse never panics, every error is a
// *ConfigError naming the file, and an accepted campaign has its required parts.
func FuzzParseCampaign(f *testing.F) {
	f.Add([]byte(validCampaign))
	f.Add([]byte("name: x\nprovider: {kind: smtp, host: h}\n"))
	f.Add([]byte("name: [\n"))
	f.Add([]byte("rate: 10/x\n"))
	f.Add([]byte("headers: {\"X-A\": \"b\\r\\nc\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("campaign.yaml", data, time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), "campaign.yaml") {
				t.Fatalf("error %q is not a *ConfigError naming the file", err)
			}
			return
		}
		if !nameRe.MatchString(c.Name) || c.From == nil || c.Subject == "" || c.ListFile == "" ||
			(c.HTMLFile == "" && c.TextFile == "") || c.Workers < 1 || c.Rate.PerSecond <= 0 ||
			!strings.HasPrefix(c.UnsubscribeURL, "https://") || c.ProviderKind == "" {
			t.Fatalf("accepted an incomplete campaign: %+v", c)
		}
		for k, v := range c.Headers {
			if strings.ContainsAny(k+v, "\r\n") {
				t.Fatalf("accepted a header with a line break: %q: %q", k, v)
			}
		}
	})
}
