# syntax=docker/dockerfile:1.10
# codex-controlplane: a static binary on distroless/static, non-root, read-only
# root filesystem friendly (writes only CODEX_DATA_DIR, a volume). Build from
# the repository root:
#   docker build -f deploy/docker/controlplane.Dockerfile -t codex-controlplane:dev .
# The binary is built exactly as `make build` builds it.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
COPY controlplane/go.mod controlplane/go.sum controlplane/
COPY schemas/go.mod schemas/
COPY shared/go.mod shared/
RUN cd controlplane && GOWORK=off go mod download
COPY controlplane/ controlplane/
COPY schemas/ schemas/
COPY shared/ shared/
RUN cd controlplane && GOWORK=off CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags='-s -w' -o /out/codex-controlplane ./cmd/codex-controlplane

# The HEALTHCHECK probe (distroless has no shell or curl).
COPY deploy/docker/healthcheck.go /src/healthcheck.go
RUN cd /src && GOWORK=off CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags='-s -w' -o /out/codex-healthcheck healthcheck.go
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="codex-controlplane" \
      org.opencontainers.image.description="persīv codex control plane: metadata only" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/persiv/codex"
COPY --from=build /out/codex-controlplane /usr/local/bin/codex-controlplane
COPY --from=build /out/codex-healthcheck /usr/local/bin/codex-healthcheck
COPY --from=build --chown=65532:65532 /out/data /var/lib/codex
ENV CODEX_CONTROLPLANE_LISTEN=0.0.0.0:8090 \
    CODEX_DATA_DIR=/var/lib/codex
USER 65532:65532
VOLUME ["/var/lib/codex"]
EXPOSE 8090 4222
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/codex-healthcheck", "https://127.0.0.1:8090/healthz"]
ENTRYPOINT ["/usr/local/bin/codex-controlplane"]
CMD ["serve"]
