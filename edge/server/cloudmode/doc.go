// Package cloudmode holds the end-to-end test of cloud mode (DESIGN §11):
// an edge serving orgs whose data keys are wrapped by KMS keys of their
// own, against a real local KMS. The test is built with -tags localkms and
// run by scripts/local-kms.sh test, in a private network namespace; it
// uses the embedded store and the in-process cache, since the shared
// Postgres and Redis are not reachable there.
package cloudmode
