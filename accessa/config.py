"""The one settings model. Every field reads `ACCESSA_<NAME>` and has a local default.

`get_settings()` is the module-level accessor; tests call `get_settings.cache_clear()`
after changing the environment.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from accessa.errors import ConfigurationError

LOCAL_JWT_SECRET = "accessa-local-dev-secret-change-me-0123456789"
PLACEHOLDER = "change-me"  # in any setting, production refuses it (infra/k8s/base/secret.yaml)
MIN_JWT_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash

LLAMAPARSE_WEBHOOK_PATH = "/api/v2/webhooks/llamaparse"

# The process logins of Postgres (accessa_<name>); migration 0017 holds their grants.
POSTGRES_LOGINS = (
    "api",
    "parser",
    "chunker",
    "embedder",
    "finalizer",
    "ops",
    "migrator",
    "compactor",
)

# Every process `Settings.require_production_ready` knows (`secrets_used` has each one's).
PROCESSES = (
    "api",
    "parser",
    "chunker",
    "embedder",
    "finalizer",
    "relay",
    "mocks",
    "ops",
    "storage-gc",
    "token",
    "console",
    "compactor",
)

STAGE_PORTS = {
    "api": 8000,
    "parser": 9101,
    "chunker": 9102,
    "embedder": 9103,
    "finalizer": 9104,
    "compactor": 9105,
}
# A stage's health port is ACCESSA_HEALTH_BASE_PORT + this (STAGE_PORTS at the default 9100).
STAGE_PORT_OFFSETS = {"parser": 1, "chunker": 2, "embedder": 3, "finalizer": 4, "compactor": 5}


class Settings(BaseSettings):
    """Accessa Ingest settings (env prefix `ACCESSA_`)."""

    # hide_input_in_errors: a refused setting's error must never echo a secret value.
    model_config = SettingsConfigDict(
        env_prefix="ACCESSA_", extra="ignore", hide_input_in_errors=True
    )

    # --- general
    env: Literal["local", "test", "production"] = Field(
        "local",
        description="Deployment environment; `production`: each process refuses local "
        "or placeholder values of the secrets it uses.",
    )
    home: Path = Field(Path(".accessa"), description="State folder: data, logs, pids, storage.")
    log_level: str = Field("INFO", description="Python log level.")
    log_json: bool = Field(True, description="JSON log lines (with correlation id).")
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector base URL (`http://collector:4318`): tracing on."
    )

    # --- Kafka
    kafka_bootstrap_servers: str | None = Field(
        None, description="External Kafka; unset = the embedded local broker."
    )
    kafka_port: int = Field(19092, description="Port of the embedded local broker.")
    kafka_controller_port: int = Field(19093, description="KRaft controller port (embedded).")
    kafka_heap: str = Field("768m", description="JVM heap of the embedded broker.")
    topic_partitions: int = Field(6, ge=1, description="Partitions per pipeline topic.")
    topic_prefix: str = Field("", description="Prefix for every topic (isolates test runs).")
    group_prefix: str = Field("accessa-", description="Consumer group = prefix + stage name.")
    kafka_brokers: int = Field(
        1, ge=1, le=5, description="Nodes of the embedded KRaft cluster (3 = replicated)."
    )
    kafka_secure: bool = Field(
        False, description="Embedded broker on SASL_SSL: local CA, SCRAM users, ACLs."
    )
    kafka_replication_factor: int | None = Field(
        None,
        ge=1,
        description="Topic replicas; unset = min(3, brokers) embedded, else broker default.",
    )
    kafka_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="Topic min.insync.replicas; unset = 2 when replicated, else broker's.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = (
        Field(None, description="Unset = PLAINTEXT, or SASL_SSL on the secured embedded broker.")
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism."
    )
    kafka_sasl_username: str | None = Field(
        None,
        description="SASL user (OAUTHBEARER: client id); unset on the secured embedded "
        "broker = the process's own generated principal.",
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (OAUTHBEARER: client secret)."
    )
    kafka_sasl_oauth_token_url: str | None = Field(
        None, description="OAUTHBEARER: OAuth 2.0 token endpoint (client-credentials grant)."
    )
    kafka_sasl_oauth_scope: str | None = Field(None, description="OAUTHBEARER: token scope.")
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA bundle that verifies the brokers; unset = system CAs."
    )
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (mTLS).")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client private key (mTLS).")
    kafka_ssl_key_password: SecretStr | None = Field(None, description="Key file password.")
    kafka_ssl_check_hostname: bool = Field(True, description="Match broker names to certs.")
    topic_retention_hours: float = Field(
        168.0,
        gt=0,
        description="`retention.ms` of the pipeline topics (DLQ topics: 30 days "
        "if longer): how far back `accessa replay` can reach.",
    )

    # --- Postgres
    database_url: str | None = Field(
        None, description="External Postgres URL; unset = the embedded local server."
    )
    postgres_port: int = Field(54329, description="Port of the embedded local Postgres.")
    postgres_credentials: Path | None = Field(
        None,
        description="The embedded Postgres's generated login passwords (JSON); unset = "
        "HOME/postgres/credentials.json.",
    )
    postgres_tls: bool = Field(
        False, description="Embedded Postgres with ssl=on (local CA); clients use verify-full."
    )
    db_pool_min: int = Field(1, ge=0, description="asyncpg pool minimum size.")
    db_pool_max: int = Field(10, ge=1, description="asyncpg pool maximum size.")

    # --- storage
    storage_backend: Literal["local", "s3"] = Field("local", description="Object store.")
    storage_dir: Path | None = Field(None, description="Local storage root (default HOME/storage).")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint URL.")
    s3_bucket: str = Field("accessa", description="S3 bucket.")
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_access_key_id: SecretStr = Field(SecretStr("test"), description="S3 access key id.")
    s3_secret_access_key: SecretStr = Field(SecretStr("test"), description="S3 secret key.")
    storage_gc_grace_s: int = Field(
        86400,
        ge=0,
        description="`accessa storage gc` deletes a raw object no live upload needs "
        "(orphaned, expired or abandoned) only once it is at least this old.",
    )

    # --- stage runtime
    stage_concurrency: int = Field(16, ge=1, description="Documents in flight per process.")
    batch_max_records: int = Field(256, ge=1, description="Records fetched per poll.")
    retry_max_attempts: int = Field(3, ge=0, description="Retry-topic attempts before the DLQ.")
    retry_base_delay_s: float = Field(3.0, ge=0, description="Backoff base: delay = base * 2^n.")
    shutdown_grace_s: float = Field(30.0, gt=0, description="Drain time on SIGTERM.")
    health_port: int | None = Field(
        None, description="Port for /health, /ready, /metrics (default per process)."
    )
    health_base_port: int = Field(
        9100,
        ge=1,
        le=65530,
        description="Stage health ports when ACCESSA_HEALTH_PORT is unset: "
        "parser base+1, chunker +2, embedder +3, finalizer +4, compactor +5.",
    )
    health_host: str = Field("127.0.0.1", description="Bind address of the health server.")
    max_message_bytes: int = Field(1_048_576, description="Largest event the runtime accepts.")
    max_delivery_attempts: int = Field(
        3, ge=2, description="Handler starts a crash (OOM kill, segfault) may end before the DLQ."
    )
    fault_inject: str | None = Field(
        None, description="TEST ONLY: `<stage>:<point>[:<n>]` SIGKILLs the process there."
    )

    # --- producer API
    api_host: str = Field("127.0.0.1", description="API bind address.")
    api_port: int = Field(8000, description="API port.")
    api_url: str = Field("http://127.0.0.1:8000", description="API base URL the CLI calls.")
    max_upload_mb: float = Field(25.0, gt=0, description="Largest accepted PDF (MB).")
    pdf_max_expanded_mb: float = Field(
        256.0, gt=0, description="Refuse PDFs whose compressed streams inflate past this (MB)."
    )
    jwt_secret: SecretStr = Field(SecretStr(LOCAL_JWT_SECRET), description="HS256 secret.")
    jwt_audience: str = Field("authenticated", description="Required `aud` claim.")
    jwks_url: str | None = Field(None, description="JWKS URL for RS256/ES256 tokens.")
    jwt_allow_hs256: bool = Field(
        False, description="Accept HS256 tokens (ACCESSA_JWT_SECRET) while ACCESSA_JWKS_URL is set."
    )
    jwks_lifespan_s: float = Field(
        300.0,
        gt=0,
        description="JWKS cache lifetime: a key removed from the served set stops "
        "being trusted this long after (at most).",
    )
    jwt_issuer: str | None = Field(None, description="Required `iss` claim; unset = not checked.")
    jwt_max_age_s: int | None = Field(
        None,
        gt=0,
        description="Refuse tokens valid for longer: exp - iat (exp - now without "
        "`iat`); unset = any lifetime.",
    )
    console_host: str = Field(
        "127.0.0.1", description="Console bind address (`accessa run console`, the ops identity)."
    )
    console_port: int = Field(8010, description="Console port.")
    console_url: str = Field(
        "http://127.0.0.1:8010", description="Console base URL `accessa console` links to."
    )
    console_token_ttl_s: int = Field(
        300, gt=0, description="Lifetime of a one-time console login link (`accessa console`)."
    )
    console_session_ttl_s: int = Field(
        43200, gt=0, description="Lifetime of a console session after its link was opened."
    )
    signed_url_ttl_s: int = Field(900, description="Lifetime of upload URLs.")
    upload_expiry_grace_s: int = Field(
        3600,
        ge=0,
        description="A declared upload whose bytes never came expires this long after its URL did.",
    )
    sse_heartbeat_s: float = Field(
        15.0, gt=0, description="Job event streams send a `: heartbeat` comment this often."
    )
    rate_uploads_per_day: int = Field(30, description="Uploads per user per day.")
    rate_polls_per_minute: int = Field(10, description="Status polls per job per minute.")
    rate_active_jobs: int = Field(2, description="Concurrent unfinished jobs per user.")
    rate_requests_per_hour: int = Field(1000, description="Requests per endpoint per hour.")
    rate_limits_enabled: bool = Field(True, description="Turn rate limiting off (benchmarks).")
    api_max_json_kb: int = Field(
        64, ge=1, description="Largest JSON request body (KB); past it 413, while streaming."
    )
    api_max_webhook_kb: int = Field(
        256, ge=1, description="Largest webhook request body (KB); past it 413."
    )
    api_limit_concurrency: int = Field(
        512, ge=1, description="Open connections (and tasks) per API process; past it 503."
    )
    api_timeout_keep_alive_s: int = Field(
        5, ge=1, description="Close an idle keep-alive connection after this long."
    )
    api_header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Close a connection whose request headers are not all in "
        "this long after it opened (or after its previous response).",
    )
    api_max_header_bytes: int = Field(
        16384,
        ge=1024,
        description="Largest request line + headers (h11's max incomplete "
        "event size); past it 400.",
    )
    api_sse_streams_per_user: int = Field(
        5,
        ge=1,
        description="Concurrent job event streams per user per API process; past it 429.",
    )
    outbox_poll_s: float = Field(0.5, description="Outbox relay idle poll interval.")
    outbox_notify: bool = Field(
        True,
        description="Wake the outbox relay when a row commits: in its own process directly, "
        "from other processes by Postgres NOTIFY. Off: it only polls every ACCESSA_OUTBOX_POLL_S.",
    )

    # --- parser
    parser_backend: Literal["local", "llamaparse"] = Field("local", description="PDF parser.")
    parser_memory_limit_mb: int = Field(
        512, ge=64, description="Local parser: memory pdfium may use per PDF, else `pdf_bomb`."
    )
    ocr: Literal["on", "off"] = Field(
        "on", description="Local parser: OCR pages without a text layer (Tesseract)."
    )
    ocr_dpi: int = Field(300, ge=100, le=600, description="Local parser: OCR page resolution.")
    quality_min_ocr_confidence: float = Field(
        0.85,
        ge=0,
        le=1,
        description="A page OCR read with a lower mean word confidence is "
        "read again from its upscaled image, and if still lower flags the job "
        "`low_ocr_confidence`.",
    )
    quality_min_image_page_words: int = Field(
        20,
        ge=0,
        description="An image page (see ACCESSA_QUALITY_IMAGE_PAGE_COVERAGE) that "
        "yields fewer words flags the job `little_text_on_image_page`.",
    )
    quality_image_page_coverage: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of a page images must cover for it to count as an image page (a scan).",
    )
    parser_document_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Local parser: a document's whole parse (text and OCR) may take "
        "this long, then its worker is killed and the job fails `parse_timeout`; unset = 60 s + "
        "1.5 s per page of the page cap (3060 s).",
    )
    llamaparse_base_url: str = Field("http://127.0.0.1:8091", description="LlamaParse API.")
    llamaparse_api_key: SecretStr = Field(SecretStr("llx-mock"), description="LlamaParse key.")
    llamaparse_mode: Literal["poll", "webhook"] = Field(
        "poll", description="`webhook`: LlamaParse calls the API back when a job ends."
    )
    llamaparse_webhook_url: str | None = Field(
        None, description="Webhook callback; unset = ACCESSA_API_URL + /api/v2/webhooks/llamaparse."
    )
    llamaparse_webhook_secret: SecretStr = Field(
        SecretStr("whsec-local"), description="HMAC secret of LlamaParse webhooks."
    )
    llamaparse_timeout_s: float = Field(120.0, description="Give up on a parse job after.")
    llamaparse_webhook_recheck_s: float = Field(
        15.0, gt=0, description="Webhook mode: re-check a job whose webhook is late this often."
    )

    # --- retention (`accessa gc`)
    retention_processed_events_days: float = Field(
        14.0,
        gt=0,
        description="Stage dedup rows older than this are deleted; at least twice "
        "the topic retention, or a redelivered or replayed record could run twice.",
    )
    retention_outbox_days: float = Field(
        7.0, gt=0, description="Published outbox rows older than this are deleted."
    )
    retention_embedding_cache_days: float = Field(
        90.0,
        gt=0,
        description="Cached embeddings older than this are deleted (re-embedded when needed).",
    )
    retention_dlq_redrives_days: float = Field(
        45.0,
        gt=0,
        description="Redrive records older than this are deleted; at least the "
        "DLQ topics' retention, or a DLQ record could be redriven twice.",
    )
    retention_batch_rows: int = Field(
        5000, ge=1, description="`accessa gc` deletes at most this many rows per statement."
    )

    # --- chunker
    chunker_version: str = Field("markdown-simple@2", description="Chunker id@version.")
    chunk_target_tokens: int = Field(512, ge=32, description="Chunk token budget.")
    chunk_overlap_tokens: int = Field(64, ge=0, description="Overlap between split chunks.")

    # --- embedder
    embed_provider: Literal["openai", "local"] = Field("openai", description="Embeddings.")
    openai_base_url: str = Field("http://127.0.0.1:8092/v1", description="OpenAI API base.")
    openai_api_key: SecretStr = Field(SecretStr("sk-mock"), description="OpenAI API key.")
    embed_model: str = Field("text-embedding-3-small", description="Embedding model.")
    embed_dimensions: int = Field(1536, description="Vector dimensions.")
    embed_batch_inputs: int = Field(256, le=2048, description="Inputs per embeddings request.")
    embed_batch_tokens: int = Field(300_000, description="Tokens per embeddings request.")
    embed_max_inflight: int = Field(8, ge=1, description="Concurrent embedding requests.")
    embed_price_per_mtok: float = Field(0.02, description="USD per million tokens.")
    budget_user_daily_usd: float | None = Field(None, description="Per-user daily budget.")
    budget_global_daily_usd: float | None = Field(None, description="Global daily budget.")
    budget_recheck_s: float = Field(60.0, gt=0, description="How often paused work rechecks.")

    # --- reprocessing
    reprocess_grace_s: float = Field(
        3600.0, ge=0, description="`accessa reprocess gc` keeps replaced versions this long."
    )

    # --- segmented vector storage (accessa/segments.py, migration 0022)
    segment_seal_rows: int = Field(
        20000,
        ge=1,
        description="The compactor seals the growing chunk segment (builds its HNSW index in "
        "bulk) once it holds this many rows.",
    )
    segment_seal_age_s: float = Field(
        600.0,
        gt=0,
        description="The compactor also seals the growing segment once its oldest row is this old.",
    )
    segment_poll_s: float = Field(
        5.0, gt=0, description="How often the compactor checks the growing segment."
    )
    segment_build_memory_mb: int = Field(
        512,
        ge=64,
        description="maintenance_work_mem of the compactor's HNSW builds: a segment's graph "
        "that fits is built several times faster.",
    )

    # --- mock servers
    mock_llamaparse_port: int = Field(8091, description="Mock LlamaParse port.")
    mock_openai_port: int = Field(8092, description="Mock OpenAI port.")
    mock_latency_ms: float = Field(0.0, description="Mock added latency per request.")
    mock_failure_rate: float = Field(0.0, ge=0, le=1, description="Mock transient failure rate.")

    def secrets_used(self, process: str) -> set[str]:
        """The secret settings `process` uses with these backends (PROCESSES; README
        "Security"): production refuses their defaults there, a pod holds no other."""
        s3 = {"s3_access_key_id", "s3_secret_access_key"} if self.storage_backend == "s3" else set()
        openai = {"openai_api_key"} if self.embed_provider == "openai" else set()
        llamaparse = self.parser_backend == "llamaparse"
        kafka = {"kafka_sasl_password", "kafka_ssl_key_password"}
        table: dict[str, set[str]] = {
            # Tokens and upload URLs; query embedding (routes/search.py); webhooks; uploads.
            "api": {"jwt_secret", *openai, *s3, *kafka}
            | ({"llamaparse_webhook_secret"} if llamaparse else set()),
            "parser": {*s3, *kafka} | ({"llamaparse_api_key"} if llamaparse else set()),
            "chunker": {*s3, *kafka},  # reads the parsed markdown from storage
            "embedder": {*openai, *kafka},
            "finalizer": kafka,
            "relay": kafka,
            "mocks": {"llamaparse_webhook_secret"},  # the mock LlamaParse signs webhooks
            "ops": kafka,  # operator commands and jobs: migrate, gc, dlq, replay, ...
            "console": kafka,  # as ops: reads the DLQs, redrives; no JWT (its own sessions)
            "storage-gc": s3,  # `accessa storage gc` deletes raw objects
            "token": {"jwt_secret"},  # `accessa token`, `--user`: mints JWTs
            "compactor": set(),  # Postgres only: seals chunk segments
        }
        if process not in table:
            raise ValueError(f"unknown process {process!r}; one of {', '.join(PROCESSES)}")
        return table[process]

    def production_problems(self, process: str) -> list[str]:
        """Env names (never values) production refuses in `process`: the embedded default or a
        `change-me` of a secret it uses, a JWT secret under 32 bytes where it signs or verifies
        with it, and `change-me` in any non-secret setting (every process reads those)."""
        used = self.secrets_used(process)
        problems = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            secret = isinstance(value, SecretStr) or isinstance(field.default, SecretStr)
            if secret and name not in used:
                continue  # a secret this process never reads: it need not hold it
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if not isinstance(text, str):
                continue
            default = field.default
            is_default = isinstance(default, SecretStr) and text == default.get_secret_value()
            short = name == "jwt_secret" and len(text.encode()) < MIN_JWT_SECRET_BYTES
            if PLACEHOLDER in text.lower() or short or is_default:
                problems.append(f"ACCESSA_{name.upper()}")
        return problems

    def require_production_ready(self, process: str) -> None:
        """With ACCESSA_ENV=production, refuse to start `process` on `production_problems`
        (a ConfigurationError naming every offending env var); no-op in local and test."""
        if self.env != "production":
            return
        if problems := self.production_problems(process):
            raise ConfigurationError(
                "production_secrets",
                f"{process}: production refuses local or placeholder values; set a real "
                "value for " + ", ".join(problems),
            )

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def bootstrap_servers(self) -> str:
        if self.kafka_bootstrap_servers:
            return self.kafka_bootstrap_servers
        return ",".join(f"127.0.0.1:{port}" for port in self.kafka_node_ports)

    @property
    def kafka_node_ports(self) -> list[int]:
        """Client ports of the embedded nodes: KAFKA_PORT, then every 10 ports up."""
        return [self.kafka_port + 10 * i for i in range(self.kafka_brokers)]

    @property
    def kafka_protocol(self) -> str:
        if self.kafka_security_protocol:
            return self.kafka_security_protocol
        return "SASL_SSL" if self.embedded_kafka and self.kafka_secure else "PLAINTEXT"

    @property
    def kafka_ca_file(self) -> Path | None:
        """The CA that verifies the brokers (the embedded secured broker's own by default)."""
        if self.kafka_ssl_cafile or not (self.embedded_kafka and self.kafka_secure):
            return self.kafka_ssl_cafile
        return self.home.resolve() / "kafka" / "tls" / "ca.crt"

    @property
    def topic_replication(self) -> tuple[int, int | None]:
        """(replication factor, min.insync.replicas) for new topics; -1/None = broker's own."""
        rf = self.kafka_replication_factor or (
            min(3, self.kafka_brokers) if self.embedded_kafka else -1
        )
        isr = self.kafka_min_insync_replicas or (2 if rf >= 3 else None)
        return rf, isr

    @property
    def pdf_max_expanded_bytes(self) -> int:
        return int(self.pdf_max_expanded_mb * 1_048_576)

    @property
    def dsn(self) -> str:
        """ACCESSA_DATABASE_URL, or the embedded server's bootstrap superuser (it creates the
        database and the logins; no runtime process uses it: see `dsn_for`)."""
        return self.dsn_for(None)

    @property
    def postgres_credentials_file(self) -> Path:
        """The embedded server's generated password of each login (accessa.migrate.bootstrap)."""
        return self.postgres_credentials or self.home.resolve() / "postgres" / "credentials.json"

    def dsn_for(self, process: str | None = "ops") -> str:
        """The DSN `process` (api, parser, ..., ops, migrator) logs in with: on an external
        server ACCESSA_DATABASE_URL, which is that process's own login; on the embedded one
        its login `accessa_<process>` with the generated password (`ops` for any other)."""
        if self.database_url:
            return self.database_url
        try:
            passwords = json.loads(self.postgres_credentials_file.read_text())
        except FileNotFoundError:
            passwords = {}  # before the first bootstrap: the superuser over trust only
        user = "postgres"
        if process is not None:
            user = process if process in POSTGRES_LOGINS else "ops"
            user = f"accessa_{user}"
        password = passwords.get(user)
        auth = f"{user}:{quote(password, safe='')}" if password else user
        dsn = f"postgresql://{auth}@127.0.0.1:{self.postgres_port}/accessa"
        if self.postgres_tls:
            ca = quote(str(self.home.resolve() / "postgres" / "tls" / "ca.crt"))
            dsn += f"?sslmode=verify-full&sslrootcert={ca}"
        return dsn

    @property
    def storage_root(self) -> Path:
        return self.storage_dir or self.home / "storage"

    @property
    def llamaparse_callback_url(self) -> str | None:
        """Where LlamaParse posts job outcomes in webhook mode; None when the parser polls."""
        if self.llamaparse_mode != "webhook":
            return None
        return self.llamaparse_webhook_url or self.api_url.rstrip("/") + LLAMAPARSE_WEBHOOK_PATH

    def port_for(self, process: str) -> int:
        """The health/metrics port of a process (`api`, `parser`, ...): ACCESSA_HEALTH_PORT,
        else a stage's ACCESSA_HEALTH_BASE_PORT + its offset (9101-9104 by default)."""
        if self.health_port:
            return self.health_port
        if process in STAGE_PORT_OFFSETS:
            return self.health_base_port + STAGE_PORT_OFFSETS[process]
        return STAGE_PORTS.get(process, self.health_base_port)


@lru_cache
def get_settings() -> Settings:
    return Settings()
