"""The local broker's KRaft cluster id must be one StorageTool accepts."""

import base64
import string
import uuid

import pytest

from accessa.devstack import kafka


def test_a_cluster_id_starting_with_a_dash_is_rerolled(monkeypatch: pytest.MonkeyPatch) -> None:
    # 0xF8 encodes to "-" in urlsafe base64: StorageTool would read such an id as an option.
    dashed = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    plain = uuid.UUID(bytes=bytes([0x10]) + bytes(15))
    rolls = iter([dashed, dashed, plain])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(rolls))

    cluster_id = kafka.new_cluster_id()

    assert cluster_id == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=")
    assert next(rolls, None) is None  # both dashed ids were drawn and refused


def test_cluster_ids_are_22_url_safe_characters_never_starting_with_a_dash() -> None:
    ids = {kafka.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    alphabet = set(string.ascii_letters + string.digits + "-_")
    assert all(set(i) <= alphabet for i in ids)
