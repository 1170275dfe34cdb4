// Package controlplane holds the domain types of codex-controlplane, the
// multi-tenant SaaS that receives aggregated usage metadata from edges.
package controlplane
