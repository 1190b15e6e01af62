"""The API's cache of verified tokens: a token's claims are reused only while the token is
valid (and no longer than the JWKS set is cached), bad tokens are never kept, and the cache
is bounded."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import jwt
import pytest

from accessa.config import Settings
from producer_api.core.errors import ApiError
from producer_api.core.security import VerifiedTokens, authenticate
from tests.utils import token_claims

USER = uuid.uuid4()
SECRET = "hs256-" + "k" * 40


def _token(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(token_claims(USER, **overrides), secret, "HS256")


def _auth(settings: Settings, token: str, cache: VerifiedTokens) -> Any:
    return asyncio.run(authenticate(settings, None, f"Bearer {token}", None, cache))


def test_a_verified_token_is_reused_within_its_ttl() -> None:
    cache = VerifiedTokens(ttl_s=60)
    token = _token()
    assert _auth(Settings(jwt_secret=SECRET), token, cache).user_id == USER
    # Verified again, the token would now fail (another secret): the cached claims answer.
    assert _auth(Settings(jwt_secret="other-" + "k" * 40), token, cache).user_id == USER


def test_a_cached_token_is_verified_again_after_the_ttl() -> None:
    cache = VerifiedTokens(ttl_s=0.05)
    token = _token()
    _auth(Settings(jwt_secret=SECRET), token, cache)
    deadline = time.monotonic() + 5
    while cache.get(token) is not None:
        assert time.monotonic() < deadline, "the entry outlived its 0.05 s ttl"
    with pytest.raises(ApiError) as err:
        _auth(Settings(jwt_secret="other-" + "k" * 40), token, cache)
    assert (err.value.status, err.value.code) == (401, "invalid_token")


def test_an_entry_ends_when_its_token_expires() -> None:
    cache = VerifiedTokens(ttl_s=60)
    now = int(time.time())
    cache.put("expired", token_claims(USER, iat=now - 100, exp=now - 10))  # past exp + leeway
    assert cache.get("expired") is None
    cache.put("live", token_claims(USER))
    assert cache.get("live") is not None


def test_a_bad_token_is_refused_every_time_and_never_kept() -> None:
    cache = VerifiedTokens()
    token = _token(secret="wrong-" + "k" * 40)
    for _ in range(2):
        with pytest.raises(ApiError):
            _auth(Settings(jwt_secret=SECRET), token, cache)
    assert cache.get(token) is None


def test_the_ttl_is_no_longer_than_the_jwks_lifespan() -> None:
    settings = Settings(jwks_url="http://127.0.0.1:9/jwks.json", jwks_lifespan_s=0.5)
    assert VerifiedTokens.for_settings(settings).ttl_s == 0.5
    assert VerifiedTokens.for_settings(Settings(jwt_secret=SECRET)).ttl_s == 60


def test_the_cache_keeps_at_most_size_tokens() -> None:
    cache = VerifiedTokens(size=3)
    for n in range(5):
        cache.put(f"t{n}", token_claims(USER))
    assert [cache.get(f"t{n}") is not None for n in range(5)] == [False, False, True, True, True]
