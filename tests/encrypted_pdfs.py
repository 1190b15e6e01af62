"""Encrypted variants of a PDF made with pypdf: an owner password only (permissions, opens
without a password) or a user password (cannot be opened without it)."""

from __future__ import annotations

import io

from pypdf import PdfReader, PdfWriter
from pypdf.constants import UserAccessPermissions


def encrypt(data: bytes, *, user_password: str = "", owner_password: str = "owner-secret") -> bytes:
    """`data` re-saved with AES-256 encryption; printing and copying are not permitted."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    permissions = UserAccessPermissions.all() & ~(
        UserAccessPermissions.PRINT | UserAccessPermissions.EXTRACT
    )
    writer.encrypt(
        user_password=user_password,
        owner_password=owner_password,
        algorithm="AES-256",
        permissions_flag=permissions,
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def owner_locked(data: bytes) -> bytes:
    """Permission-locked: an owner password and an empty user password."""
    return encrypt(data)


def user_locked(data: bytes) -> bytes:
    """Needs the user password to open."""
    return encrypt(data, user_password="user-secret")
