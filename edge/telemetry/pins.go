package telemetry

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// Pins are the control plane's pinned public keys
// (CODEX_CONTROLPLANE_PINS): SHA-256 digests of certificates'
// SubjectPublicKeyInfo, as HTTP Public Key Pinning wrote them (base64,
// comma-separated). When set, the edge's connections to the control plane
// (enrollment over HTTPS, telemetry over NATS) must use TLS, and the
// server's verified chain must hold a certificate whose key is pinned:
// any other is refused, logged and counted
// (codex_edge_telemetry_pin_mismatches_total), even one a trusted CA
// signed. Pin the control plane's current key and a backup key kept
// offline, so that the control plane can move to the backup without
// locking edges out.
type Pins [][sha256.Size]byte

// ErrPinMismatch refuses a control plane whose certificate chain holds no
// pinned key.
var ErrPinMismatch = errors.New("the control plane's certificate matches no pin in CODEX_CONTROLPLANE_PINS")

// pinMismatches counts refusals in this process, for the metric.
var pinMismatches atomic.Int64

// PinMismatches returns how many connections this process refused for
// their key.
func PinMismatches() int64 { return pinMismatches.Load() }

// ParsePins reads comma-separated base64 SHA-256 digests; spaces around
// each are ignored, and "" is no pins.
func ParsePins(s string) (Pins, error) {
	var out Pins
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(f)
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(f)
		}
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("pin %q: want the base64 of a SHA-256 digest (44 characters)", f)
		}
		out = append(out, [sha256.Size]byte(b))
	}
	return out, nil
}

// UnmarshalText parses the environment variable's form (see ParsePins).
func (p *Pins) UnmarshalText(b []byte) error {
	v, err := ParsePins(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// MarshalText writes the pins as ParsePins reads them.
func (p Pins) MarshalText() ([]byte, error) {
	s := make([]string, len(p))
	for i, d := range p {
		s[i] = base64.StdEncoding.EncodeToString(d[:])
	}
	return []byte(strings.Join(s, ",")), nil
}

// PinOf is the pin of cert's public key: what CODEX_CONTROLPLANE_PINS
// lists, and what codex-controlplane logs at start-up.
func PinOf(cert *x509.Certificate) string {
	d := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(d[:])
}

// verify accepts a connection whose leaf key, or a key of a verified
// chain, is pinned. Other certificates the server sent along count for
// nothing: anyone can send a copy of the real control plane's
// certificate, only its key's holder can complete the handshake with it.
func (p Pins) verify(cs tls.ConnectionState) error {
	var certs []*x509.Certificate
	if len(cs.PeerCertificates) > 0 {
		certs = append(certs, cs.PeerCertificates[0])
	}
	for _, chain := range cs.VerifiedChains {
		certs = append(certs, chain...)
	}
	for _, c := range certs {
		d := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		for _, pin := range p {
			if d == pin {
				return nil
			}
		}
	}
	pinMismatches.Add(1)
	presented := "none"
	if len(cs.PeerCertificates) > 0 {
		presented = PinOf(cs.PeerCertificates[0])
	}
	return fmt.Errorf("%w (the server's certificate has the key pin %s)", ErrPinMismatch, presented)
}

// TLSConfig returns base (cloned; a new TLS 1.3 configuration if nil)
// with the pins checked after the usual chain verification, which stays.
// Without pins it returns base as it is.
func (p Pins) TLSConfig(base *tls.Config) *tls.Config {
	if len(p) == 0 {
		return base
	}
	c := &tls.Config{MinVersion: tls.VersionTLS13}
	if base != nil {
		c = base.Clone()
	}
	c.VerifyConnection = p.verify
	return c
}

// Client returns an HTTP client like c whose connections check the pins
// and which refuses plain http: a pinned control plane is reached over
// https only. Without pins it returns c.
func (p Pins) Client(c *http.Client) *http.Client {
	if len(p) == 0 {
		return c
	}
	tr, ok := c.Transport.(*http.Transport)
	if !ok || tr == nil {
		tr = http.DefaultTransport.(*http.Transport)
	}
	tr = tr.Clone()
	tr.TLSClientConfig = p.TLSConfig(tr.TLSClientConfig)
	out := *c
	out.Transport = httpsOnly{tr}
	return &out
}

type httpsOnly struct{ rt http.RoundTripper }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("CODEX_CONTROLPLANE_PINS is set: the control plane must be reached over https, not %s", r.URL.Scheme)
	}
	return h.rt.RoundTrip(r)
}
