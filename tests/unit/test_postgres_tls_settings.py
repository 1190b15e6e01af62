"""Postgres TLS without a server: the DSN the settings build, DSN rewriting, error lines."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509

from accessa import db
from accessa.config import Settings
from accessa.devstack.postgres import LocalPostgres, _run_as, ssl_supported


def test_embedded_tls_dsn_verifies_the_local_ca_on_127_0_0_1(tmp_path: Path) -> None:
    home = tmp_path / "a home with spaces"
    settings = Settings(home=home, database_url=None, postgres_port=5555, postgres_tls=True)
    url = urlsplit(settings.dsn)
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", 5555, "/accessa")
    query = parse_qs(url.query)
    assert query["sslmode"] == ["verify-full"]
    assert query["sslrootcert"] == [str(home.resolve() / "postgres" / "tls" / "ca.crt")]


def test_an_external_url_is_used_as_given_and_tls_off_adds_nothing() -> None:
    url = "postgresql://u@db.example:5432/x?sslmode=verify-full&sslrootcert=/ca.pem"
    assert Settings(database_url=url, postgres_tls=True).dsn == url
    assert "?" not in Settings(database_url=None, postgres_tls=False).dsn


def test_another_database_keeps_the_tls_options() -> None:
    dsn = "postgresql://postgres@127.0.0.1:5/accessa?sslmode=verify-full&sslrootcert=/a/b/ca.crt"
    assert db.with_database(dsn, "postgres") == (
        "postgresql://postgres@127.0.0.1:5/postgres?sslmode=verify-full&sslrootcert=/a/b/ca.crt"
    )


def test_a_failed_verification_reads_as_one_line() -> None:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] ...")
    exc.verify_message = "unable to get local issuer certificate"
    assert db.describe_error(exc) == (
        "certificate verify failed (unable to get local issuer certificate)"
    )
    assert db.describe_error(ConnectionRefusedError(111, "Connection refused")) == (
        "cannot connect (Connection refused)"
    )


def test_the_server_certificate_names_the_loopback_and_its_key_is_private(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=None, postgres_tls=True)
    server = LocalPostgres(settings, bin_dir=Path("/usr/lib/postgresql/15/bin"))
    if not (server.bin / "postgres").exists() or not ssl_supported(server.bin):
        pytest.skip("no Postgres build with TLS here")
    options = server._tls_options(_run_as())
    assert "-c ssl=on" in options
    cert = x509.load_pem_x509_certificate((server.tls / "server.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in sans} == {"localhost", "127.0.0.1"}
    assert (server.tls / "server.key").stat().st_mode & 0o777 == 0o600


def test_tls_on_a_build_without_it_is_refused_with_the_way_out(tmp_path: Path) -> None:
    server = LocalPostgres(Settings(home=tmp_path, database_url=None, postgres_tls=True))
    if ssl_supported(server.bin):
        pytest.skip("the wheel's Postgres has TLS")
    with pytest.raises(RuntimeError, match=r"built without TLS.*ACCESSA_DATABASE_URL"):
        server._tls_options({})
