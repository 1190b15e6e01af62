"""The poison catalogue: every kind of bad record a stage can meet, each a test.

A case puts its poison on partition 0 of a stage's topic and, behind it on the same partition,
a healthy record for another document. The real stage then runs on the real broker and
Postgres (the mock OpenAI server over HTTP), and the test checks that
1. the poison ends where it should: the DLQ with error headers naming a readable reason, or
   processed exactly once where it is no error (a duplicate, a stale event, a retry due in
   the past, the future or at a garbled time, headers missing or garbled);
2. a real job it names ends `failed_<stage>` with a readable `last_error`, or is left alone
   where the poison must not harm it;
3. the healthy record behind it completes and the group commits past it: the partition flows;
4. a dead-lettered poison left nothing half-written: no dedup row, no output record, no
   parsed file, buffer or final rows of the failing stage.

`POISON_KINDS` names every kind, for the reliability report.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from accessa import kafka_clients
from accessa.config import Settings
from accessa.storage import parsed_key, raw_key
from accessa.text import normalize_markdown, sha256_text
from accessa.topic_scan import Record
from consumers.chunker.app import buffer_chunks
from consumers.chunker.chunking import chunk_markdown
from mocks.openai_server import mock_vector
from mocks.policy_pdf import raw_pdf
from schemas.events import ChunksCreated, ChunksEmbedded, DocumentParsed, DocumentUploaded, Event
from schemas.headers import Headers
from schemas.topics import STAGES
from tests.integration.conftest import Stages
from tests.utils import CORPUS, read_topic, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

PARTITION = 0
# The status a healthy job reaches once each stage is done with it.
DONE = {
    "parser": "parse_validated",
    "chunker": "chunks_stored",
    "embedder": "embeddings_stored",
    "finalizer": "complete",
}
TABLE_HEADER = "| No | Item | Limit | Wait |\n|---|---|---|---|\n"


# --- what a case is made of


@dataclass(frozen=True)
class Job:
    """A document and its upload job (rows inserted or not: a ghost names nothing real)."""

    job_id: uuid.UUID
    document_id: uuid.UUID
    user_id: uuid.UUID
    sha256: str
    size: int

    @property
    def key(self) -> bytes:
        return str(self.document_id).encode()

    def ids(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "document_id": self.document_id,
            "user_id": self.user_id,
            "correlation_id": f"corr-{self.job_id}",
        }


@dataclass(frozen=True)
class Rec:
    """One record to produce; raw bytes, so any part of it can be garbage."""

    value: bytes | None
    key: bytes | None = None
    headers: dict[str, bytes] = field(default_factory=dict)


def headers_of(event: Event) -> dict[str, bytes]:
    """The headers the platform's producers set on an event."""
    return {
        Headers.CORRELATION_ID: event.correlation_id.encode(),
        Headers.JOB_ID: str(event.job_id).encode(),
        Headers.DOCUMENT_ID: str(event.document_id).encode(),
        Headers.USER_ID: str(event.user_id).encode(),
    }


def record_of(event: Event, **extra: bytes) -> Rec:
    return Rec(event.to_bytes(), event.key(), {**headers_of(event), **extra})


def retry_headers(kit: Kit, due_at: bytes) -> dict[str, bytes]:
    """What the runtime adds when it sends a record to `uploaded.retry.1`."""
    return {
        Headers.ATTEMPT: b"1",
        Headers.DUE_AT: due_at,
        Headers.ERROR_CODE: b"test_busy",
        Headers.ORIGINAL_TOPIC: kit.topic("uploaded").encode(),
        Headers.ORIGINAL_PARTITION: str(PARTITION).encode(),
    }


@dataclass
class Poison:
    """What a case produced and what it names."""

    records: list[Rec]
    topic: str = ""  # base topic name; "" = the input topic of the case's stage
    job: Job | None = None  # the job the poison names, if any
    event_ids: tuple[uuid.UUID, ...] = ()  # events whose dedup rows show a commit


@dataclass(frozen=True)
class Expect:
    """How a poison ends: `dlq` with reason `code` (dead-lettered by stage `at`, default the
    stage it was fed to), `processed` exactly once, `skipped` (counted, nothing written, no DLQ),
    or `rejected` by the broker, never stored.
    `job` is the status its job ends in (default for `dlq`: that stage's `failed_*`;
    "absent": the job row does not exist)."""

    ends: Literal["dlq", "processed", "skipped", "rejected"]
    code: str = ""
    job: str | None = None
    at: str | None = None
    keeps_value: bool = True  # the DLQ copy carries the poison's bytes


