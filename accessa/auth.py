"""Local development tokens (HS256, Supabase-style claims). Verification lives in the API."""

from __future__ import annotations

import time
import uuid

import jwt

from accessa.config import Settings


def mint_token(
    settings: Settings, user_id: uuid.UUID | str, *, role: str = "authenticated", ttl_s: int = 86400
) -> str:
    """A JWT the API accepts: `sub` = user id, `aud` = the configured audience, `role`."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "aud": settings.jwt_audience,
        "role": role,
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
