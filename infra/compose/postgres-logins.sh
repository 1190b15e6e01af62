#!/bin/sh
# Run once by the postgres image's entrypoint on an empty data directory (docker-compose.yml
# mounts it into /docker-entrypoint-initdb.d): one LOGIN role per Accessa process, passwords
# from the PG_PASSWORD_* variables of the postgres service. The migrations (run as
# accessa_migrator) create the NOLOGIN roles and the grants; this creates only the logins, the
# owner role the migrator belongs to, and the extension a non-superuser cannot create.
# Same roles as infra/k8s/overlays/local/postgres-logins.sql (tests/unit/test_k8s_secrets.py).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v migrator="$PG_PASSWORD_MIGRATOR" -v api="$PG_PASSWORD_API" \
  -v parser="$PG_PASSWORD_PARSER" -v chunker="$PG_PASSWORD_CHUNKER" \
  -v embedder="$PG_PASSWORD_EMBEDDER" -v finalizer="$PG_PASSWORD_FINALIZER" \
  -v ops="$PG_PASSWORD_OPS" -v compactor="$PG_PASSWORD_COMPACTOR" <<'SQL'
CREATE EXTENSION IF NOT EXISTS vector;
CREATE ROLE accessa_owner NOLOGIN;
ALTER DATABASE accessa OWNER TO accessa_owner;
CREATE ROLE accessa_migrator LOGIN CREATEROLE PASSWORD :'migrator' IN ROLE accessa_owner;
CREATE ROLE accessa_api LOGIN PASSWORD :'api';
CREATE ROLE accessa_parser LOGIN PASSWORD :'parser';
CREATE ROLE accessa_chunker LOGIN PASSWORD :'chunker';
CREATE ROLE accessa_embedder LOGIN PASSWORD :'embedder';
CREATE ROLE accessa_finalizer LOGIN PASSWORD :'finalizer';
CREATE ROLE accessa_ops LOGIN PASSWORD :'ops';
CREATE ROLE accessa_compactor LOGIN PASSWORD :'compactor';
SQL
