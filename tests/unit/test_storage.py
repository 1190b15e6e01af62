"""Local storage: keys stay under the root, writes are atomic."""

from __future__ import annotations

import pytest

from accessa.storage import LocalStorage, ObjectNotFound


async def test_local_storage_round_trips_bytes(tmp_path) -> None:
    store = LocalStorage(tmp_path)
    await store.put("raw/u/d.pdf", b"%PDF-1.7 data")
    assert await store.get("raw/u/d.pdf") == b"%PDF-1.7 data"
    assert await store.exists("raw/u/d.pdf")
    assert not list(tmp_path.rglob("*.tmp"))


async def test_local_storage_refuses_keys_that_escape_its_root(tmp_path) -> None:
    store = LocalStorage(tmp_path / "root")
    with pytest.raises(ValueError, match="escapes"):
        await store.put("../../etc/passwd", b"x")


async def test_missing_objects_raise_object_not_found(tmp_path) -> None:
    with pytest.raises(ObjectNotFound):
        await LocalStorage(tmp_path).get("raw/none.pdf")


async def test_local_storage_heads_lists_and_reads_a_prefix_of_an_object(tmp_path) -> None:
    store = LocalStorage(tmp_path)
    await store.put("raw/u/d.pdf", b"%PDF-1.7 data")
    await store.put("raw/u/d/abc.pdf", b"%PDF")
    await store.put("parsed/u/d.md", b"# md")
    assert (await store.head("raw/u/d.pdf")).size == 13
    assert await store.get("raw/u/d.pdf", limit=4) == b"%PDF"
    pages = [page async for page in store.scan("raw/")]
    assert [(o.key, o.size) for page in pages for o in page] == [
        ("raw/u/d.pdf", 13),
        ("raw/u/d/abc.pdf", 4),
    ]
    with pytest.raises(ObjectNotFound):
        await store.head("raw/none.pdf")
    assert [page async for page in LocalStorage(tmp_path / "empty").scan("raw/")] == [[]]
