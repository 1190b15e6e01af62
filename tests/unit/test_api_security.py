"""Token verification (HS256 and RS256/ES256 through JWKS), signed upload URLs and
correlation ids, without a database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from accessa.auth import mint_token
from accessa.config import Settings
from producer_api.core.correlation import accept_correlation_id
from producer_api.core.errors import ApiError
from producer_api.core.security import (
    check_upload_signature,
    principal_from,
    sign_upload,
    verify_token,
)
from tests.utils import token_claims

SETTINGS = Settings()
USER = uuid.uuid4()


def _claims(**overrides: Any) -> dict[str, Any]:
    return token_claims(USER, **overrides)


def _hs256(**overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), SETTINGS.jwt_secret.get_secret_value(), "HS256")


def _error(token: str, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as err:
        verify_token(token, SETTINGS, **kwargs)
    return err.value.status, err.value.code


def test_minted_dev_token_is_accepted_with_its_user() -> None:
    claims = verify_token(mint_token(SETTINGS, USER), SETTINGS)
    assert principal_from(claims, None).user_id == USER


def test_expired_token_is_401_token_expired() -> None:
    assert _error(_hs256(exp=int(time.time()) - 60)) == (401, "token_expired")


def test_token_signed_with_another_secret_is_401() -> None:
    token = jwt.encode(_claims(), "another-secret-another-secret-another-secret!", "HS256")
    assert _error(token) == (401, "invalid_token")


def test_garbage_and_unsigned_tokens_are_401() -> None:
    assert _error("not.a.jwt") == (401, "invalid_token")
    unsigned = jwt.encode(_claims(), None, algorithm="none")  # type: ignore[arg-type]
    assert _error(unsigned) == (401, "invalid_token")


def test_wrong_or_missing_audience_is_403() -> None:
    assert _error(_hs256(aud="anon")) == (403, "wrong_audience")
    assert _error(_hs256(aud=None)) == (403, "wrong_audience")


def test_unknown_role_is_403() -> None:
    assert _error(_hs256(role="anon")) == (403, "forbidden_role")
    assert _error(_hs256(role=None)) == (403, "forbidden_role")


def test_subject_that_is_not_a_user_id_is_401() -> None:
    with pytest.raises(ApiError) as err:
        principal_from(verify_token(_hs256(sub="alice"), SETTINGS), None)
    assert err.value.status == 401


def test_service_role_acts_for_the_user_in_x_user_id_or_for_nobody() -> None:
    claims = verify_token(_hs256(role="service_role", sub=None), SETTINGS)
    assert principal_from(claims, str(USER)).user_id == USER
    nobody = principal_from(claims, None)
    assert nobody.user_id is None and nobody.is_service


def test_x_user_id_is_ignored_for_ordinary_users() -> None:
    claims = verify_token(_hs256(), SETTINGS)
    assert principal_from(claims, str(uuid.uuid4())).user_id == USER


# --- JWKS (RS256 / ES256)


class _Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)
        self.jwks = {
            "keys": [
                {**rsa_jwk, "kid": "rsa-1", "alg": "RS256", "use": "sig"},
                {**ec_jwk, "kid": "ec-1", "alg": "ES256", "use": "sig"},
            ]
        }


@pytest.fixture(scope="module")
def jwks() -> Iterator[tuple[_Keys, jwt.PyJWKClient]]:
    keys = _Keys()
    body = json.dumps(keys.jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/auth/v1/.well-known/jwks.json"
    yield keys, jwt.PyJWKClient(url)
    server.shutdown()


def test_rs256_token_from_jwks_is_accepted(jwks: tuple[_Keys, jwt.PyJWKClient]) -> None:
    keys, client = jwks
    token = jwt.encode(_claims(), keys.rsa, "RS256", headers={"kid": "rsa-1"})
    assert verify_token(token, SETTINGS, client)["sub"] == str(USER)


def test_es256_token_from_jwks_is_accepted(jwks: tuple[_Keys, jwt.PyJWKClient]) -> None:
    keys, client = jwks
    token = jwt.encode(_claims(), keys.ec, "ES256", headers={"kid": "ec-1"})
    assert verify_token(token, SETTINGS, client)["sub"] == str(USER)


def test_rs256_token_signed_by_an_unknown_key_is_401(jwks: tuple[_Keys, jwt.PyJWKClient]) -> None:
    _, client = jwks
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(), stranger, "RS256", headers={"kid": "rsa-1"})
    assert _error(token, jwks=client) == (401, "invalid_token")


def test_rs256_token_without_a_jwks_url_is_401() -> None:
    keys = _Keys()
    token = jwt.encode(_claims(), keys.rsa, "RS256", headers={"kid": "rsa-1"})
    assert _error(token) == (401, "invalid_token")


# --- signed upload URLs


def test_upload_signature_round_trips() -> None:
    job, expires = uuid.uuid4(), int(time.time()) + 60
    check_upload_signature(SETTINGS, job, expires, sign_upload(SETTINGS, job, expires))


def test_tampered_upload_signature_is_403_invalid_signature() -> None:
    job, expires = uuid.uuid4(), int(time.time()) + 60
    good = sign_upload(SETTINGS, job, expires)
    for job_id, exp, sig in [
        (uuid.uuid4(), expires, good),  # another job
        (job, expires + 3600, good),  # a later expiry
        (job, expires, good[:-1] + ("0" if good[-1] != "0" else "1")),
        (job, expires, "é" * 10),
    ]:
        with pytest.raises(ApiError) as err:
            check_upload_signature(SETTINGS, job_id, exp, sig)
        assert (err.value.status, err.value.code) == (403, "invalid_signature")


def test_expired_upload_signature_is_403_url_expired() -> None:
    job, expires = uuid.uuid4(), int(time.time()) - 1
    with pytest.raises(ApiError) as err:
        check_upload_signature(SETTINGS, job, expires, sign_upload(SETTINGS, job, expires))
    assert (err.value.status, err.value.code) == (403, "url_expired")


def test_upload_signature_depends_on_the_secret() -> None:
    other = Settings(jwt_secret="x" * 48)
    job, expires = uuid.uuid4(), int(time.time()) + 60
    assert sign_upload(SETTINGS, job, expires) != sign_upload(other, job, expires)


# --- correlation ids


@pytest.mark.parametrize("value", ["3b0c6c1e-7c1f-4c9e-9d59-0d4c1a2b3c4d", "req_42.a-b", "x" * 64])
def test_well_formed_correlation_ids_are_kept(value: str) -> None:
    assert accept_correlation_id(value) == value


@pytest.mark.parametrize("value", [None, "", "x" * 65, "has space", "new\nline", "ünï", "a/b"])
def test_malformed_correlation_ids_are_replaced_by_a_uuid(value: str | None) -> None:
    generated = accept_correlation_id(value)
    assert generated != value
    uuid.UUID(generated)


def test_app_accepts_rs256_tokens_from_its_jwks_url(
    jwks: tuple[_Keys, jwt.PyJWKClient],
) -> None:
    from fastapi.testclient import TestClient

    from producer_api.main import create_app

    keys, client = jwks
    app = create_app(Settings(jwks_url=client.uri, rate_limits_enabled=False), with_relay=False)
    app.state.pool = app.state.storage = None  # no lifespan: the request stops before them
    token = jwt.encode(_claims(), keys.rsa, "RS256", headers={"kid": "rsa-1"})
    body = {"filename": "a.png", "bytes": 10, "sha256": "a" * 64, "mime": "image/png"}
    response = TestClient(app).post(
        "/api/v2/upload", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 415  # past authentication, stopped by validation
