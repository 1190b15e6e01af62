"""Upload validation without a server: filename sanitising and the PDF checks."""

from __future__ import annotations

import unicodedata

import pytest

from mocks.policy_pdf import make_policy_pdf, raw_pdf
from producer_api.core.errors import ApiError
from producer_api.validation import (
    FALLBACK_NAME,
    check_mime,
    check_size,
    sanitize_filename,
    validate_pdf,
)
from tests.encrypted_pdfs import owner_locked, user_locked
from tests.utils import CORPUS


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\evil.pdf", "evil.pdf"),
        ("/abs/path/policy.pdf", "policy.pdf"),
        ("..", FALLBACK_NAME),
        ("", FALLBACK_NAME),
        ("   ", FALLBACK_NAME),
        (".hidden.pdf", "hidden.pdf"),
        ("bad\x00name\x1f.pdf", "badname.pdf"),
        ("line\nbreak\r.pdf", "linebreak.pdf"),
        ("evil\u202efdp.exe", "evilfdp.exe"),  # right-to-left override removed
        ("zero\u200bwidth.pdf", "zerowidth.pdf"),
        ('a<b>c:d"e|f?g*h.pdf', "a_b_c_d_e_f_g_h.pdf"),
        ("many    spaces\u00a0here.pdf", "many spaces here.pdf"),
    ],
)
def test_sanitize_filename_strips_paths_and_unsafe_characters(raw: str, clean: str) -> None:
    assert sanitize_filename(raw) == clean


def test_sanitize_filename_normalises_unicode_to_nfc() -> None:
    decomposed = "Pol\u0069\u0301ce.pdf"  # i + combining acute accent
    assert sanitize_filename(decomposed) == unicodedata.normalize("NFC", decomposed)
    assert sanitize_filename(decomposed) == "Pol\u00edce.pdf"


def test_sanitize_filename_truncates_to_255_bytes_keeping_the_extension() -> None:
    name = sanitize_filename("é" * 300 + ".pdf")
    assert len(name.encode()) <= 255
    assert name.endswith(".pdf")
    assert name.startswith("é")


def test_validate_pdf_accepts_a_real_pdf_and_counts_pages() -> None:
    assert validate_pdf((CORPUS / "pdflatex-4-pages.pdf").read_bytes()).pages == 4


def test_validate_pdf_rejects_password_protected_pdf_as_encrypted() -> None:
    with pytest.raises(ApiError) as err:
        validate_pdf((CORPUS / "libreoffice-writer-password.pdf").read_bytes())
    assert (err.value.status, err.value.code) == (422, "pdf_encrypted")


def test_validate_pdf_accepts_an_owner_password_only_pdf() -> None:
    """Permission-locked (print/copy) with an empty user password: it opens, so it is valid."""
    assert validate_pdf(owner_locked(make_policy_pdf(seed=2, pages=3))).pages == 3


def test_validate_pdf_rejects_a_pdf_that_needs_a_user_password() -> None:
    with pytest.raises(ApiError) as err:
        validate_pdf(user_locked(make_policy_pdf(seed=2, pages=3)))
    assert (err.value.status, err.value.code) == (422, "pdf_encrypted")


def test_validate_pdf_rejects_garbage_after_a_pdf_header_as_corrupt() -> None:
    with pytest.raises(ApiError) as err:
        validate_pdf(b"%PDF-1.7\n" + b"\x00garbage" * 100)
    assert (err.value.status, err.value.code) == (422, "pdf_corrupt")


def test_validate_pdf_rejects_a_truncated_pdf_as_corrupt() -> None:
    data = (CORPUS / "minimal-document.pdf").read_bytes()
    with pytest.raises(ApiError) as err:
        validate_pdf(data[:200])
    assert err.value.code == "pdf_corrupt"


def test_validate_pdf_rejects_files_without_pdf_magic_bytes() -> None:
    with pytest.raises(ApiError) as err:
        validate_pdf(b"PK\x03\x04 this is a zip file")
    assert (err.value.status, err.value.code) == (422, "not_pdf")


def test_validate_pdf_rejects_a_pdf_without_pages() -> None:
    empty = raw_pdf(b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>")
    with pytest.raises(ApiError) as err:
        validate_pdf(empty)
    assert (err.value.status, err.value.code) == (422, "pdf_empty")


def test_validate_pdf_accepts_a_minimal_one_pageraw_pdf() -> None:
    one_page = raw_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
    )
    assert validate_pdf(one_page).pages == 1


def test_check_size_refuses_more_than_the_limit_with_413() -> None:
    check_size(1024 * 1024, 1.0)
    with pytest.raises(ApiError) as err:
        check_size(1024 * 1024 + 1, 1.0)
    assert (err.value.status, err.value.code) == (413, "file_too_large")


def test_check_mime_accepts_onlyraw_pdf() -> None:
    check_mime("application/pdf; charset=binary")
    with pytest.raises(ApiError) as err:
        check_mime("image/png")
    assert (err.value.status, err.value.code) == (415, "unsupported_media_type")