Build = Callable[["Kit"], Awaitable[Poison]]
Check = Callable[["Kit", Poison], Awaitable[None]]


@dataclass(frozen=True)
class PoisonCase:
    kind: str
    stage: str  # whose topic the poison is put on
    build: Build
    expect: Expect
    runs: tuple[str, ...] = ()  # stages to run (default: `stage` alone)
    settings: dict[str, Any] = field(default_factory=dict)
    check: Check | None = None  # what else this kind must show


# --- the test kit: jobs at any stage's door, records, topics, footprints


@dataclass
class Kit:
    stages: Stages

    @property
    def settings(self) -> Settings:
        return self.stages.settings

    @property
    def pool(self) -> asyncpg.Pool:
        return self.stages.pool

    def topic(self, base: str) -> str:
        return f"{self.settings.topic_prefix}{base}"

    def group(self, stage: str) -> str:
        return f"{self.settings.topic_prefix}{self.settings.group_prefix}{stage}"

    def ghost(self) -> Job:
        """Ids of a document and job that do not exist."""
        return Job(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "0" * 64, 1)

    async def job(
        self, *, pdf: bytes | None = None, store: bool = True, status: str = "uploaded"
    ) -> Job:
        """What the API does for an upload (store, insert document + job), then `status`."""
        pdf = (CORPUS / "minimal-document.pdf").read_bytes() if pdf is None else pdf
        job = Job(
            uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), hashlib.sha256(pdf).hexdigest(), len(pdf)
        )
        path = raw_key(job.user_id, job.document_id)
        if store:
            await self.stages.storage.put(path, pdf)
        await self.pool.execute(
            """INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path)
               VALUES ($1, $2, $3, $4, 'policy.pdf', $5)""",
            job.document_id,
            job.user_id,
            job.sha256,
            job.size,
            path,
        )
        await self.pool.execute(
            "INSERT INTO upload_jobs (job_id, user_id, document_id, correlation_id) "
            "VALUES ($1, $2, $3, $4)",
            job.job_id,
            job.user_id,
            job.document_id,
            f"corr-{job.job_id}",
        )
        if status != "uploaded":
            await self.set_status(job, status)
        return job

    async def set_status(self, job: Job, status: str, **fields: Any) -> None:
        sets = "".join(f", {name} = ${i}" for i, name in enumerate(fields, start=3))
        await self.pool.execute(
            f"UPDATE upload_jobs SET status = $2, "
            f"state = CASE WHEN $2 = 'complete' THEN 'done' ELSE 'working' END{sets} "
            f"WHERE job_id = $1",
            job.job_id,
            status,
            *fields.values(),
        )

    async def job_row(self, job: Job) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM upload_jobs WHERE job_id = $1", job.job_id)

    def uploaded(self, job: Job, **overrides: Any) -> DocumentUploaded:
        return DocumentUploaded(
            **{
                "event_id": DocumentUploaded.make_id(job.job_id),
                **job.ids(),
                "storage_path": raw_key(job.user_id, job.document_id),
                "sha256": job.sha256,
                "size": job.size,
                "filename": "policy.pdf",
                **overrides,
            }
        )

    async def parsed(self, job: Job, markdown: str, *, store: bool = True) -> DocumentParsed:
        """The job as the parser leaves it: markdown stored, job `parse_validated`."""
        path = parsed_key(job.user_id, job.document_id)
        if store:
            await self.stages.storage.put(path, markdown.encode())
        digest = sha256_text(markdown)
        await self.set_status(job, "parse_validated", parsed_path=path, parsed_sha256=digest)
        return DocumentParsed(
            event_id=DocumentParsed.make_id(job.job_id),
            **job.ids(),
            parsed_path=path,
            parsed_sha256=digest,
            pages=1,
            parser="test",
        )

    async def chunked(self, job: Job, markdown: str) -> ChunksCreated:
        """The job as the chunker leaves it: chunks buffered, job `chunks_stored`."""
        parsed = await self.parsed(job, markdown)
        version = self.settings.chunker_version
        chunks = chunk_markdown(markdown, document_id=job.document_id, version=version)
        async with self.pool.acquire() as conn:
            await buffer_chunks(conn, parsed, version, chunks)
        await self.set_status(job, "chunks_stored", chunks_version=version, chunk_count=len(chunks))
        return ChunksCreated(
            event_id=ChunksCreated.make_id(job.job_id, version),
            **job.ids(),
            chunker_version=version,
            chunk_count=len(chunks),
            parsed_sha256=parsed.parsed_sha256,
        )

    async def embedded(self, job: Job, markdown: str) -> ChunksEmbedded:
        """The job as the embedder leaves it: vectors buffered, job `embeddings_stored`."""
        chunked = await self.chunked(job, markdown)
        model = self.settings.embed_model
        rows = await self.pool.fetch(
            "SELECT chunk_id, content FROM document_chunk_buffer WHERE job_id = $1", job.job_id
        )
        await self.pool.executemany(
            """INSERT INTO document_vector_buffer (chunk_id, embed_model, job_id, document_id,
                                                   embedding) VALUES ($1, $2, $3, $4, $5)""",
            [
                (
                    r["chunk_id"],
                    model,
                    job.job_id,
                    job.document_id,
                    mock_vector(r["content"], model, self.settings.embed_dimensions),
                )
                for r in rows
            ],
        )
        await self.set_status(job, "embeddings_stored", embed_model=model, vector_count=len(rows))
        return ChunksEmbedded(
            event_id=ChunksEmbedded.make_id(job.job_id, chunked.chunker_version, model),
            **job.ids(),
            chunker_version=chunked.chunker_version,
            embed_model=model,
            dimensions=self.settings.embed_dimensions,
            chunk_count=chunked.chunk_count,
            parsed_sha256=chunked.parsed_sha256,
        )

    async def ready(self, stage: str, markdown: str | None = None) -> tuple[Job, Event]:
        """A job waiting at `stage`'s door, and the event that opens it."""
        job = await self.job()
        markdown = markdown or policy_markdown()
        if stage == "parser":
            return job, self.uploaded(job)
        build: dict[str, Callable[[Job, str], Awaitable[Event]]] = {
            "chunker": self.parsed,
            "embedder": self.chunked,
            "finalizer": self.embedded,
        }
        return job, await build[stage](job, markdown)

    async def produce(self, topic: str, records: list[Rec], **config: Any) -> None:
        """Each record to `PARTITION` of `topic`, in order, acknowledged by the broker."""
        producer = kafka_clients.producer(self.settings, acks="all", **config)
        await producer.start()
        try:
            for r in records:
                await producer.send_and_wait(
                    topic, r.value, key=r.key, partition=PARTITION, headers=list(r.headers.items())
                )
        finally:
            await producer.stop()

    async def end_offset(self, topic: str) -> int:
        consumer = kafka_clients.consumer(self.settings)
        await consumer.start()
        try:
            tp = TopicPartition(topic, PARTITION)
            return (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()

    async def records(self, base: str) -> list[Record]:
        return await read_topic(self.settings, self.topic(base))

    async def committed_past(self, stage: str, topic: str, end: int) -> None:
        """Wait until `stage`'s group has committed `topic`'s partition up to `end`."""
        group = self.group(stage) + ("-retry" if ".retry." in topic else "")

        async def committed() -> bool:
            admin = kafka_clients.admin(self.settings)
            await admin.start()
            try:
                offsets = await admin.list_consumer_group_offsets(group)
            finally:
                await admin.close()
            meta = offsets.get(TopicPartition(topic, PARTITION))
            return meta is not None and meta.offset >= end

        await wait_for(committed, timeout=60, what=f"{group} to commit {topic} past {end}")

    async def reaches(self, job: Job, status: str) -> None:
        async def there() -> bool:
            row = await self.job_row(job)
            assert row is not None and row["state"] != "deadletter", row and row["last_error"]
            return row["status"] == status

        await wait_for(there, timeout=90, what=f"job {job.job_id} to reach {status}")

    async def footprint(self, poison: Poison, stage: str) -> dict[str, int]:
        """What `stage` has written for the poison: dedup rows, its output rows and files."""
        job = poison.job or self.ghost()
        row = await self.pool.fetchrow(
            """SELECT
                 (SELECT count(*) FROM processed_events
                   WHERE consumer = $1 AND event_id = ANY($2::uuid[])) AS dedup_rows,
                 (SELECT count(*) FROM document_chunk_buffer WHERE job_id = $3) AS chunk_buffer,
                 (SELECT count(*) FROM document_vector_buffer WHERE job_id = $3)
                   AS vector_buffer,
                 (SELECT count(*) FROM document_chunks WHERE document_id = $4) AS final_rows""",
            self.group(stage),
            list(poison.event_ids),
            job.job_id,
            job.document_id,
        )
        parsed_file = await self.stages.storage.exists(parsed_key(job.user_id, job.document_id))
        writes = {
            "parser": {"parsed_file": int(parsed_file)},
            "chunker": {"chunk_buffer": row["chunk_buffer"]},
            "embedder": {"vector_buffer": row["vector_buffer"]},
            "finalizer": {
                "chunk_buffer": row["chunk_buffer"],
                "vector_buffer": row["vector_buffer"],
            },
        }
        return {"dedup_rows": row["dedup_rows"], "final_rows": row["final_rows"], **writes[stage]}


def policy_markdown(extra: str = "") -> str:
    """A short parsed policy with words no other test embeds (the mock's cache stays cold)."""
    return normalize_markdown(
        f"<!-- page 1 -->\n\n# Declarations\n\nPolicy {uuid.uuid4().hex} covers the dwelling "
        f"on Juniper Lane against fire, windstorm and theft. {extra}\n"
    )


def control_characters_pdf() -> bytes:
    """A one-page PDF whose only text is control characters: a text layer with nothing in it."""
    content = b"BT /F1 24 Tf 72 700 Td (\\001\\002\\003\\004) Tj ET"
    return raw_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    )


