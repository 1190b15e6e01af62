"""Who is calling: Bearer JWT verification, and the signed URLs of the two-step upload.

Tokens: HS256 with the configured secret (local default), RS256/ES256 through the JWKS URL
(Supabase-style claims: `sub` = user id, `aud`, `role`); with a JWKS URL, HS256 only if
ACCESSA_JWT_ALLOW_HS256; `iss` checked when ACCESSA_JWT_ISSUER is set, lifetimes capped by
ACCESSA_JWT_MAX_AGE_S. 401 when missing, malformed, badly
signed or expired; 403 for the wrong audience or role. A `service_role` token may act for a
user given in `X-User-Id`; without it, it reads across users (internal tools).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from accessa.config import Settings
from producer_api.core.errors import ApiError

ROLES = ("authenticated", "service_role")
_ASYMMETRIC = ("RS256", "ES256")
_LEEWAY_S = 5  # clock skew allowed on exp/iat/nbf and on the lifetime check
_VERIFIED_TTL_S = 60.0  # the longest a verified token's claims are reused
_bearer = HTTPBearer(auto_error=False, description="JWT (`accessa token --user <uuid>`).")


@dataclass(frozen=True)
class Principal:
    """The verified caller. `user_id` is None only for a service token acting for nobody."""

    user_id: uuid.UUID | None
    role: str
    claims: dict[str, Any]

    @property
    def is_service(self) -> bool:
        return self.role == "service_role"


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": "Bearer"})


def _signing_key(token: str, settings: Settings, jwks: jwt.PyJWKClient | None) -> tuple[Any, str]:
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.InvalidTokenError as exc:
        raise _unauthorized("invalid_token", "malformed token") from exc
    if alg == "HS256":
        if (jwks is not None or settings.jwks_url) and not settings.jwt_allow_hs256:
            raise _unauthorized("invalid_token", "HS256 tokens are not accepted: use the JWKS")
        return settings.jwt_secret.get_secret_value(), alg
    if alg in _ASYMMETRIC and jwks is not None:
        try:
            return jwks.get_signing_key_from_jwt(token).key, alg
        except jwt.PyJWKClientConnectionError as exc:
            raise ApiError(503, "auth_unavailable", "the JWKS endpoint is unreachable") from exc
        except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:  # SetError: an empty set
            raise _unauthorized("invalid_token", f"no matching signing key: {exc}") from exc
    raise _unauthorized("invalid_token", f"unsupported token algorithm {alg!r}")


def verify_token(
    token: str, settings: Settings, jwks: jwt.PyJWKClient | None = None
) -> dict[str, Any]:
    """The token's claims, or ApiError 401/403. Blocking when a JWKS fetch is needed."""
    key, alg = _signing_key(token, settings, jwks)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "aud"]},
            leeway=_LEEWAY_S,
        )
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized("token_expired", "the token has expired") from exc
    except jwt.InvalidIssuerError as exc:
        raise _unauthorized("invalid_issuer", "the token is from another issuer") from exc
    except jwt.InvalidAudienceError as exc:
        raise ApiError(403, "wrong_audience", "the token is for another audience") from exc
    except jwt.MissingRequiredClaimError as exc:
        if exc.claim == "aud":
            raise ApiError(403, "wrong_audience", "the token has no audience") from exc
        raise _unauthorized("invalid_token", str(exc)) from exc
    except jwt.InvalidTokenError as exc:
        raise _unauthorized("invalid_token", f"invalid token: {exc}") from exc
    if claims.get("role") not in ROLES:
        raise ApiError(403, "forbidden_role", f"role {claims.get('role')!r} may not call the API")
    _check_lifetime(claims, settings)
    return claims


def _check_lifetime(claims: dict[str, Any], settings: Settings) -> None:
    """401 `token_too_long_lived` when exp - iat (exp - now without `iat`) exceeds
    ACCESSA_JWT_MAX_AGE_S: a leaked 100-year token must not stay good for 100 years."""
    if settings.jwt_max_age_s is None:
        return
    iat = claims.get("iat")
    start = iat if isinstance(iat, int | float) else time.time()
    if claims["exp"] - start > settings.jwt_max_age_s + _LEEWAY_S:
        raise _unauthorized(
            "token_too_long_lived",
            f"the token is valid for longer than {settings.jwt_max_age_s} s",
        )


