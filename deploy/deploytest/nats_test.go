package deploytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	cpconfig "github.com/persiv/codex/controlplane/config"
	"github.com/persiv/codex/controlplane/natsauth"
	"github.com/persiv/codex/controlplane/sealer"
)

// The compose NATS configuration, with the operator configuration the
// control plane writes (`codex-controlplane nats-config`, as setup.sh runs
// it), must be accepted by nats-server's own parser, with TLS 1.3 only,
// JetStream on, and operator (JWT) authentication.
func TestComposeNATSConfig(t *testing.T) {
	dir := t.TempDir()
	kp, err := sealer.LoadOrCreateKeyFile(filepath.Join(dir, "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := natsauth.Open(context.Background(), filepath.Join(dir, "keys"), natsauth.Options{Sealer: sealer.New(kp)})
	if err != nil {
		t.Fatal(err)
	}
	// As setup.sh runs nats-config (--store-dir /data/jetstream, here in
	// the test's directory; the store bound the account's limit).
	operator, err := auth.NodeConfig(natsauth.NodeConfig{ResolverDir: filepath.Join(dir, "jwt"), MaxConnections: cpconfig.Default().NATSMaxConnections,
		StoreDir: filepath.Join(dir, "js"), MaxFileStore: cpconfig.Default().NATSAccountMaxStorage})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "codex-operator.conf"), []byte(operator), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key := selfSigned(t, dir)
	conf := string(readFile(t, "deploy/compose/nats/nats.conf"))
	for old, new := range map[string]string{
		"/etc/codex/tls/cert.pem": cert, "/etc/codex/tls/key.pem": key,
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("nats.conf does not mention %s", old)
		}
		conf = strings.ReplaceAll(conf, old, new)
	}
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses deploy/compose/nats/nats.conf: %v", err)
	}
	if opts.TLSConfig == nil || opts.TLSConfig.MinVersion != tls.VersionTLS13 {
		t.Errorf("NATS TLS: %+v, want TLS 1.3 minimum", opts.TLSConfig)
	}
	if !opts.JetStream || opts.StoreDir != filepath.Join(dir, "js") || opts.JetStreamMaxStore != cpconfig.Default().NATSAccountMaxStorage {
		t.Errorf("JetStream = %v in %q bounded at %d, want on in the data volume, bounded at the account's limit", opts.JetStream, opts.StoreDir, opts.JetStreamMaxStore)
	}
	if len(opts.TrustedOperators) != 1 || opts.SystemAccount == "" {
		t.Errorf("operator mode: %d operators, system account %q", len(opts.TrustedOperators), opts.SystemAccount)
	}
	if opts.Port != 4222 || opts.Host != "0.0.0.0" {
		t.Errorf("listen %s:%d, want 0.0.0.0:4222", opts.Host, opts.Port)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nats"}, DNSNames: []string{"nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
