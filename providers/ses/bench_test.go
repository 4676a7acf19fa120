package ses

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/heraldmail/herald/providers"
	"github.com/heraldmail/herald/providers/apitest"
	"github.com/heraldmail/herald/providers/providertest"
)

// BenchmarkSendParallel is one SendEmail of a ~6.4 KB raw message through the provider (SDK
// middleware, signing, JSON and base64, one HTTP round trip), from 8 goroutines, to an
// instant fake; CPU per message is ns/op times the cores in use.
func BenchmarkSendParallel(b *testing.B) {
	srv := apitest.SES(b)
	c, err := NewClient(context.Background(), Config{Region: testRegion, Endpoint: srv.URL, Workers: 8}, staticCreds())
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(context.Background(), c, Config{Region: testRegion, Endpoint: srv.URL}, nil)
	if err != nil {
		b.Fatal(err)
	}
	sendParallel(b, p, bigMessage(), 8)
}

func sendParallel(b *testing.B, p providers.Provider, msg *providers.Message, workers int) {
	next := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if _, err := p.Send(context.Background(), msg); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
}

// BenchmarkPostParallel is the yardstick of BenchmarkSendParallel: the same SendEmail
// JSON posted from 8 goroutines with plain net/http (no SDK, no signing) to the same fake.
func BenchmarkPostParallel(b *testing.B) {
	srv := apitest.SES(b)
	msg := bigMessage()
	body, err := json.Marshal(map[string]any{
		"Content":          map[string]any{"Raw": map[string]any{"Data": msg.Raw}},
		"Destination":      map[string]any{"ToAddresses": []string{msg.To}},
		"FromEmailAddress": msg.FromAddress,
		"EmailTags":        []map[string]string{{"Name": "campaign", "Value": msg.Campaign}},
	})
	if err != nil {
		b.Fatal(err)
	}
	client, tr := providers.NewAPIClient(0, 8)
	defer tr.CloseIdleConnections()
	next := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				a, err := providers.PostJSON(context.Background(), client, Kind, srv.URL+apitest.SESSendPath,
					http.Header{"Authorization": {"AWS4-HMAC-SHA256 Credential=" + testKeyID + "/20260101/eu-west-1/ses/aws4_request"}}, body)
				if err != nil || a.Status != http.StatusOK {
					b.Errorf("post: %v %d", err, a.Status)
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
}

// bigMessage is providertest's message grown to about 6.4 KB.
func bigMessage() *providers.Message {
	msg := providertest.Message("jane@example.org", 1)
	for len(msg.Raw) < 6400 {
		msg.Raw = append(msg.Raw, "Some newsletter text for the plain part, wrapped like a mail.\r\n"...)
	}
	return msg
}
