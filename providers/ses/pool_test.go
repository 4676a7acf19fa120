package ses

import (
	"fmt"
	"testing"

	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/apitest"
	"github.com/heraldmail/herald/providers/providertest"
)

// TestPoolSizedToWorkers sends through a provider opened the way the pipeline opens it
// (Registration, the standard credential chain, the campaign's workers in the spec) and
// counts the connections the API sees (apitest.PoolSizedToWorkers), more workers than
// the SDK's 10 idle connections per host included.
func TestPoolSizedToWorkers(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", testKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	apitest.PoolSizedToWorkers(t, apitest.SES, Registration(), func(url string) providers.Spec {
		return providertest.Spec(Kind, fmt.Sprintf("region: %s\nendpoint: %s\n", testRegion, url), nil)
	})
}
