"""Kafka connection settings: each protocol and mechanism becomes the client options it needs,
each process gets its own principal, and failures read as one line."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import SaslAuthenticationFailed, TopicAuthorizationFailedError
from faststream.security import SASLOAuthBearer, SASLPlaintext, SASLScram256, SASLScram512

from accessa import kafka_clients
from accessa.config import Settings
from accessa.devstack.acls import pipeline_acls
from accessa.devstack.tls import create_ca, issue_cert
from accessa.errors import ConfigurationError


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = create_ca(folder)
    client = issue_cert(ca, folder, "client", client=True)
    return {"ca": ca.cert, "cert": client.cert, "key": client.key}


def test_plaintext_is_the_local_default_with_no_security_options() -> None:
    settings = Settings(_env_file=None)
    assert kafka_clients.security(settings) is None
    assert kafka_clients.client_kwargs(settings) == {
        "bootstrap_servers": f"127.0.0.1:{settings.kafka_port}"
    }


@pytest.mark.parametrize(
    ("mechanism", "kind"),
    [("PLAIN", SASLPlaintext), ("SCRAM-SHA-256", SASLScram256), ("SCRAM-SHA-512", SASLScram512)],
)
def test_sasl_ssl_verifies_the_broker_against_the_ca_file(
    mechanism: str, kind: type, pki: dict[str, Path]
) -> None:
    settings = Settings(
        kafka_bootstrap_servers="broker-1:9093,broker-2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="accessa-parser",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile=pki["ca"],
    )
    assert isinstance(kafka_clients.security(settings, "parser"), kind)
    kwargs = kafka_clients.client_kwargs(settings, "parser")
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == mechanism
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
        "accessa-parser",
        "s3cret",
    )
    ctx: ssl.SSLContext = kwargs["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ["Accessa local CA" in str(c["subject"]) for c in ctx.get_ca_certs()] == [True]


def test_ssl_with_a_client_certificate_is_mutual_tls(pki: dict[str, Path]) -> None:
    settings = Settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki["ca"],
        kafka_ssl_certfile=pki["cert"],
        kafka_ssl_keyfile=pki["key"],
    )
    kwargs = kafka_clients.client_kwargs(settings)
    assert kwargs["security_protocol"] == "SSL" and "sasl_mechanism" not in kwargs
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


def test_sasl_without_a_username_is_a_configuration_error() -> None:
    settings = Settings(kafka_bootstrap_servers="b:9092", kafka_security_protocol="SASL_SSL")
    with pytest.raises(ConfigurationError, match="ACCESSA_KAFKA_SASL_USERNAME"):
        kafka_clients.client_kwargs(settings)


def test_the_secured_embedded_broker_gives_each_process_its_own_principal(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "kafka"
    folder.mkdir()
    users = {f"accessa-{p}": f"pw-{p}" for p in ("api", "parser", "ops")}
    (folder / "credentials.json").write_text(
        json.dumps({"processes": ["api", "parser", "ops"], "passwords": users})
    )
    settings = Settings(home=tmp_path, kafka_secure=True)
    assert settings.kafka_protocol == "SASL_SSL"
    assert settings.kafka_ca_file == tmp_path.resolve() / "kafka" / "tls" / "ca.crt"
    env = kafka_clients.child_env(settings, "parser")
    assert (env["ACCESSA_KAFKA_SASL_USERNAME"], env["ACCESSA_KAFKA_SASL_PASSWORD"]) == (
        "accessa-parser",
        "pw-parser",
    )
    assert env["ACCESSA_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    # a process without a principal of its own (the CLI) is `ops`
    assert kafka_clients.pinned(settings, "reprocess").kafka_sasl_username == "accessa-ops"


@pytest.fixture
def token_endpoint() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A real OAuth token endpoint on loopback that records each request it answers."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            seen.append({"auth": self.headers["Authorization"], "body": body})
            payload = json.dumps({"access_token": f"tok-{len(seen)}", "expires_in": 3600})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/oauth2/token", seen
    server.shutdown()


async def test_oauthbearer_fetches_a_client_credentials_token_once_and_caches_it(
    token_endpoint: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = token_endpoint
    settings = Settings(
        kafka_bootstrap_servers="b:9092",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_username="client-id",
        kafka_sasl_password="client-secret",
        kafka_sasl_oauth_token_url=url,
        kafka_sasl_oauth_scope="kafka",
    )
    assert isinstance(kafka_clients.security(settings), SASLOAuthBearer)
    kwargs = kafka_clients.client_kwargs(settings)
    provider = kwargs["sasl_oauth_token_provider"]
    assert kwargs["sasl_mechanism"] == "OAUTHBEARER"
    assert [await provider.token(), await provider.token()] == ["tok-1", "tok-1"]
    assert len(seen) == 1
    assert "grant_type=client_credentials" in seen[0]["body"] and "scope=kafka" in seen[0]["body"]
    assert seen[0]["auth"].startswith("Basic ")


def test_failures_read_as_one_line() -> None:
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "unable to get local issuer certificate"
    assert kafka_clients.explain(untrusted) == (
        "TLS: the broker's certificate is not trusted (unable to get local issuer certificate)"
    )
    assert kafka_clients.explain(SaslAuthenticationFailed("bad")).startswith(
        "Kafka SASL authentication failed (wrong username or password)"
    )
    assert "denied" in kafka_clients.explain(TopicAuthorizationFailedError())
    for exc in (untrusted, SaslAuthenticationFailed("bad"), ConnectionRefusedError()):
        assert "\n" not in kafka_clients.explain(exc)


def _grants(settings: Settings) -> set[tuple[str, str, str, str]]:
    return {(a.principal, a.resource, a.name, a.operation) for a in pipeline_acls(settings)}


def test_acls_are_least_privilege() -> None:
    grants = _grants(Settings(_env_file=None))
    api = {g for g in grants if g[0] == "accessa-api"}
    # uploads, and a failed job's stage input re-emitted by POST /jobs/{id}/retry; no reads
    assert {(g[2], g[3]) for g in api} == {
        (topic, op)
        for topic in ("uploaded", "parsed", "chunked", "embedded")
        for op in ("write", "describe")
    }
    reads = {(g[0], g[2]) for g in grants if g[1] == "topic" and g[3] == "read"}
    writes = {(g[0], g[2]) for g in grants if g[1] == "topic" and g[3] == "write"}
    assert ("accessa-parser", "uploaded") in reads
    assert ("accessa-parser", "parsed") not in reads  # the chunker's input
    assert ("accessa-parser", "parsed") in writes
    assert ("accessa-parser", "uploaded") not in writes  # only the API writes uploads
    assert ("accessa-api", "completed") not in writes
    assert ("accessa-chunker", "uploaded.dlq") not in writes  # another stage's DLQ
    assert ("accessa-chunker", "parsed.dlq") in writes
    groups = {(g[0], g[2]) for g in grants if g[1] == "group"}
    assert {g for p, g in groups if p == "accessa-embedder"} == {
        "accessa-embedder",
        "accessa-embedder-retry",
    }
    assert not any(p == "accessa-ops" for p, *_ in grants)  # ops is the cluster's super user


def test_acls_follow_the_topic_and_group_prefix() -> None:
    grants = _grants(Settings(_env_file=None, topic_prefix="t1-", retry_max_attempts=2))
    names = {g[2] for g in grants}
    assert all(n.startswith("t1-") for n in names)
    assert "t1-uploaded.retry.2" in names and "t1-uploaded.retry.3" not in names


def test_every_node_of_a_cluster_is_a_bootstrap_server_for_the_stage_broker() -> None:
    settings = Settings(_env_file=None, kafka_port=40000, kafka_brokers=3)
    assert settings.bootstrap_servers == "127.0.0.1:40000,127.0.0.1:40010,127.0.0.1:40020"
    # FastStream treats a string as one address: the stage broker gets a list
    assert kafka_clients.broker_kwargs(settings, "parser")["bootstrap_servers"] == [
        "127.0.0.1:40000",
        "127.0.0.1:40010",
        "127.0.0.1:40020",
    ]


def test_a_cluster_formatted_plain_is_not_started_as_secure(tmp_path: Path) -> None:
    from accessa.devstack.kafka import LocalKafka

    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "cluster.json").write_text('{"brokers": 1, "secure": false}')
    with pytest.raises(RuntimeError, match=r"formatted as .* infra down --purge"):
        LocalKafka(Settings(_env_file=None, home=tmp_path, kafka_secure=True)).up()


def test_a_missing_ca_file_is_a_configuration_error_that_names_it(tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap_servers="b:9093",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=tmp_path / "missing-ca.crt",
    )
    with pytest.raises(ConfigurationError, match=r"missing-ca\.crt") as caught:
        kafka_clients.client_kwargs(settings)
    assert kafka_clients.explain(caught.value).startswith("cannot load the Kafka TLS files")
