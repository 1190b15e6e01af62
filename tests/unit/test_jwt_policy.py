"""Token policy: HS256 refused beside a JWKS, keys removed from the served JWKS stop being
trusted, `iss` checked when configured, lifetimes capped. The JWKS is served over real HTTP."""

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
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from accessa.auth import mint_token
from accessa.config import Settings
from producer_api.core.errors import ApiError
from producer_api.core.security import jwks_client, verify_token
from tests.utils import token_claims

USER = uuid.uuid4()
SECRET = "hs256-" + "k" * 40


def _claims(**overrides: Any) -> dict[str, Any]:
    return token_claims(USER, **overrides)


def _hs256(**overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), SECRET, "HS256")


def _error(token: str, settings: Settings, client: jwt.PyJWKClient | None = None) -> tuple:
    with pytest.raises(ApiError) as err:
        verify_token(token, settings, client)
    return err.value.status, err.value.code


class JwksServer:
    """A JWKS endpoint whose key set a test can change, counting fetches."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps(
                    {
                        "keys": [
                            {
                                **RSAAlgorithm.to_jwk(key.public_key(), as_dict=True),
                                "kid": kid,
                                "alg": "RS256",
                                "use": "sig",
                            }
                            for kid, key in list(owner.keys.items())
                        ]
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def add_key(self, kid: str) -> rsa.RSAPrivateKey:
        self.keys[kid] = key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    served = JwksServer()
    threading.Thread(target=served.server.serve_forever, daemon=True).start()
    yield served
    served.server.shutdown()


def test_hs256_is_refused_when_a_jwks_is_configured(jwks: JwksServer) -> None:
    settings = Settings(jwt_secret=SECRET, jwks_url=jwks.url)
    assert _error(_hs256(), settings, jwks_client(settings)) == (401, "invalid_token")


def test_hs256_beside_a_jwks_is_accepted_when_allowed(jwks: JwksServer) -> None:
    settings = Settings(jwt_secret=SECRET, jwks_url=jwks.url, jwt_allow_hs256=True)
    assert verify_token(_hs256(), settings, jwks_client(settings))["sub"] == str(USER)


def test_hs256_without_a_jwks_is_accepted() -> None:
    assert verify_token(_hs256(), Settings(jwt_secret=SECRET))["sub"] == str(USER)


def test_a_key_removed_from_the_jwks_stops_being_trusted_after_the_lifespan(
    jwks: JwksServer,
) -> None:
    settings = Settings(jwks_url=jwks.url, jwks_lifespan_s=0.5)
    client = jwks_client(settings)
    assert client is not None
    jwks.add_key("current")
    key = jwks.add_key("rotated-out")
    token = jwt.encode(_claims(), key, "RS256", headers={"kid": "rotated-out"})
    assert verify_token(token, settings, client)["sub"] == str(USER)
    assert verify_token(token, settings, client)["sub"] == str(USER)
    assert jwks.fetches == 1  # the set is cached within its lifespan

    del jwks.keys["rotated-out"]
    deadline = time.monotonic() + 10
    while True:  # trusted until the cached set expires (0.5 s), then never again
        try:
            verify_token(token, settings, client)
        except ApiError as err:
            assert (err.status, err.code) == (401, "invalid_token")
            break
        assert time.monotonic() < deadline, "the removed key was still trusted after 10 s"
    assert _error(token, settings, client) == (401, "invalid_token")


def test_a_token_against_an_empty_jwks_is_401(jwks: JwksServer) -> None:
    settings = Settings(jwks_url=jwks.url)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(), stranger, "RS256", headers={"kid": "gone"})
    assert _error(token, settings, jwks_client(settings)) == (401, "invalid_token")


def test_the_app_builds_its_jwks_client_with_the_configured_lifespan(jwks: JwksServer) -> None:
    from producer_api.main import create_app

    settings = Settings(jwks_url=jwks.url, jwks_lifespan_s=42)
    client = create_app(settings, with_relay=False).state.jwks
    assert client.jwk_set_cache is not None and client.jwk_set_cache.lifespan == 42
    assert not hasattr(client.get_signing_key, "cache_info")  # no per-kid cache for ever


def test_issuer_is_checked_when_configured() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_issuer="https://auth.example/v1")
    assert verify_token(_hs256(iss="https://auth.example/v1"), settings)["sub"] == str(USER)
    assert _error(_hs256(iss="https://evil.example"), settings) == (401, "invalid_issuer")
    assert _error(_hs256(), settings)[0] == 401  # no `iss` at all


def test_issuer_is_not_required_when_unset() -> None:
    assert verify_token(_hs256(iss="anyone"), Settings(jwt_secret=SECRET))["sub"] == str(USER)


def test_a_hundred_year_token_is_refused_past_the_max_age() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_max_age_s=3600)
    now = int(time.time())
    century = _hs256(iat=now, exp=now + 100 * 365 * 86400)
    assert _error(century, settings) == (401, "token_too_long_lived")
    assert verify_token(_hs256(iat=now, exp=now + 3600), settings)["sub"] == str(USER)


def test_max_age_uses_exp_minus_iat_else_exp_minus_now() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_max_age_s=3600)
    now = int(time.time())
    # Issued 50 min ago for one hour: exp - iat is the hour, though only 10 min remain.
    assert verify_token(_hs256(iat=now - 3000, exp=now + 600), settings)
    # Issued 50 min ago for two hours: too long, though 70 min remain (< an hour + 10 min).
    assert _error(_hs256(iat=now - 3000, exp=now + 4200), settings) == (
        401,
        "token_too_long_lived",
    )
    # No `iat`: what is left of it counts.
    assert verify_token(_hs256(iat=None, exp=now + 3000), settings)
    assert _error(_hs256(iat=None, exp=now + 7200), settings) == (401, "token_too_long_lived")


def test_any_lifetime_is_accepted_when_no_max_age_is_set() -> None:
    now = int(time.time())
    assert verify_token(_hs256(exp=now + 100 * 365 * 86400), Settings(jwt_secret=SECRET))


def test_dev_tokens_carry_the_issuer_and_keep_within_the_max_age() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_issuer="https://auth.example/v1", jwt_max_age_s=600)
    claims = verify_token(mint_token(settings, USER, ttl_s=86400), settings)
    assert claims["iss"] == "https://auth.example/v1"
    assert claims["exp"] - claims["iat"] == 600
