// Package httpapi serves the control plane's HTTP API on echo: health
// and readiness probes, edge enrollment and, when given, the dashboard. It sets HSTS on every response
// and serves plain HTTP only on loopback, TLS 1.3 elsewhere.
package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/persiv/codex/controlplane"
	"github.com/persiv/codex/controlplane/enroll"
	"github.com/persiv/codex/shared/wire"
)

// MaxEnrollBody bounds an enrollment request.
const MaxEnrollBody = 8 << 10

// HSTS is the Strict-Transport-Security value of every response.
const HSTS = "max-age=31536000; includeSubDomains"

// API holds what the handlers need.
type API struct {
	Enroll *enroll.Service
	// Ready reports whether the stores and NATS answer.
	Ready func(ctx context.Context) error
	Log   *slog.Logger
	// Dashboard, when set, adds the web dashboard's routes.
	Dashboard interface{ Register(e *echo.Echo) }
}

// Handler returns the echo instance serving the API.
func (a *API) Handler() *echo.Echo {
	if a.Log == nil {
		a.Log = slog.New(slog.DiscardHandler)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = a.errorHandler
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("Strict-Transport-Security", HSTS)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Cache-Control", "no-store")
			return next(c)
		}
	})
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", a.readyz)
	e.POST(wire.EnrollPath, a.enroll)
	if a.Dashboard != nil {
		a.Dashboard.Register(e)
	}
	return e
}

func (a *API) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if a.Ready != nil {
		if err := a.Ready(ctx); err != nil {
			a.Log.Warn("not ready", "err", err)
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// errorHandler answers every error in the API's one shape (see
// controlplane.ErrorFor and controlplane.Error.Body). An internal error is
// logged with its cause under a reference the answer repeats.
func (a *API) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		err = controlplane.StatusError(he.Code)
	}
	e := *controlplane.ErrorFor(err)
	if e.Kind == controlplane.KindInternal {
		// The client gets an id; the log gets the detail.
		var id [8]byte
		rand.Read(id[:])
		ref := hex.EncodeToString(id[:])
		a.Log.Error("request failed", "path", c.Path(), "error_id", ref, "err", err)
		e.Message = "internal error " + ref
	}
	if err := c.JSON(e.Status(), e.Body()); err != nil {
		a.Log.Error("write error response", "err", err)
	}
}

func (a *API) enroll(c echo.Context) error {
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errJSONOnly
	}
	var req wire.EnrollRequest
	if err := decodeStrict(http.MaxBytesReader(c.Response(), c.Request().Body, MaxEnrollBody), &req); err != nil {
		return err
	}
	resp, err := a.Enroll.Enroll(c.Request().Context(), req)
	if errors.Is(err, controlplane.ErrUnauthorized) {
		return errBadToken
	}
	if err != nil {
		return err
	}
	a.Log.Info("edge enrolled", "org_id", resp.OrgID, "edge_id", resp.EdgeID)
	return c.JSON(http.StatusOK, resp)
}

var (
	errJSONOnly = controlplane.Errorf(controlplane.KindUnsupportedMedia, "send application/json")
	// errBadToken is the one answer for unknown, used, expired and
	// malformed tokens.
	errBadToken = &controlplane.Error{Kind: controlplane.KindUnauthorized, Code: "invalid_token", Message: "invalid or expired enrollment token"}
)

// decodeStrict decodes exactly one JSON object with no unknown fields.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return controlplane.Errorf(controlplane.KindTooLarge, "request body too large")
		}
		return controlplane.Errorf(controlplane.KindInvalid, "malformed JSON or unknown field")
	}
	if _, err := dec.Token(); err != io.EOF {
		return controlplane.Errorf(controlplane.KindInvalid, "trailing data after the JSON object")
	}
	return nil
}

// Pin is the key pin of cert: the base64 SHA-256 of its
// SubjectPublicKeyInfo, the form edges list in CODEX_CONTROLPLANE_PINS.
func Pin(cert *x509.Certificate) string {
	d := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(d[:])
}

// Pins are the key pins of a TLS configuration's first certificate chain,
// leaf first.
func Pins(conf *tls.Config) ([]string, error) {
	if conf == nil || len(conf.Certificates) == 0 {
		return nil, nil
	}
	var out []string
	for _, der := range conf.Certificates[0].Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse TLS certificate: %w", err)
		}
		out = append(out, Pin(c))
	}
	return out, nil
}

// TLSConfig returns the TLS 1.3-only configuration for a certificate pair.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}, nil
}

// Listen opens addr, refusing plain HTTP outside loopback. With tlsConf
// the listener serves TLS 1.3 only.
func Listen(addr string, tlsConf *tls.Config) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if tlsConf == nil && !isLoopback(host) {
		return nil, fmt.Errorf("refusing plain HTTP on %s: set CODEX_TLS_CERT and CODEX_TLS_KEY, or listen on loopback", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if tlsConf != nil {
		conf := tlsConf.Clone()
		conf.MinVersion = tls.VersionTLS13
		ln = tls.NewListener(ln, conf)
	}
	return ln, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve serves h on ln until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
