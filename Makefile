# persīv codex: build, demo, test, bench, lint. See README.md.
SHELL := /bin/bash
GO    ?= go
BIN   := bin

.PHONY: build nats-server demo test bench soak chaos lint vulncheck fuzz images clean

# Static, trimmed binaries: the same way the container images build them.
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/ ./edge/cmd/... ./controlplane/cmd/...

# nats-server, for the chaos run's NATS cluster: built from the version
# controlplane/go.mod requires (the one the control plane is tested with).
nats-server:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/nats-server github.com/nats-io/nats-server/v2

demo: build
	@scripts/demo.sh

test:
	@scripts/test.sh

bench: build
	@scripts/bench.sh

soak: build
	@BENCH_PHASES=soak BENCH_SOAK=$${BENCH_SOAK:-10m} BENCH_GO=0 scripts/bench.sh

# Two edges on one Postgres and Redis with metric sharing on to two control
# plane instances on a three-node NATS cluster, under steady load while
# Redis, Postgres, a NATS node, a control plane instance and an edge are
# killed in turn; reports failed requests, lost rows and lost or doubled
# metrics (scripts/chaos.sh; make test runs a short version).
chaos: build nats-server
	@scripts/chaos.sh

# gofmt, go vet, then golangci-lint (.golangci.yml) in each module; the
# first run builds golangci-lint into .tmp/bin (scripts/lint.sh).
lint:
	@scripts/lint.sh

# govulncheck over every module against an offline vulnerability database
# (scripts/vulncheck.sh; its allow-list says why each accepted finding is).
vulncheck:
	@scripts/vulncheck.sh

# The container images, built without a container engine from the
# Dockerfiles in deploy/docker (package deploy/deploytest/ociimage):
# .tmp/images/codex-edge.tar and codex-controlplane.tar, for docker load.
images:
	@cd deploy/deploytest && $(GO) run ./cmd/codex-image -root ../.. -out ../../.tmp/images -version $${VERSION:-dev}

# Short fuzz runs of every fuzz target (longer: FUZZTIME=5m make fuzz).
fuzz:
	@scripts/fuzz.sh

clean:
	rm -rf $(BIN) .tmp
