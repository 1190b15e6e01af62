-- Local only (run once by the postgres image's entrypoint on an empty data directory): one
-- LOGIN role per Accessa process, password = name. The migrations (run as accessa_migrator)
-- create the NOLOGIN roles and the grants; this creates only the logins, the owner role the
-- migrator belongs to, and the extension a non-superuser cannot create. Same roles as
-- infra/compose/postgres-logins.sh (tests/unit/test_k8s_secrets.py checks both).
CREATE EXTENSION IF NOT EXISTS vector;
CREATE ROLE accessa_owner NOLOGIN;
ALTER DATABASE accessa OWNER TO accessa_owner;
CREATE ROLE accessa_migrator LOGIN CREATEROLE PASSWORD 'accessa_migrator' IN ROLE accessa_owner;
CREATE ROLE accessa_api LOGIN PASSWORD 'accessa_api';
CREATE ROLE accessa_parser LOGIN PASSWORD 'accessa_parser';
CREATE ROLE accessa_chunker LOGIN PASSWORD 'accessa_chunker';
CREATE ROLE accessa_embedder LOGIN PASSWORD 'accessa_embedder';
CREATE ROLE accessa_finalizer LOGIN PASSWORD 'accessa_finalizer';
CREATE ROLE accessa_ops LOGIN PASSWORD 'accessa_ops';
CREATE ROLE accessa_compactor LOGIN PASSWORD 'accessa_compactor';