# --- builds: one per kind (or family of kinds)


async def _named(kit: Kit, value: Callable[[DocumentUploaded], bytes | None]) -> Poison:
    """An `uploaded` record naming a real job in its headers, with `value` made of its event."""
    job = await kit.job()
    event = kit.uploaded(job)
    return Poison(
        [Rec(value(event), job.key, headers_of(event))], job=job, event_ids=(event.event_id,)
    )


def _json_with(event: Event, **changes: Any) -> bytes:
    data = {**json.loads(event.to_bytes()), **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None}).encode()


async def not_json(kit: Kit) -> Poison:
    return await _named(kit, lambda e: b"{not json")


async def invalid_utf8(kit: Kit) -> Poison:
    return await _named(kit, lambda e: e.to_bytes().replace(b"policy.pdf", b"policy\xff.pdf"))


async def wrong_schema_version(kit: Kit) -> Poison:
    return await _named(kit, lambda e: _json_with(e, schema_version=2))


async def missing_fields(kit: Kit) -> Poison:
    return await _named(kit, lambda e: _json_with(e, storage_path=None, sha256=None))


async def empty_value(kit: Kit) -> Poison:
    return await _named(kit, lambda e: None)  # a tombstone: key and headers, no value


async def unknown_event_type(kit: Kit) -> Poison:
    """A `chunked` event published to `uploaded`."""
    return await _named(
        kit,
        lambda e: ChunksCreated(
            event_id=ChunksCreated.make_id(e.job_id, "x"),
            job_id=e.job_id,
            document_id=e.document_id,
            user_id=e.user_id,
            correlation_id=e.correlation_id,
            chunker_version="markdown-simple@1",
            chunk_count=1,
            parsed_sha256="0" * 64,
        ).to_bytes(),
    )


