//go:build ignore

// Command codex-healthcheck is the HEALTHCHECK of the codex container
// images: distroless images have no shell or curl, and the binaries have no
// health subcommand. It GETs one URL (default https://127.0.0.1:8443/healthz)
// and exits 0 on 200, 1 otherwise. The images build it with
//
//	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o codex-healthcheck healthcheck.go
//
// A loopback URL skips certificate verification: the certificate names the
// service's public name, not 127.0.0.1, and only the status code is read.
// Any other host is verified as usual.
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	target := "https://127.0.0.1:8443/healthz"
	if len(args) > 0 {
		target = args[0]
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		fmt.Fprintf(os.Stderr, "codex-healthcheck: %q is not an http(s) URL\n", target)
		return 1
	}
	ip := net.ParseIP(u.Hostname())
	loopback := u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())
	client := &http.Client{
		Timeout: 4 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: loopback},
		},
	}
	resp, err := client.Get(target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "codex-healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "codex-healthcheck: %s answered %s\n", target, resp.Status)
		return 1
	}
	return 0
}
