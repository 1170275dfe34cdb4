package forward

import (
	"net/http"
	"slices"
	"strings"
)

// hopHeaders are removed in both directions (RFC 9110 §7.6.1), with
// whatever the Connection header names.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// copyRequestHeaders copies what the client sent, minus its gateway key,
// the edge's own control headers, hop-by-hop headers, and Accept-Encoding
// (the transport negotiates compression itself, so usage stays readable).
func copyRequestHeaders(dst, src http.Header) {
	for k, vv := range src {
		switch k {
		case "Authorization", "X-Api-Key", "Host", "Content-Length", "Accept-Encoding":
			continue
		}
		if strings.HasPrefix(k, "X-Codex-") {
			continue
		}
		dst[k] = vv
	}
	for _, name := range connectionNames(src) {
		dst.Del(name)
	}
	for _, h := range hopHeaders {
		dst.Del(h)
	}
}

// copyResponseHeaders copies the provider's answer headers over dst, which
// holds the edge's own (x-codex-*, Strict-Transport-Security): those names
// are never taken from a provider, and neither are cookies, which would be
// set for the edge's origin, nor hop-by-hop headers (issue 13, finding 5).
// Names the provider's Connection header lists are skipped rather than
// deleted from dst, so it cannot remove one of the edge's.
func copyResponseHeaders(dst, src http.Header) {
	hop := connectionNames(src)
	for k, vv := range src {
		switch k {
		case "Strict-Transport-Security", "Set-Cookie", "Set-Cookie2",
			// hopHeaders
			"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
			"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
			continue
		}
		if strings.HasPrefix(k, "X-Codex-") || slices.Contains(hop, k) {
			continue
		}
		dst[k] = vv
	}
}

// connectionNames returns the header names src's Connection header lists,
// in canonical form.
func connectionNames(src http.Header) []string {
	var names []string
	for _, f := range src.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				names = append(names, http.CanonicalHeaderKey(name))
			}
		}
	}
	return names
}
