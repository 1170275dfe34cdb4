// Package deploytest checks the deployment artefacts of persīv codex
// (terraform/, deploy/docker, deploy/compose, deploy/helm, deploy/systemd)
// without AWS, a Docker engine or a Kubernetes cluster: it parses them and
// holds them to the contracts of DESIGN.md (§1, §2, §8). Its tests run from
// scripts/deploy-checks.sh, which builds the helm binary they render the
// chart with.
//
// The package's non-test code is what the tests share and fuzz: the set of
// environment variables each binary reads (Vars), and small parsers of
// Dockerfiles (ParseDockerfile) and systemd units (ParseUnit).
package deploytest
