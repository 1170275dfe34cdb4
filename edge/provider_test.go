package edge_test

import (
	"errors"
	"testing"

	"github.com/persiv/codex/edge"
)

func TestCheckBaseURL(t *testing.T) {
	for _, c := range []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"", false, true},
		{"https://api.openai.com", false, true},
		{"https://api.openai.com/v1", false, true},
		{"http://127.0.0.1:9999", false, true},
		{"http://127.8.9.10", false, true},
		{"http://[::1]:8080", false, true},
		{"http://LOCALHOST:8080", false, true},
		{"http://localhost.evil.example", false, false},
		{"http://api.openai.com", false, false},
		{"http://api.openai.com", true, true},
		{"http://192.168.1.5:8080", false, false},
		{"http://0.0.0.0:8080", false, false},
		{"https://user:secret@api.openai.com", false, false},
		{"ftp://api.openai.com", true, false},
		{"api.openai.com", false, false},
		{"https://", false, false},
	} {
		err := edge.CheckBaseURL(c.url, c.insecure)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, edge.ErrInvalid) {
			t.Errorf("CheckBaseURL(%q, %v) = %v, want ok %v", c.url, c.insecure, err, c.ok)
		}
	}
}

func TestCheckAPIKeyEnv(t *testing.T) {
	deny := []string{"GITHUB_TOKEN", "VAULT_*"}
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"OPENAI_API_KEY", true},
		{"CODEX_BYOK_KEY", false},
		{"CODEX_", false},
		{"codex_admin_token", false},
		{"AWS_SECRET_ACCESS_KEY", false},
		{"aws_session_token", false},
		{"AWS", true},
		{"GITHUB_TOKEN", false},
		{"GITHUB_TOKEN_2", true},
		{"VAULT_TOKEN", false},
		{"VAULT", true},
		{"", false},
		{"1KEY", false},
		{"MY-KEY", false},
		{"KEY=x", false},
	} {
		err := edge.CheckAPIKeyEnv(c.name, deny)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, edge.ErrInvalid) {
			t.Errorf("CheckAPIKeyEnv(%q) = %v, want ok %v", c.name, err, c.ok)
		}
	}
}
