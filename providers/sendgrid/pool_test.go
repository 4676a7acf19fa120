package sendgrid

import (
	"context"
	"fmt"
	"testing"

	"github.com/heraldmail/herald/providers/apitest"
)

// TestPoolSizedToWorkers sends through a provider opened the way the pipeline opens it,
// with the campaign's workers in the spec, and counts the connections the API sees:
// every worker keeps one kept-alive connection and no more are opened (see
// apitest.MaxConns), however many
// workers there are (more than the transport's default idle pool included).
func TestPoolSizedToWorkers(t *testing.T) {
	for _, c := range []struct{ workers, n int }{{8, 400}, {80, 800}} {
		t.Run(fmt.Sprintf("%d workers", c.workers), func(t *testing.T) {
			srv := apitest.SendGrid(t)
			s := spec("api_key_env: SG_KEY\nendpoint: "+srv.URL+"\n", map[string]string{"SG_KEY": "SG.test-key"})
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
