# syntax=docker/dockerfile:1.10
# codex-edge: a static binary on distroless/static, non-root, read-only root
# filesystem friendly (writes only CODEX_DATA_DIR, a volume). Build from the
# repository root:
#   docker build -f deploy/docker/edge.Dockerfile -t codex-edge:dev .
# The binary is built exactly as `make build` builds it.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
WORKDIR /src
# Modules first, so the download layer is cached across source changes.
COPY edge/go.mod edge/go.sum edge/
COPY schemas/go.mod schemas/
COPY shared/go.mod shared/
RUN cd edge && GOWORK=off go mod download
COPY edge/ edge/
COPY schemas/ schemas/
COPY shared/ shared/
# GOWORK=off: the edge module's replace directives point at ../schemas and
# ../shared, so only those three trees are in the build context.
RUN cd edge && GOWORK=off CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags='-s -w' -o /out/codex-edge ./cmd/codex-edge

# The HEALTHCHECK probe: distroless has no shell or curl, and the edge has no
# health subcommand, so a 20-line static Go program does the GET.
COPY deploy/docker/healthcheck.go /src/healthcheck.go
RUN cd /src && GOWORK=off CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags='-s -w' -o /out/codex-healthcheck healthcheck.go
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="codex-edge" \
      org.opencontainers.image.description="persīv codex edge: transparent AI gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/persiv/codex"
COPY --from=build /out/codex-edge /usr/local/bin/codex-edge
COPY --from=build /out/codex-healthcheck /usr/local/bin/codex-healthcheck
COPY --from=build --chown=65532:65532 /out/data /var/lib/codex
# Plain HTTP is allowed on loopback only: outside a laptop, mount a
# certificate and set CODEX_TLS_CERT and CODEX_TLS_KEY.
ENV CODEX_LISTEN=0.0.0.0:8443 \
    CODEX_ADMIN_LISTEN=127.0.0.1:8081 \
    CODEX_DATA_DIR=/var/lib/codex
USER 65532:65532
VOLUME ["/var/lib/codex"]
EXPOSE 8443
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/codex-healthcheck", "https://127.0.0.1:8443/healthz"]
ENTRYPOINT ["/usr/local/bin/codex-edge"]
CMD ["serve"]
