"""Every Kafka client's connection: bootstrap servers, TLS and SASL, from the settings.

One FastStream security object (`security()`) is the source of truth: the stage brokers take it
as is, and the aiokafka clients (producers, the admin client, the CLI's consumers) take
FastStream's own translation of it (`parse_security`). Each process connects as its own
principal: explicit `ACCESSA_KAFKA_SASL_USERNAME`/`_PASSWORD`, or, on the secured embedded
broker, the generated credential of the process (`api`, `parser`, ..., `ops` for the CLI).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from faststream.kafka.security import parse_security
from faststream.security import (
    BaseSecurity,
    SASLOAuthBearer,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic import SecretStr

from accessa.config import Settings
from accessa.errors import ConfigurationError

OPS = "ops"  # the principal of the CLI, migrations and tests
_DENIED = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)
_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def principal_name(process: str) -> str:
    """The SASL user of a process on the secured embedded broker (`accessa-parser`, ...)."""
    return f"accessa-{process}"


def credentials_file(settings: Settings) -> Path:
    """Where the secured embedded broker keeps each process's generated password."""
    return settings.home.resolve() / "kafka" / "credentials.json"


def _credential(settings: Settings, process: str) -> tuple[str, str] | None:
    if settings.kafka_sasl_username:
        password = (
            settings.kafka_sasl_password.get_secret_value()
            if (settings.kafka_sasl_password)
            else ""
        )
        return settings.kafka_sasl_username, password
    if settings.embedded_kafka and settings.kafka_secure:
        path = credentials_file(settings)
        try:
            users = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigurationError(
                "kafka_credentials_missing",
                f"no Kafka credentials at {path}: run `accessa infra up`",
            ) from exc
        user = principal_name(process if process in users.get("processes", []) else OPS)
        return user, users["passwords"][user]
    return None


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the brokers against the CA file (or the system's CAs); presents a client
    certificate when one is set (mTLS)."""
    cafile = settings.kafka_ca_file
    try:
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        ctx.check_hostname = settings.kafka_ssl_check_hostname
        if settings.kafka_ssl_certfile:
            password = settings.kafka_ssl_key_password
            ctx.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
                password.get_secret_value() if password else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            "kafka_tls_files",
            f"cannot load the Kafka TLS files ({cafile or 'system CAs'}, "
            f"{settings.kafka_ssl_certfile or 'no client certificate'}): {exc}",
        ) from exc
    return ctx


def security(settings: Settings, process: str = OPS) -> BaseSecurity | None:
    """FastStream's security object for `process`, or None for PLAINTEXT."""
    protocol = settings.kafka_protocol
    if protocol == "PLAINTEXT":
        return None
    use_ssl = protocol in ("SSL", "SASL_SSL")
    ctx = ssl_context(settings) if use_ssl else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ctx, use_ssl=True)
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        return SASLOAuthBearer(ssl_context=ctx, use_ssl=use_ssl)
    credential = _credential(settings, process)
    if credential is None:
        raise ConfigurationError(
            "kafka_credentials_missing",
            f"{protocol} with {mechanism} needs ACCESSA_KAFKA_SASL_USERNAME and _PASSWORD",
        )
    return _SASL[mechanism](credential[0], credential[1], ssl_context=ctx, use_ssl=use_ssl)


