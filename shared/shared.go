// Package shared holds the wire types that cross between codex-edge and
// codex-controlplane (usage batches, the enrollment exchange), and nothing
// else: no content type may ever be added
// here, since whatever this package can express can leave the customer's
// network.
package shared
