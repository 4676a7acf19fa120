package sendgrid

import (
	"testing"

	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/apitest"
)

// TestPoolSizedToWorkers: one kept-alive connection per worker, however many workers.
func TestPoolSizedToWorkers(t *testing.T) {
	apitest.PoolSizedToWorkers(t, apitest.SendGrid, Registration(), func(url string) providers.Spec {
		return spec("api_key_env: SG_KEY\nendpoint: "+url+"\n", map[string]string{"SG_KEY": "SG.test-key"})
	})
}
