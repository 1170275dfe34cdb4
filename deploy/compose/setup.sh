#!/usr/bin/env bash
# One-time preparation of the local evaluation (deploy/compose): a local CA
# and a certificate for edge, controlplane, nats, redis and localhost; random
# passwords in .env; a BYOK master key; the edge's admin token; the control plane's secrets key (it
# seals the NATS seeds); the NATS operator configuration from the control
# plane. Needs openssl and docker compose. Re-running keeps what
# exists. Everything generated stays in this directory (.gitignored).
set -euo pipefail
cd "$(dirname "$0")"
command -v openssl >/dev/null || { echo "setup.sh: openssl is needed" >&2; exit 1; }

mkdir -p secrets/tls
# The keys below are readable by the containers' own users (65532, redis,
# nats), which a bind mount cannot remap: the directory, not the files,
# keeps other users of this host out.
chmod 0700 secrets
if [ ! -f secrets/tls/cert.pem ]; then
  echo "==> local CA and certificate (secrets/tls)"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=codex local evaluation CA" -keyout secrets/tls/ca.key -out secrets/tls/ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=codex local" \
    -keyout secrets/tls/key.pem -out secrets/tls/req.csr 2>/dev/null
  printf 'subjectAltName=DNS:edge,DNS:controlplane,DNS:nats,DNS:redis,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >secrets/tls/ext.cnf
  openssl x509 -req -in secrets/tls/req.csr -CA secrets/tls/ca.pem -CAkey secrets/tls/ca.key -CAcreateserial \
    -days 825 -extfile secrets/tls/ext.cnf -out secrets/tls/cert.pem 2>/dev/null
  rm -f secrets/tls/req.csr secrets/tls/ext.cnf secrets/tls/ca.srl
  mv secrets/tls/ca.key secrets/ca.key
  # The containers run as other users (65532, redis, nats): a local
  # evaluation key readable by them. Never do this with a real key.
  chmod 0644 secrets/tls/*.pem
fi
if [ ! -f secrets/byok.key ]; then
  echo "==> BYOK master key (secrets/byok.key)"
  (umask 022; openssl rand -hex 32 >secrets/byok.key)
fi
if [ ! -f secrets/admin.token ]; then
  echo "==> edge admin API token (secrets/admin.token: send it as 'Authorization: Bearer ...' to port 8081)"
  (umask 022; openssl rand -hex 32 >secrets/admin.token)
fi
if [ ! -f secrets/controlplane-secrets.kek ]; then
  echo "==> control plane secrets key (secrets/controlplane-secrets.kek: seals its NATS seeds)"
  (umask 022; openssl rand -hex 32 >secrets/controlplane-secrets.kek)
fi
if [ ! -f .env ]; then
  echo "==> passwords (.env)"
  umask 077
  {
    echo "POSTGRES_PASSWORD=$(openssl rand -hex 24)"
    echo "POSTGRES_OWNER_PASSWORD=$(openssl rand -hex 24)"
    echo "POSTGRES_APP_PASSWORD=$(openssl rand -hex 24)"
    echo "REDIS_PASSWORD=$(openssl rand -hex 24)"
  } >.env
fi
if [ ! -s nats/codex-operator.conf ]; then
  echo "==> NATS operator configuration (nats/codex-operator.conf)"
  docker compose build controlplane
  # The operator and accounts live in the control plane's store, which
  # every instance shares: start Postgres and migrate it first (run waits
  # for Postgres to be healthy and leaves it running).
  docker compose run --rm controlplane-migrate
  docker compose run --rm --no-deps controlplane nats-config --resolver-dir /data/jwt --store-dir /data/jetstream >nats/codex-operator.conf.new
  mv nats/codex-operator.conf.new nats/codex-operator.conf
fi
echo "ready: docker compose -f $(pwd)/compose.yaml up -d"
