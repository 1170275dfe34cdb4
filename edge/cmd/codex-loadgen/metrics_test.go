package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestScrapeSum(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# HELP codex_edge_keyring_data_key_refreshes_total x
# TYPE codex_edge_keyring_data_key_refreshes_total counter
codex_edge_keyring_data_key_refreshes_total{result="ok"} 3
codex_edge_keyring_data_key_refreshes_total{result="refused"} 1
codex_edge_keyring_data_key_refreshes_total_other 100
codex_edge_keyring_master_key_calls_total 7
`)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		name  string
		want  float64
		found bool
	}{
		{"codex_edge_keyring_data_key_refreshes_total", 4, true},
		{"codex_edge_keyring_master_key_calls_total", 7, true},
		{"codex_edge_missing_total", 0, false},
	} {
		if got, found := scrapeSum(srv.URL, tc.name); got != tc.want || found != tc.found {
			t.Errorf("scrapeSum(%s) = %v, %v; want %v, %v", tc.name, got, found, tc.want, tc.found)
		}
	}
}