def jwks_client(settings: Settings) -> jwt.PyJWKClient | None:
    """The JWKS client of ACCESSA_JWKS_URL. Only the JWK set is cached, for
    ACCESSA_JWKS_LIFESPAN_S (`cache_keys` would keep each key for the life of the process, even
    once it is gone from the served set); an unknown `kid` refetches the set at once."""
    if not settings.jwks_url:
        return None
    return jwt.PyJWKClient(
        settings.jwks_url,
        cache_keys=False,
        cache_jwk_set=True,
        lifespan=settings.jwks_lifespan_s,
        timeout=5,
    )


class VerifiedTokens:
    """Claims of the tokens verified lately, so that a client's next requests skip the
    signature check (~0.25 ms each). An entry lasts until its token expires (with the same
    leeway), at most `ttl_s` (with a JWKS: no longer than the set is cached, so a key removed
    from it stops being trusted as late as it does without this), and `size` entries at most.
    Only successes are kept: a bad token is verified, and refused, every time."""

    def __init__(self, ttl_s: float = _VERIFIED_TTL_S, size: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    @classmethod
    def for_settings(cls, settings: Settings) -> VerifiedTokens:
        ttl = _VERIFIED_TTL_S
        if settings.jwks_url:
            ttl = min(ttl, settings.jwks_lifespan_s)
        return cls(ttl)

    def get(self, token: str) -> dict[str, Any] | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if time.time() > entry[0]:
            del self._entries[token]
            return None
        return entry[1]

    def put(self, token: str, claims: dict[str, Any]) -> None:
        until = min(float(claims["exp"]) + _LEEWAY_S, time.time() + self.ttl_s)
        self._entries[token] = (until, claims)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)


def principal_from(claims: dict[str, Any], acting_for: str | None) -> Principal:
    role = claims["role"]
    subject = acting_for if role == "service_role" else claims.get("sub")
    if subject is None and role == "service_role":
        return Principal(None, role, claims)
    try:
        return Principal(uuid.UUID(str(subject)), role, claims)
    except ValueError as exc:
        raise _unauthorized("invalid_token", "the subject is not a user id") from exc


async def authenticate(
    settings: Settings,
    jwks: jwt.PyJWKClient | None,
    authorization: str | None,
    acting_for: str | None,
    verified: VerifiedTokens | None = None,
) -> Principal:
    """The caller of an `Authorization` header, or ApiError 401/403/503. Headers only: the
    request guard calls this before a byte of the body is read. `verified`: the app's cache
    of tokens verified lately."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("not_authenticated", "a Bearer token is required")
    claims = verified.get(token) if verified is not None else None
    if claims is None:
        if jwks is not None:
            claims = await asyncio.to_thread(verify_token, token, settings, jwks)
        else:
            claims = verify_token(token, settings)
        if verified is not None:
            verified.put(token, claims)
    return principal_from(claims, acting_for)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_user_id: Annotated[
        str | None, Header(description="service_role only: act for this user.")
    ] = None,
) -> Principal:
    known = getattr(request.state, "principal", None)  # the request guard verified it already
    if isinstance(known, Principal):
        return known
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    state = request.app.state
    verified = getattr(state, "verified_tokens", None)
    principal = await authenticate(state.settings, state.jwks, header, x_user_id, verified)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_user(principal: CurrentPrincipal) -> Principal:
    """A caller acting for one user (uploads need an owner)."""
    if principal.user_id is None:
        raise ApiError(400, "user_required", "a service_role caller must send X-User-Id")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


# --- signed upload URLs (local storage backend)


def _url_key(settings: Settings) -> bytes:
    # A key of its own (domain separation): an upload signature never passes for a JWT one.
    secret = settings.jwt_secret.get_secret_value().encode()
    return hashlib.sha256(b"accessa-upload-url\0" + secret).digest()


def sign_upload(settings: Settings, job_id: uuid.UUID, expires: int) -> str:
    """HMAC-SHA256 over the method, the job and the expiry (epoch seconds)."""
    message = f"PUT\n{job_id}\n{expires}".encode()
    return hmac.new(_url_key(settings), message, hashlib.sha256).hexdigest()


def check_upload_signature(
    settings: Settings, job_id: uuid.UUID, expires: int, signature: str, *, now: float | None = None
) -> None:
    """ApiError 403 unless `signature` is ours for this job and has not expired."""
    expected = sign_upload(settings, job_id, expires)
    if not hmac.compare_digest(expected.encode(), signature.encode(errors="replace")):
        raise ApiError(403, "invalid_signature", "the upload URL signature is not valid")
    if (now if now is not None else time.time()) > expires:
        raise ApiError(403, "url_expired", "the upload URL has expired")
