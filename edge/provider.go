package edge

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// DeniedAPIKeyEnvPrefixes are the prefixes of environment variables a
// provider credential is never read from, whatever the configuration says:
// the edge sends that credential to the provider as a bearer token, and
// these hold the edge's own secrets (CODEX_: the BYOK master key, the admin
// and enrollment tokens, database URLs with passwords) and its cloud
// credentials (AWS_). Compared without regard to case.
var DeniedAPIKeyEnvPrefixes = []string{"CODEX_", "AWS_"}

// CheckAPIKeyEnv refuses an environment variable name a provider credential
// may not come from: not a plain variable name, one of
// DeniedAPIKeyEnvPrefixes, or one the operator denied. Each deny entry is a
// name, or a prefix when it ends in '*' (OPENAI_ORG_*); see
// config.Config.APIKeyEnvDeny. The errors wrap ErrInvalid.
func CheckAPIKeyEnv(name string, deny []string) error {
	if !validEnvName(name) {
		return fmt.Errorf("API key variable %q is not an environment variable name (letters, digits, '_'; not starting with a digit): %w", name, ErrInvalid)
	}
	for _, p := range DeniedAPIKeyEnvPrefixes {
		if hasPrefixFold(name, p) {
			return fmt.Errorf("API key variable %s: variables starting %s hold the edge's own secrets and are never sent to a provider: %w", name, p, ErrInvalid)
		}
	}
	for _, d := range deny {
		p, isPrefix := strings.CutSuffix(d, "*")
		if isPrefix && hasPrefixFold(name, p) || !isPrefix && strings.EqualFold(name, d) {
			return fmt.Errorf("API key variable %s is denied by CODEX_API_KEY_ENV_DENY (%s): %w", name, d, ErrInvalid)
		}
	}
	return nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func validEnvName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// CheckBaseURL refuses a provider base URL the edge should not send
// credentials and prompts to: anything but an absolute http or https URL
// with a host and no user info, and plain http to a host other than
// loopback (localhost, 127.0.0.0/8, ::1) unless allowInsecureHTTP says
// the operator means it. Empty means the provider's default (https). The
// errors wrap ErrInvalid.
func CheckBaseURL(raw string, allowInsecureHTTP bool) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		// Not echoed: a malformed URL may hold a credential.
		return fmt.Errorf("base URL is not an absolute URL such as https://api.openai.com: %w", ErrInvalid)
	}
	if u.User != nil {
		return fmt.Errorf("base URL of host %s carries user info: give the key with --api-key-env or --api-key-stdin: %w", u.Hostname(), ErrInvalid)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if allowInsecureHTTP || loopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("base URL %s is plain http to a non-loopback host: the provider key and every prompt would cross the network unencrypted; use https, or --allow-insecure-http if you mean it: %w", u.Redacted(), ErrInvalid)
	}
	return fmt.Errorf("base URL of host %s: scheme %q is not http or https: %w", u.Hostname(), u.Scheme, ErrInvalid)
}

// loopbackHost reports whether host names this machine's loopback
// interface without a DNS lookup.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