class OAuthClientCredentials(AbstractTokenProvider):
    """OAUTHBEARER tokens from an OAuth 2.0 token endpoint (client-credentials grant),
    cached until shortly before they expire."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str | None):
        self.token_url, self.client_id, self.client_secret = token_url, client_id, client_secret
        self.scope = scope
        self._token: str | None = None
        self._expires = 0.0

    async def token(self) -> str:
        if self._token is None or time.monotonic() > self._expires:
            form = {"grant_type": "client_credentials"}
            if self.scope:
                form["scope"] = self.scope
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(
                    self.token_url, data=form, auth=(self.client_id, self.client_secret)
                )
            response.raise_for_status()
            body = response.json()
            self._token = str(body["access_token"])
            self._expires = time.monotonic() + max(0.0, float(body.get("expires_in", 300)) - 30)
        return self._token


def token_provider(settings: Settings, process: str = OPS) -> AbstractTokenProvider | None:
    if settings.kafka_protocol.startswith("SASL") and settings.kafka_sasl_mechanism == (
        "OAUTHBEARER"
    ):
        if not settings.kafka_sasl_oauth_token_url:
            raise ConfigurationError(
                "kafka_credentials_missing", "OAUTHBEARER needs ACCESSA_KAFKA_SASL_OAUTH_TOKEN_URL"
            )
        user, secret = _credential(settings, process) or ("", "")
        return OAuthClientCredentials(
            settings.kafka_sasl_oauth_token_url, user, secret, settings.kafka_sasl_oauth_scope
        )
    return None


def client_kwargs(settings: Settings, process: str = OPS) -> dict[str, Any]:
    """Connection keyword arguments for any aiokafka client of `process`."""
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers}
    kwargs.update(parse_security(security(settings, process)))
    provider = token_provider(settings, process)
    if provider is not None:
        kwargs["sasl_oauth_token_provider"] = provider
    return kwargs


def broker_kwargs(settings: Settings, process: str) -> dict[str, Any]:
    """Keyword arguments for a FastStream `KafkaBroker` of `process`."""
    return {
        # FastStream takes a string as one address; aiokafka splits it on commas.
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "security": security(settings, process),
        "sasl_oauth_token_provider": token_provider(settings, process),
    }


def producer(settings: Settings, process: str = OPS, **kwargs: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**client_kwargs(settings, process), **kwargs)


def consumer(
    settings: Settings, *topics: str, process: str = OPS, **kwargs: Any
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **client_kwargs(settings, process), **kwargs)


def admin(settings: Settings, process: str = OPS, **kwargs: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_kwargs(settings, process), **kwargs)


def explain(exc: BaseException) -> str:
    """One readable line for a failed Kafka connection: bad credential, untrusted certificate,
    denied resource, unreachable broker."""
    chain = [exc, exc.__cause__, exc.__context__]
    for err in (e for e in chain if e is not None):
        if isinstance(err, ssl.SSLCertVerificationError):
            return f"TLS: the broker's certificate is not trusted ({err.verify_message})"
        if isinstance(err, ssl.SSLError):
            return f"TLS handshake with the broker failed ({err.reason or err})"
        if isinstance(err, AuthenticationFailedError | SaslAuthenticationFailed):
            return f"Kafka SASL authentication failed (wrong username or password): {err}"
        if isinstance(err, _DENIED):
            return f"Kafka denied this principal: {type(err).__name__} {err}"
        if isinstance(err, ConfigurationError):
            return err.message
    text = str(exc)
    return f"Kafka broker not reachable ({type(exc).__name__}{': ' + text if text else ''})"


def pinned(settings: Settings, process: str = OPS) -> Settings:
    """`settings` with the Kafka connection of `process` spelled out (servers, protocol, CA,
    credential), so that it holds under another state folder or in a child process."""
    update: dict[str, Any] = {
        "kafka_bootstrap_servers": settings.bootstrap_servers,
        "kafka_security_protocol": settings.kafka_protocol,
        "kafka_ssl_cafile": settings.kafka_ca_file,
    }
    sasl = settings.kafka_protocol.startswith("SASL")
    if sasl and (credential := _credential(settings, process)):
        update["kafka_sasl_username"] = credential[0]
        update["kafka_sasl_password"] = SecretStr(credential[1])
    return settings.model_copy(update=update)


def child_env(settings: Settings, process: str) -> dict[str, str]:
    """Environment that points a child process at the same Kafka as `settings`, as its own
    principal (`process`), even when the child has another state folder."""
    own = pinned(settings, process)
    env = {
        "ACCESSA_KAFKA_BOOTSTRAP_SERVERS": own.bootstrap_servers,
        "ACCESSA_KAFKA_SECURITY_PROTOCOL": own.kafka_protocol,
        "ACCESSA_KAFKA_SASL_MECHANISM": own.kafka_sasl_mechanism,
    }
    if own.kafka_ssl_cafile:
        env["ACCESSA_KAFKA_SSL_CAFILE"] = str(own.kafka_ssl_cafile)
    if own.kafka_sasl_username and own.kafka_sasl_password:
        env["ACCESSA_KAFKA_SASL_USERNAME"] = own.kafka_sasl_username
        env["ACCESSA_KAFKA_SASL_PASSWORD"] = own.kafka_sasl_password.get_secret_value()
    return env


async def diagnose(settings: Settings, process: str = OPS, timeout_s: float = 5.0) -> str | None:
    """Open one connection to the first bootstrap server and say why it fails (None if it
    does not): aiokafka's clients only report "Unable to bootstrap", whatever the cause."""
    kwargs = client_kwargs(settings, process)
    host, _, port = kwargs.pop("bootstrap_servers").split(",")[0].rpartition(":")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000), **kwargs),
            timeout_s,
        )
    except Exception as exc:
        return explain(exc)
    conn.close()
    return None