async def unknown_job(kit: Kit) -> Poison:
    event = kit.uploaded(ghost := kit.ghost())
    return Poison([record_of(event)], job=ghost, event_ids=(event.event_id,))


async def document_deleted(kit: Kit) -> Poison:
    """Parsed, then the user deleted the document (its job goes with it) before chunking."""
    job, event = await kit.ready("chunker")
    await kit.pool.execute("DELETE FROM documents WHERE document_id = $1", job.document_id)
    return Poison([record_of(event)], job=job, event_ids=(event.event_id,))


async def other_users_document(kit: Kit) -> Poison:
    """Another user's finished document, named by an event carrying the attacker's user id."""
    victim = await kit.job(status="complete")
    event = kit.uploaded(victim, user_id=uuid.uuid4())
    return Poison([record_of(event)], job=victim, event_ids=(event.event_id,))


async def _attacker_got_nothing(kit: Kit, poison: Poison) -> None:
    (rec,) = poison.records
    attacker = uuid.UUID(json.loads(rec.value or b"{}")["user_id"])
    assert poison.job is not None
    assert not await kit.stages.storage.exists(parsed_key(attacker, poison.job.document_id))
    assert not await kit.pool.fetchval("SELECT count(*) FROM events WHERE user_id = $1", attacker)


def pdf_job(pdf: Callable[[], bytes], *, store: bool = True) -> Build:
    async def build(kit: Kit) -> Poison:
        job = await kit.job(pdf=pdf(), store=store)
        event = kit.uploaded(job)
        # and the id of the `parsed` event the chunker would dedup on, should it get that far
        ids = (event.event_id, DocumentParsed.make_id(job.job_id))
        return Poison([record_of(event)], job=job, event_ids=ids)

    return build


