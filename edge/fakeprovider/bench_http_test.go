package fakeprovider_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/fakeprovider"
)

// BenchmarkHTTPChatCompletionsJSON measures the fake over loopback HTTP, as
// `make bench` drives it directly.
func BenchmarkHTTPChatCompletionsJSON(b *testing.B) {
	ts := httptest.NewServer(fakeprovider.New(fakeprovider.Options{NoRecord: true}))
	defer ts.Close()
	client := ts.Client()
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Summarise the quarterly report in three sentences."}]}`
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+fakeprovider.PathChatCompletions, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer k")
			res, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
	})
}
