package natsauth

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/persiv/codex/shared/wire"
)

// NodeConfig describes the nats-server that Authority.NodeConfig writes
// a configuration for: a server alone, or one node of a JetStream
// cluster.
type NodeConfig struct {
	// ResolverDir is the account resolver's directory. Required.
	ResolverDir string
	// MaxConnections bounds client connections. Required.
	MaxConnections int
	// ServerName names the server. Required in a cluster, where it is
	// unique: JetStream places streams and elects leaders by it.
	ServerName string
	// StoreDir is JetStream's store. Required in a cluster; alone,
	// nats-server's default (a temporary directory) when empty.
	StoreDir string
	// MaxFileStore bounds JetStream's file storage on this server; zero
	// lets nats-server size it from the free disk, which can be less
	// than the ingest account's JetStream limit (Limits.MaxStorage): the
	// server then refuses the account JetStream altogether. nats-config
	// sets it to the account's limit.
	MaxFileStore int64
	// TLS, when set, is required of every client.
	TLS *TLSFiles
	// Cluster, when set, makes the server a node of a JetStream cluster.
	Cluster *ClusterNode
}

// ClusterNode is a node's part of a JetStream cluster.
type ClusterNode struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// Listen is the route listener's host:port, such as 0.0.0.0:6222.
	Listen string
	// Routes are every node's route URL (nats://host:6222), this
	// node's included (a route to itself is ignored): the same list on
	// every node.
	Routes []string
	// TLS, when set, secures the routes; with a CA, each node must
	// present a certificate the CA signed.
	TLS *TLSFiles
}

// TLSFiles are PEM files a server reads.
type TLSFiles struct {
	Cert, Key string // required together
	CA        string // optional
}

// nameRE is what a server or cluster name may hold: nats-server refuses
// spaces, and a quote or a brace would break the configuration.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Validate reports the first mistake in c.
func (c NodeConfig) Validate() error {
	switch {
	case strings.TrimSpace(c.ResolverDir) == "":
		return errors.New("the resolver directory is empty")
	case c.MaxConnections <= 0:
		return errors.New("max connections must be positive")
	case c.ServerName != "" && !nameRE.MatchString(c.ServerName):
		return fmt.Errorf("server name %q: use 1 to 64 letters, digits, '.', '_' or '-'", c.ServerName)
	}
	if err := c.TLS.validate("client"); err != nil {
		return err
	}
	cl := c.Cluster
	if cl == nil {
		return nil
	}
	switch {
	case c.ServerName == "":
		return errors.New("a cluster node needs a server name, unique in the cluster")
	case strings.TrimSpace(c.StoreDir) == "":
		return errors.New("a cluster node needs a JetStream store directory")
	case !nameRE.MatchString(cl.Name):
		return fmt.Errorf("cluster name %q: use 1 to 64 letters, digits, '.', '_' or '-'", cl.Name)
	case len(cl.Routes) == 0:
		return errors.New("a cluster node needs the routes of the cluster's nodes")
	}
	if _, err := hostPort(cl.Listen); err != nil {
		return fmt.Errorf("cluster listen address %q: %w", cl.Listen, err)
	}
	for _, r := range cl.Routes {
		u, err := url.Parse(r)
		if err != nil || (u.Scheme != "nats" && u.Scheme != "nats-route" && u.Scheme != "tls") || u.Path != "" && u.Path != "/" {
			return fmt.Errorf("route %q is not a nats://host:port URL", r)
		}
		if _, err := hostPort(u.Host); err != nil {
			return fmt.Errorf("route %q: %w", r, err)
		}
	}
	return cl.TLS.validate("cluster")
}

func hostPort(s string) (int, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return 0, errors.New("want host:port")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return 0, errors.New("the port must be 1 to 65535")
	}
	if strings.ContainsAny(host, "\" \t\n") {
		return 0, errors.New("bad host")
	}
	return port, nil
}

func (t *TLSFiles) validate(what string) error {
	if t == nil {
		return nil
	}
	if t.Cert == "" || t.Key == "" {
		return fmt.Errorf("%s TLS needs a certificate and a key file", what)
	}
	return nil
}

// NodeConfig returns a nats-server configuration trusting this operator
// with a full (directory) resolver preloaded with the system and ingest
// accounts, JetStream enabled, for the server c describes.
func (a *Authority) NodeConfig(c NodeConfig) (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# persiv codex: NATS operator/JWT configuration.\n")
	if c.ServerName != "" {
		fmt.Fprintf(&b, "server_name: %q\n", c.ServerName)
	}
	fmt.Fprintf(&b, "operator: %s\n", a.operatorJWT)
	fmt.Fprintf(&b, "system_account: %s\n", a.systemPub)
	switch {
	case c.StoreDir != "" || c.MaxFileStore > 0:
		fmt.Fprintf(&b, "jetstream: {\n")
		if c.StoreDir != "" {
			fmt.Fprintf(&b, "  store_dir: %q\n", c.StoreDir)
		}
		if c.MaxFileStore > 0 {
			fmt.Fprintf(&b, "  max_file_store: %d\n", c.MaxFileStore)
		}
		fmt.Fprintf(&b, "}\n")
	default:
		fmt.Fprintf(&b, "jetstream: enabled\n")
	}
	fmt.Fprintf(&b, "max_payload: %d\n", wire.MaxBatchBytes)
	fmt.Fprintf(&b, "max_connections: %d\n", c.MaxConnections)
	if c.TLS != nil {
		// Edges hold no client certificate: TLS 1.3 only, as the
		// embedded server.
		writeTLS(&b, "", c.TLS, false)
	}
	if cl := c.Cluster; cl != nil {
		fmt.Fprintf(&b, "cluster: {\n  name: %q\n  listen: %q\n  routes: [\n", cl.Name, cl.Listen)
		for _, r := range cl.Routes {
			fmt.Fprintf(&b, "    %q\n", r)
		}
		fmt.Fprintf(&b, "  ]\n")
		if cl.TLS != nil {
			writeTLS(&b, "  ", cl.TLS, cl.TLS.CA != "")
		}
		fmt.Fprintf(&b, "}\n")
	}
	fmt.Fprintf(&b, "resolver: {\n  type: full\n  dir: %q\n  allow_delete: false\n  interval: \"2m\"\n}\n", c.ResolverDir)
	fmt.Fprintf(&b, "resolver_preload: {\n")
	fmt.Fprintf(&b, "  # SYS\n  %s: %s\n", a.systemPub, a.systemJWT)
	fmt.Fprintf(&b, "  # %s\n  %s: %s\n", IngestAccountName, a.ingestPub, a.IngestJWT())
	fmt.Fprintf(&b, "}\n")
	return b.String(), nil
}

func writeTLS(b *strings.Builder, indent string, t *TLSFiles, verify bool) {
	fmt.Fprintf(b, "%stls: {\n", indent)
	fmt.Fprintf(b, "%s  cert_file: %q\n%s  key_file: %q\n", indent, t.Cert, indent, t.Key)
	if t.CA != "" {
		fmt.Fprintf(b, "%s  ca_file: %q\n", indent, t.CA)
	}
	if verify {
		fmt.Fprintf(b, "%s  verify: true\n", indent)
	}
	fmt.Fprintf(b, "%s  min_version: \"1.3\"\n", indent)
	fmt.Fprintf(b, "%s}\n", indent)
}
