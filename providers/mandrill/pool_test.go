package mandrill

import (
	"testing"

	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/apitest"
)

// TestPoolSizedToWorkers: one kept-alive connection per worker, however many workers.
func TestPoolSizedToWorkers(t *testing.T) {
	apitest.PoolSizedToWorkers(t, apitest.Mandrill, Registration(), func(url string) providers.Spec {
		return spec("api_key_env: MD_KEY\nendpoint: "+url+"\n", map[string]string{"MD_KEY": "md-test-key"})
	})
}
