# ruff: noqa: F811  (pytest fixtures come from test_api_support and are redefined as arguments)
"""Hostile PDFs at the API edge: a decompression bomb is refused before pdfium inflates it and
leaves nothing behind; deep nesting, absurd page counts, page-tree cycles and broken xref
tables are either refused with a code or accepted at their true size, quickly."""

from __future__ import annotations

import uuid
import zlib
from pathlib import Path

import asyncpg
import httpx
import pytest

from accessa.config import Settings
from mocks.policy_pdf import make_policy_pdf, raw_pdf
from tests.bomb_pdfs import BYPASSES
from tests.encrypted_pdfs import owner_locked, user_locked
from tests.integration.test_api_support import (  # noqa: F401
    api,
    api_settings,
    auth,
    queued_uploads,
    upload,
    user,
)

pytestmark = pytest.mark.integration

TEXT = b"BT /F1 12 Tf 72 700 Td (Hostile) Tj ET"


def one_page(pages_dict: bytes) -> bytes:
    return raw_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        pages_dict,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(TEXT), TEXT),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    )


def flate_bomb(inflated_mb: int) -> bytes:
    """A one-page PDF of ~0.3 MB whose content stream inflates to `inflated_mb` MB."""
    deflate = zlib.compressobj(9)
    spaces = b" " * 1_048_576
    data = deflate.compress(TEXT) + b"".join(deflate.compress(spaces) for _ in range(inflated_mb))
    data += deflate.flush()
    return raw_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        PAGES,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(data), data),
    )


PAGES = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
REFUSED = {
    "flate_bomb_300mb_from_a_third_of_a_megabyte": (flate_bomb(300), "pdf_bomb"),
    **{f"issue_13_{name}_300mb": (make(300), "pdf_bomb") for name, make in BYPASSES.items()},
    "xref_claims_ten_million_objects": (
        (
            lambda d: (
                d[: d.rindex(b"xref")] + b"xref\n0 9999999\ngarbage\ntrailer\n"
                b"<< /Root 1 0 R /Size 9999999 >>\nstartxref\n0\n%%EOF"
            )
        )(make_policy_pdf(seed=4, pages=2)),
        "pdf_corrupt",
    ),
    "user_password_needed_to_open": (
        user_locked(make_policy_pdf(seed=4, pages=2)),
        "pdf_encrypted",
    ),
}
ACCEPTED_AT_TRUE_SIZE = {
    # Issue 12: an owner password only restricts printing/copying; it opens without one.
    "owner_password_only": (owner_locked(make_policy_pdf(seed=4, pages=2)), 2),
    "five_million_pages_declared": (
        one_page(b"<< /Type /Pages /Kids [3 0 R] /Count 5000000 >>"),
        1,
    ),
    "dictionary_nested_100k_deep": (
        one_page(
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 /X "
            + b"<< /A " * 100_000
            + b">> " * 100_000
            + b">>"
        ),
        1,
    ),
    "array_nested_500k_deep": (
        one_page(
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 /X " + b"[" * 500_000 + b"]" * 500_000 + b">>"
        ),
        1,
    ),
    # pdfium takes /Count here (2); the parser then reads the one real page.
    "page_tree_containing_itself": (
        one_page(b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>"),
        2,
    ),
    "startxref_pointing_nowhere": (
        make_policy_pdf(seed=4, pages=2).replace(b"startxref\n", b"startxref\n9"),
        2,
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
async def test_a_hostile_pdf_is_refused_with_its_code_and_nothing_is_stored(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    api_settings: Settings,
    pool: asyncpg.Pool,
    user: uuid.UUID,
    name: str,
) -> None:
    data, code = REFUSED[name]
    response = await upload(api, auth, data)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["correlation_id"]
    assert await pool.fetchval("SELECT count(*) FROM documents WHERE user_id = $1", user) == 0
    assert await pool.fetchval("SELECT count(*) FROM upload_jobs WHERE user_id = $1", user) == 0
    assert api_settings.storage_dir is not None
    stored = [p for p in Path(api_settings.storage_dir).rglob("*") if p.is_file()]  # noqa: ASYNC240
    assert stored == []
    assert await queued_uploads(pool, api_settings) == []


@pytest.mark.parametrize("name", sorted(ACCEPTED_AT_TRUE_SIZE))
async def test_a_pathological_but_readable_pdf_is_accepted_without_its_declared_size(
    api: httpx.AsyncClient, auth: dict[str, str], name: str
) -> None:
    data, pages = ACCEPTED_AT_TRUE_SIZE[name]
    response = await upload(api, auth, data)
    assert response.status_code == 202, response.text
    doc = await api.get(f"/api/v2/documents/{response.json()['document_id']}", headers=auth)
    assert doc.json()["pages"] == pages
