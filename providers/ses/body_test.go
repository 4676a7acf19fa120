package ses

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"testing"
)

// closingBody behaves like the SDK's request body: after Close, Read and WriteTo answer
// io.EOF. Its WriteTo waits for Close, as happens when the answer arrives before
// net/http's last read of the body: the order that made a written request look unwritten.
type closingBody struct {
	r      *bytes.Reader
	mu     sync.Mutex
	closed chan struct{}
	once   sync.Once
}

func (b *closingBody) Read(p []byte) (int, error) {
	select {
	case <-b.closed:
		return 0, io.EOF
	default:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.Read(p)
}

func (b *closingBody) WriteTo(w io.Writer) (int64, error) {
	<-b.closed
	return 0, io.EOF
}

func (b *closingBody) Close() error { b.once.Do(func() { close(b.closed) }); return nil }

// TestBodyClientWholeRequestWritten: a request whose body is closed by the SDK once the
// answer is back is still reported completely written, so that net/http keeps its
// connection for the next request.
func TestBodyClientWholeRequestWritten(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"MessageId":"m-1"}`)
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := bodyClient{&http.Client{Transport: tr}}

	payload := bytes.Repeat([]byte("x"), 9000)
	body := &closingBody{r: bytes.NewReader(payload), closed: make(chan struct{})}
	written := make(chan error, 1)
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) { written <- info.Err },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(payload))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	_ = body.Close() // what the SDK does once the answer is back
	if err := <-written; err != nil {
		t.Errorf("the request was reported not completely written: %v", err)
	}
}
