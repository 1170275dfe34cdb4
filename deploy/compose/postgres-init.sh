#!/bin/sh
# Runs once, when the Postgres volume is new: the owner role (runs
# migrations, owns the tables) and the application role the binaries serve
# as (owns nothing; neither superuser nor BYPASSRLS, so row-level security
# applies), and one database per binary.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v owner_pw="$POSTGRES_OWNER_PASSWORD" -v app_pw="$POSTGRES_APP_PASSWORD" <<'SQL'
CREATE ROLE codex_owner LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD :'owner_pw';
CREATE ROLE codex_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD :'app_pw';
CREATE DATABASE codex_edge OWNER codex_owner;
CREATE DATABASE codex_controlplane OWNER codex_owner;
REVOKE ALL ON DATABASE codex_edge, codex_controlplane FROM PUBLIC;
GRANT CONNECT ON DATABASE codex_edge, codex_controlplane TO codex_app;
SQL
