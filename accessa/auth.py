"""Local development tokens (HS256, Supabase-style claims). Verification lives in the API."""

from __future__ import annotations

import time
import uuid

import jwt

from accessa.config import Settings


def mint_token(
    settings: Settings, user_id: uuid.UUID | str, *, role: str = "authenticated", ttl_s: int = 86400
) -> str:
    """A JWT the API accepts: `sub` = user id, `aud` = the configured audience, `role`, `iss`
    when ACCESSA_JWT_ISSUER is set; never valid for longer than ACCESSA_JWT_MAX_AGE_S."""
    settings.require_production_ready("token")  # `accessa token`, `--user`: it signs
    if settings.jwt_max_age_s is not None:
        ttl_s = min(ttl_s, settings.jwt_max_age_s)
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "aud": settings.jwt_audience,
        "role": role,
        "iat": now,
        "exp": now + ttl_s,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
