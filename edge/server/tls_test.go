package server

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/internal/testutil"
)

func TestTLSConfig(t *testing.T) {
	certFile, keyFile, _ := testutil.SelfSignedCert(t)
	cases := []struct {
		name            string
		listen, admin   string
		cert, key       string
		wantErr         string
		wantTLS13OnlyOK bool
	}{
		{name: "loopback plain", listen: "127.0.0.1:0", admin: "127.0.0.1:0"},
		{name: "ipv6 loopback plain", listen: "[::1]:0", admin: "localhost:0"},
		{name: "public plain", listen: "0.0.0.0:8080", admin: "127.0.0.1:0", wantErr: "CODEX_LISTEN=0.0.0.0:8080 is not a loopback"},
		{name: "public admin plain", listen: "127.0.0.1:0", admin: ":8081", wantErr: "CODEX_ADMIN_LISTEN"},
		{name: "public with TLS", listen: "0.0.0.0:8080", admin: "0.0.0.0:8081", cert: certFile, key: keyFile, wantTLS13OnlyOK: true},
		{name: "missing cert file", listen: "0.0.0.0:8080", admin: "127.0.0.1:0", cert: "/nonexistent.pem", key: keyFile, wantErr: "CODEX_TLS_CERT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Listen, cfg.AdminListen, cfg.TLSCert, cfg.TLSKey = tc.listen, tc.admin, tc.cert, tc.key
			tcfg, err := tlsConfig(cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantTLS13OnlyOK && (tcfg == nil || tcfg.MinVersion != tls.VersionTLS13) {
				t.Fatalf("TLS config %+v, want TLS 1.3 minimum", tcfg)
			}
		})
	}
}

func TestAdminTokenRequiredOffLoopback(t *testing.T) {
	cfg := config.Default()
	cfg.AdminListen = "0.0.0.0:8081"
	if _, err := adminToken(cfg, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "CODEX_ADMIN_TOKEN") {
		t.Fatalf("non-loopback admin without a token: %v", err)
	}
	if _, err := adminToken(cfg, func(string) string { return "short" }); err == nil {
		t.Fatal("a 5-character admin token was accepted")
	}
	tok, err := adminToken(cfg, func(string) string { return " long-enough-admin-token \n" })
	if err != nil || string(tok) != "long-enough-admin-token" {
		t.Fatalf("token %q, %v", tok, err)
	}
}