def corpus(name: str) -> Callable[[], bytes]:
    return lambda: (CORPUS / name).read_bytes()


def parsed_job(markdown: Callable[[], str], *, store: bool = True, then: str = "") -> Build:
    """A `parsed` record; `then`: overwrite the stored markdown with this text afterwards."""

    async def build(kit: Kit) -> Poison:
        job = await kit.job()
        event = await kit.parsed(job, markdown(), store=store)
        if then:
            await kit.stages.storage.put(event.parsed_path, then.encode())
        return Poison([record_of(event)], job=job, event_ids=(event.event_id,))

    return build


def huge_table() -> str:
    """About 11 MB of markdown that is one table."""
    row = "| {i} | Coverage item number {i} for the insured dwelling | $1,000 | 30 days |\n"
    return "<!-- page 1 -->\n\n" + TABLE_HEADER + "".join(row.format(i=i) for i in range(140_000))


async def _table_chunked_at_rows(kit: Kit, poison: Poison) -> None:
    assert poison.job is not None
    contents = await kit.pool.fetch(
        "SELECT content FROM document_chunk_buffer WHERE job_id = $1", poison.job.job_id
    )
    job = await kit.job_row(poison.job)
    assert job is not None and len(contents) == job["chunk_count"] > 1000
    assert all(r["content"].startswith(TABLE_HEADER.strip()) for r in contents)


def chunked_job(text: str, *, count_off_by: int = 0) -> Build:
    """A `chunked` record whose chunks contain `text` (a mock OpenAI marker, say)."""

    async def build(kit: Kit) -> Poison:
        job, event = await kit.ready("embedder", policy_markdown(text))
        assert isinstance(event, ChunksCreated)
        event = event.model_copy(update={"chunk_count": event.chunk_count + count_off_by})
        return Poison([record_of(event)], job=job, event_ids=(event.event_id,))

    return build


async def buffers_gone(kit: Kit) -> Poison:
    """An `embedded` record whose buffers were deleted before the finalizer ran."""
    job, event = await kit.ready("finalizer")
    await kit.pool.execute("DELETE FROM document_vector_buffer WHERE job_id = $1", job.job_id)
    await kit.pool.execute("DELETE FROM document_chunk_buffer WHERE job_id = $1", job.job_id)
    return Poison([record_of(event)], job=job, event_ids=(event.event_id,))


def with_headers(
    headers: Callable[[DocumentUploaded], dict[str, bytes]], *, key: bool = True
) -> Build:
    """A valid `uploaded` record for a real job, with these headers (and maybe no key)."""

    async def build(kit: Kit) -> Poison:
        job = await kit.job()
        event = kit.uploaded(job)
        rec = Rec(event.to_bytes(), event.key() if key else None, headers(event))
        return Poison([rec], job=job, event_ids=(event.event_id,))

    return build


def garbled(event: DocumentUploaded) -> dict[str, bytes]:
    return {
        Headers.CORRELATION_ID: b"\xff\xfe\xfd",
        Headers.JOB_ID: b"not-a-uuid",
        Headers.DOCUMENT_ID: str(uuid.uuid4()).encode(),
        Headers.USER_ID: b"\xc3\x28",
        Headers.ATTEMPT: b"many",
    }


async def _output_headers_come_from_the_event(kit: Kit, poison: Poison) -> None:
    (value,) = [r.value for r in poison.records]
    event = DocumentUploaded.model_validate_json(value or b"")
    out = [r for r in await kit.records("parsed") if r.key == event.key()]
    assert out, "the poison's output was emitted keyed by its document"
    expected = {k: v.decode() for k, v in headers_of(event).items()}
    assert all({k: r.headers.get(k) for k in expected} == expected for r in out)
    assert all(len(r.headers.get("x-trace-blob", "")) == 0 for r in out)


async def oversized(kit: Kit) -> Poison:
    """Bigger than the runtime's limit (lowered to 64 KiB for this case) but not the broker's."""
    job = await kit.job()
    event = kit.uploaded(job, filename="p" * 100_000 + ".pdf")
    return Poison([record_of(event)], job=job, event_ids=(event.event_id,))


