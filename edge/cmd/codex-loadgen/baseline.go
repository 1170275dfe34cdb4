package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"time"
)

// serveBaseline runs the simplest Go reverse proxy in front of to, as its
// own process: what any proxy built on net/http pays here for the extra
// hop (two more connections, two more wake-ups per request), so that the
// edge's added latency can be read against it.
func serveBaseline(listen, to string) error {
	u, err := url.Parse(to)
	if err != nil {
		return fmt.Errorf("-baseline-to: %w", err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	fmt.Fprintf(os.Stderr, "baseline reverse proxy on %s to %s\n", listen, to)
	srv := &http.Server{Addr: listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}
