// Package shared holds the wire types that cross from codex-edge to
// codex-controlplane, and nothing else: no content type may ever be added
// here, since whatever this package can express can leave the customer's
// network.
package shared