async def oversized_near_limit(kit: Kit) -> Poison:
    """As big as a producer may send: the DLQ copy, with its error headers, would not be."""
    job = await kit.job()
    headers = headers_of(kit.uploaded(job))
    overhead = DefaultRecordBatchBuilder.estimate_size_in_bytes(job.key, b"", list(headers.items()))
    value = b"x" * (kit.settings.max_message_bytes - overhead - 16)  # varint growth
    return Poison([Rec(value, job.key, headers)], job=job)


async def oversized_at_broker(kit: Kit) -> Poison:
    """Over the broker's limit: the producer gets a clear error and nothing is stored."""
    topic = kit.topic("uploaded")
    with pytest.raises(MessageSizeTooLargeError):
        await kit.produce(topic, [Rec(b"x" * 2_000_000, b"k")], max_request_size=4_000_000)
    assert await kit.end_offset(topic) == 0
    return Poison([])


async def duplicate_event(kit: Kit) -> Poison:
    job = await kit.job()
    event = kit.uploaded(job)
    return Poison([record_of(event), record_of(event)], job=job, event_ids=(event.event_id,))


async def _one_parse_two_equal_outputs(kit: Kit, poison: Poison) -> None:
    assert poison.job is not None
    advanced = await kit.pool.fetchval(
        "SELECT count(*) FROM events WHERE job_id = $1 AND kind = 'advanced' AND status = $2",
        poison.job.job_id,
        "parsed",
    )
    assert advanced == 1
    out = [r.value for r in await kit.records("parsed") if r.key == poison.job.key]
    assert len(out) == 2 and len(set(out)) == 1  # the duplicate re-emits the same event


async def out_of_order(kit: Kit) -> Poison:
    """An `uploaded` event arriving after its job already completed."""
    job = await kit.job(status="complete")
    event = kit.uploaded(job)
    return Poison([record_of(event)], job=job, event_ids=(event.event_id,))


async def _job_never_moved_backwards(kit: Kit, poison: Poison) -> None:
    assert poison.job is not None
    moved = await kit.pool.fetchval(
        "SELECT count(*) FROM events WHERE job_id = $1 AND kind = 'advanced'", poison.job.job_id
    )
    assert moved == 0


def on_retry_topic(
    due_at: Callable[[], bytes], value: Callable[[Event], bytes] | None = None
) -> Build:
    """A record on `uploaded.retry.1` with this x-due-at (and value, default its event)."""

    async def build(kit: Kit) -> Poison:
        job = await kit.job()
        event = kit.uploaded(job)
        headers = {**headers_of(event), **retry_headers(kit, due_at())}
        body = value(event) if value else event.to_bytes()
        rec = Rec(body, event.key(), headers)
        return Poison([rec], topic="uploaded.retry.1", job=job, event_ids=(event.event_id,))

    return build


def ms_from_now(seconds: float) -> Callable[[], bytes]:
    return lambda: str(int((time.time() + seconds) * 1000)).encode()


async def _ran_once_due(kit: Kit, poison: Poison) -> None:
    assert poison.job is not None
    (rec,) = poison.records
    due_ms = int(rec.headers[Headers.DUE_AT])
    started = await kit.pool.fetchval(
        "SELECT min(created_at) FROM events WHERE job_id = $1 AND kind = 'advanced'",
        poison.job.job_id,
    )
    assert started.timestamp() * 1000 >= due_ms - 50  # clocks: same host, ms rounding


# --- the catalogue

