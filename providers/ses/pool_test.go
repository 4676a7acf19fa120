package ses

import (
	"context"
	"fmt"
	"testing"

	"github.com/heraldmail/herald/providers/apitest"
	"github.com/heraldmail/herald/providers/providertest"
)

// TestPoolSizedToWorkers sends through a provider opened the way the pipeline opens it
// (Registration, the standard credential chain, the campaign's workers in the spec) and
// counts the connections the API sees: every worker keeps one kept-alive connection and
// no more are opened, however many workers there are (more than the SDK's 10 idle
// connections per host included).
func TestPoolSizedToWorkers(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", testKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	for _, c := range []struct{ workers, n int }{{8, 400}, {80, 800}} {
		t.Run(fmt.Sprintf("%d workers", c.workers), func(t *testing.T) {
			srv := apitest.SES(t)
			s := providertest.Spec(Kind, fmt.Sprintf("region: %s\nendpoint: %s\n", testRegion, srv.URL), nil)
			s.Workers = c.workers
			p, err := Registration().Open(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			srv.Rendezvous(c.workers) // every worker's request in flight at once
			apitest.SendAll(t, p, c.workers, c.n)
			apitest.CheckConns(t, srv, c.workers, c.n)
		})
	}
}
