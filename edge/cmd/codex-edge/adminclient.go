package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/persiv/codex/edge/config"
	"github.com/persiv/codex/edge/server"
)

// AdminQueryTimeout bounds one request of the CLI to the running edge's
// admin API (crypto status asks it which orgs wait for their ephemeral
// key); an edge that does not answer within it counts as not reachable.
const AdminQueryTimeout = 5 * time.Second

// adminMaxAnswer bounds the admin API answer the CLI reads.
const adminMaxAnswer = 1 << 20

// adminClient reaches the running edge's admin API the way an operator on
// the edge's host would: at CODEX_ADMIN_LISTEN (an unspecified host is
// reached on loopback), with CODEX_ADMIN_TOKEN or CODEX_ADMIN_TOKEN_FILE,
// and over TLS when serve uses CODEX_TLS_CERT.
type adminClient struct {
	addr   string // host:port dialled
	base   string // scheme://addr
	token  string
	client *http.Client
}

// newAdminClient returns a client for the admin API at addr ("" for the
// configured CODEX_ADMIN_LISTEN).
func (e *env) newAdminClient(cfg config.Config, addr string) (*adminClient, error) {
	if addr == "" {
		addr = dialAddr(cfg.AdminListen)
	}
	a := &adminClient{addr: addr, base: "http://" + addr}
	token, err := server.AdminToken(cfg, e.getenv)
	if err != nil {
		return a, err
	}
	a.token = string(token)
	// No Proxy: the edge's own admin API is reached directly, never
	// through HTTP_PROXY.
	tr := &http.Transport{}
	if cfg.TLSCert != "" {
		conf, err := pinnedTLS(cfg.TLSCert)
		if err != nil {
			return a, err
		}
		tr.TLSClientConfig = conf
		a.base = "https://" + addr
	}
	a.client = &http.Client{Transport: tr, Timeout: AdminQueryTimeout}
	return a, nil
}

// dialAddr turns a listen address into one to dial: a listener on every
// interface (":8081", "0.0.0.0:8081", "[::]:8081") is reached on loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// pinnedTLS trusts exactly the certificate serve presents: the first one
// in the CODEX_TLS_CERT file. The edge's certificate is often self-signed
// or names the load balancer's host rather than the loopback address the
// CLI dials, so a chain and host name check would refuse the right edge;
// comparing the certificate itself accepts it and nothing else.
func pinnedTLS(certFile string) (*tls.Config, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("CODEX_TLS_CERT: %w", err)
	}
	var want []byte
	for rest := b; want == nil; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return nil, errors.New("CODEX_TLS_CERT: no PEM certificate in the file")
		}
		if blk.Type == "CERTIFICATE" {
			want = blk.Bytes
		}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain and name checks are replaced by VerifyConnection,
		// which accepts only the configured certificate itself.
		InsecureSkipVerify: true, //nolint:gosec // G402: the peer is pinned in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want) {
				return errors.New("the edge presented a certificate other than CODEX_TLS_CERT's")
			}
			return nil
		},
	}, nil
}

// get sends GET path and decodes the JSON answer into v.
func (a *adminClient) get(ctx context.Context, path string, v any) error {
	if a.client == nil {
		return errors.New("no admin client")
	}
	if _, port, err := net.SplitHostPort(a.addr); err == nil && port == "0" {
		return errors.New("the admin address has port 0 (chosen at start-up); pass --admin-addr HOST:PORT")
	}
	ctx, cancel := context.WithTimeout(ctx, AdminQueryTimeout)
	defer cancel()
	// The URL is the operator's own configuration (CODEX_ADMIN_LISTEN or
	// --admin-addr), not a request's input.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil) //nolint:gosec // G704: the configured admin address
	if err != nil {
		return err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.client.Do(req) //nolint:gosec // G704: the configured admin address
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, adminMaxAnswer))
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d: %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