# fmt: off
CATALOGUE = [
    # the record cannot be read
    PoisonCase("not_json", "parser", not_json, Expect("dlq", "not_json")),
    PoisonCase("invalid_utf8_in_json", "parser", invalid_utf8, Expect("dlq", "not_json")),
    PoisonCase("wrong_schema_version", "parser", wrong_schema_version,
               Expect("dlq", "wrong_schema_version")),
    PoisonCase("missing_fields", "parser", missing_fields, Expect("dlq", "invalid_event")),
    PoisonCase("empty_value", "parser", empty_value, Expect("dlq", "empty_message")),
    PoisonCase("unknown_event_type", "parser", unknown_event_type,
               Expect("dlq", "invalid_event")),
    PoisonCase("oversized_for_the_runtime", "parser", oversized,
               Expect("dlq", "oversized", keeps_value=False),
               settings={"max_message_bytes": 64 * 1024}),
    PoisonCase("oversized_near_the_broker_limit", "parser", oversized_near_limit,
               Expect("dlq", "not_json", keeps_value=False)),
    PoisonCase("oversized_for_the_broker", "parser", oversized_at_broker, Expect("rejected")),
    # it names something that is not there, or not its own
    PoisonCase("unknown_job", "parser", unknown_job, Expect("dlq", "unknown_job", job="absent")),
    PoisonCase("document_deleted_meanwhile", "chunker", document_deleted,
               Expect("skipped", job="absent")),
    PoisonCase("other_users_document", "parser", other_users_document,
               Expect("dlq", "user_mismatch", job="complete"),
               check=_attacker_got_nothing),
    PoisonCase("raw_file_missing", "parser", pdf_job(corpus("minimal-document.pdf"), store=False),
               Expect("dlq", "raw_file_missing")),
    PoisonCase("parsed_file_missing", "chunker", parsed_job(policy_markdown, store=False),
               Expect("dlq", "parsed_file_missing")),
    PoisonCase("parsed_sha256_mismatch", "chunker",
               parsed_job(policy_markdown, then="# Someone else's text\n"),
               Expect("dlq", "parsed_sha_mismatch")),
    PoisonCase("chunk_count_disagrees_with_buffer", "embedder", chunked_job("", count_off_by=3),
               Expect("dlq", "chunk_count_mismatch")),
    PoisonCase("embedded_but_buffers_gone", "finalizer", buffers_gone,
               Expect("dlq", "consistency_check_failed")),
    # the document itself is bad
    PoisonCase("pdf_encrypted", "parser", pdf_job(corpus("libreoffice-writer-password.pdf")),
               Expect("dlq", "pdf_encrypted")),
    PoisonCase("pdf_corrupt", "parser", pdf_job(lambda: b"%PDF-1.7\n" + b"\x00broken" * 200),
               Expect("dlq", "pdf_corrupt")),
    PoisonCase("no_text_layer", "parser", pdf_job(corpus("imagemagick-lzw.pdf")),
               Expect("dlq", "no_text_layer")),
    # A text layer of control characters only: after normalising, nothing but page markers.
    PoisonCase("empty_markdown", "parser", pdf_job(control_characters_pdf),
               Expect("dlq", "empty_markdown")),
    PoisonCase("zero_chunks", "chunker", parsed_job(lambda: "<!-- page 1 -->\n"),
               Expect("dlq", "zero_chunks")),
    PoisonCase("single_10mb_table", "chunker", parsed_job(huge_table),
               Expect("processed", job="chunks_stored"), check=_table_chunked_at_rows),
    # the provider refuses or answers nonsense
    PoisonCase("vector_wrong_dimension", "embedder", chunked_job("<<mock:wrong-dim>>"),
               Expect("dlq", "vector_wrong_dimension")),
    PoisonCase("vector_nan", "embedder", chunked_job("<<mock:nan>>"),
               Expect("dlq", "vector_not_finite")),
    PoisonCase("provider_400_input_too_long", "embedder", chunked_job("<<mock:400>>"),
               Expect("dlq", "provider_rejected_input")),
    # the envelope is odd but the event is good: processed, identity from the event
    PoisonCase("null_key", "parser", with_headers(headers_of, key=False),
               Expect("processed", job="parse_validated"),
               check=_output_headers_come_from_the_event),
    PoisonCase("headers_missing", "parser", with_headers(lambda e: {}),
               Expect("processed", job="parse_validated"),
               check=_output_headers_come_from_the_event),
    PoisonCase("headers_garbled", "parser", with_headers(garbled),
               Expect("processed", job="parse_validated"),
               check=_output_headers_come_from_the_event),
    PoisonCase("huge_header", "parser",
               with_headers(lambda e: {**headers_of(e), "x-trace-blob": b"t" * 512 * 1024}),
               Expect("processed", job="parse_validated"),
               check=_output_headers_come_from_the_event),
    # delivery order and timing: handled idempotently, never an error
    PoisonCase("duplicate_event", "parser", duplicate_event,
               Expect("processed", job="parse_validated"),
               check=_one_parse_two_equal_outputs),
    PoisonCase("out_of_order_after_completion", "parser", out_of_order,
               Expect("processed", job="complete"), check=_job_never_moved_backwards),
    PoisonCase("retry_due_in_the_past", "parser", on_retry_topic(ms_from_now(-3600)),
               Expect("processed", job="parse_validated")),
    PoisonCase("retry_due_in_the_future", "parser", on_retry_topic(ms_from_now(4)),
               Expect("processed", job="parse_validated"), check=_ran_once_due),
    PoisonCase("retry_due_garbage", "parser", on_retry_topic(lambda: b"tomorrow"),
               Expect("processed", job="parse_validated")),
    PoisonCase("retry_due_far_future", "parser", on_retry_topic(lambda: b"253402300799000"),
               Expect("processed", job="parse_validated"),
               settings={"budget_recheck_s": 1.0}),  # the longest wait: max(0.5 s * 2^2, 1 s)
    PoisonCase("retry_not_json", "parser",
               on_retry_topic(ms_from_now(0), value=lambda e: b"\x00\x01 binary"),
               Expect("dlq", "not_json")),
]
# fmt: on
POISON_KINDS = [case.kind for case in CATALOGUE]


@pytest.mark.parametrize("case", CATALOGUE, ids=POISON_KINDS)
async def test_poison_ends_in_its_place_and_the_record_behind_it_on_the_partition_completes(
    case: PoisonCase, stages: Stages
) -> None:
    for name, value in case.settings.items():
        setattr(stages.settings, name, value)
    kit = Kit(stages)
    runs = case.runs or (case.stage,)
    at = case.expect.at or case.stage
    poison = await case.build(kit)
    topic = kit.topic(poison.topic or STAGES[case.stage].input)
    before = await kit.footprint(poison, at)
    healthy_job, healthy_event = await kit.ready(case.stage)
    extra = retry_headers(kit, ms_from_now(0)()) if ".retry." in topic else {}
    await kit.produce(topic, [*poison.records, record_of(healthy_event, **extra)])
    end = await kit.end_offset(topic)
    assert end == len(poison.records) + 1  # the poison is ahead of the healthy record
    await stages.start(*runs)

    # 3. the record behind the poison completes, and the group commits past both
    await kit.reaches(healthy_job, DONE[runs[-1]])
    await kit.committed_past(case.stage, topic, end)

    if case.expect.ends == "dlq":
        await _dead_lettered(kit, case, poison, topic)
        # 4. nothing half-written by the stage that gave up
        assert await kit.footprint(poison, at) == before
        if poison.job is not None:
            out = await kit.records(STAGES[at].output)
            assert not [r for r in out if r.key == poison.job.key]
    elif case.expect.ends == "skipped":
        assert not await kit.records(f"{STAGES[case.stage].input}.dlq")
        assert await kit.footprint(poison, case.stage) == before  # not even a dedup row
        assert poison.job is None or await kit.job_row(poison.job) is None
    else:
        assert not await kit.records(f"{STAGES[case.stage].input}.dlq")
        after = await kit.footprint(poison, case.stage)
        assert after["dedup_rows"] == len(set(poison.event_ids))  # exactly one effect each
        if poison.job is not None:
            row = await kit.job_row(poison.job)
            assert row is not None and row["status"] == case.expect.job, row
    if case.check is not None:
        await case.check(kit, poison)


async def _dead_lettered(kit: Kit, case: PoisonCase, poison: Poison, topic: str) -> None:
    """1. and 2.: the DLQ record with its reason, and the job it names."""
    at = case.expect.at or case.stage
    dead = await wait_for(lambda: kit.records(f"{STAGES[at].input}.dlq"), what="the DLQ record")
    assert len(dead) == 1, [r.headers.get(Headers.ERROR_CODE) for r in dead]
    h = dead[0].headers
    assert (h[Headers.ERROR_CLASS], h[Headers.ERROR_CODE]) == ("permanent", case.expect.code)
    assert len(h[Headers.ERROR_MESSAGE]) > 10, h[Headers.ERROR_MESSAGE]  # a sentence
    assert h[Headers.ORIGINAL_OFFSET].isdigit() and h[Headers.FAILED_AT].isdigit()
    if at == case.stage:
        (sent,) = poison.records
        assert (
            h[Headers.ORIGINAL_TOPIC]
            == sent.headers.get(Headers.ORIGINAL_TOPIC, topic.encode()).decode()
        )
        assert h[Headers.ORIGINAL_PARTITION] == str(PARTITION)
        if case.expect.keeps_value:
            assert dead[0].value == (sent.value or b"")
        else:
            assert not dead[0].value and h[Headers.VALUE_OMITTED] == str(len(sent.value or b""))
    if poison.job is None:
        return
    row = await kit.job_row(poison.job)
    if case.expect.job == "absent":
        assert row is None
        return
    assert row is not None
    failed = STAGES[at].failed_status
    assert row["status"] == (case.expect.job or failed)
    if row["status"] == failed:
        error = row["last_error"]
        assert (row["state"], error["code"], error["stage"]) == ("deadletter", case.expect.code, at)
        assert len(error["message"]) > 10 and "Traceback" not in error["message"]
