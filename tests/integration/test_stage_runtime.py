"""The stage runtime against the real broker and Postgres, through a test-only stage."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

import asyncpg
import httpx
import pytest

from accessa import kafka_clients
from accessa.config import Settings
from accessa.migrate import applied_migrations, migrate
from accessa.runtime.context import JOB
from schemas.events import DocumentParsed, DocumentUploaded
from schemas.headers import Headers
from tests.integration.conftest import StartStage
from tests.integration.stages import echo, jobreader, marked, sink
from tests.utils import (
    free_port,
    header_map,
    produce,
    produce_events,
    read_topic,
    start_process,
    uploaded_event,
    wait_for,
    wait_quiet,
)

pytestmark = pytest.mark.integration


async def rows(pool: asyncpg.Pool, prefix: str, table: str = "runtime_test_rows") -> list:
    return await pool.fetch(f"SELECT * FROM public.{table} WHERE prefix = $1 ORDER BY id", prefix)


async def test_topics_are_created_with_the_configured_partitions(topics: Settings) -> None:
    admin = kafka_clients.admin(topics)
    await admin.start()
    try:
        names = [
            f"{topics.topic_prefix}uploaded",
            f"{topics.topic_prefix}chunked.retry.2",
            f"{topics.topic_prefix}embedded.dlq",
        ]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == dict.fromkeys(
        names, topics.topic_partitions
    )


async def test_migrations_apply_twice_and_the_second_run_changes_nothing(infra: Settings) -> None:
    assert await migrate(infra) == []
    assert "0001_upload_pipeline.sql" in await applied_migrations(infra)


async def test_stage_writes_one_row_per_event_and_emits_with_correlation_headers(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool
) -> None:
    events = [uploaded_event(f"ok-{i}.pdf") for i in range(5)]
    await start_stage(echo)
    await produce_events(topics, f"{topics.topic_prefix}uploaded", events)

    async def five_out() -> list:
        out = await read_topic(topics, f"{topics.topic_prefix}parsed")
        return out if len(out) >= 5 else []

    await wait_for(five_out, what="5 output events")
    await wait_quiet(topics, _groups(topics, "echo"), [f"{topics.topic_prefix}parsed"])
    out = await read_topic(topics, f"{topics.topic_prefix}parsed")
    assert len(out) == 5
    assert len(await rows(pool, topics.topic_prefix)) == 5
    by_key = {r.key: header_map(r) for r in out}
    for event in events:
        headers = by_key[event.key()]
        assert headers[Headers.CORRELATION_ID] == event.correlation_id
        assert headers[Headers.JOB_ID] == str(event.job_id)


async def test_a_polled_batch_commits_its_records_together_not_one_by_one(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool
) -> None:
    """Records waiting when the stage starts arrive in one poll and commit in one wave: their
    dedup rows and writes share a transaction (rows of one transaction share their xmin)."""
    events = [uploaded_event(f"batch-{i}.pdf") for i in range(20)]
    await produce_events(topics, f"{topics.topic_prefix}uploaded", events)
    await start_stage(echo)
    await wait_for(lambda: _count(pool, topics.topic_prefix, 20), what="20 rows")
    group = f"{topics.topic_prefix}{topics.group_prefix}echo"
    transactions = await pool.fetchval(
        """SELECT count(DISTINCT xmin::text) FROM processed_events
           WHERE consumer = $1 AND event_id = ANY($2::uuid[])""",
        group,
        [e.event_id for e in events],
    )
    writes = await pool.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM public.runtime_test_rows WHERE prefix = $1",
        topics.topic_prefix,
    )
    assert 1 <= transactions <= 4 and writes == transactions  # a transaction per record: 20


async def test_a_record_whose_writes_fail_at_commit_is_routed_alone_and_its_wave_commits(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool
) -> None:
    user, document, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _insert_job(pool, user, document, job)
    bad = uploaded_event("unwritable.pdf", job_id=job, document_id=document, user_id=user)
    good = [uploaded_event(f"good-{i}.pdf") for i in range(7)]
    await produce_events(topics, f"{topics.topic_prefix}uploaded", [*good[:4], bad, *good[4:]])
    await start_stage(echo, retry_base_delay_s=0.2)

    dlq_topic = f"{topics.topic_prefix}uploaded.dlq"
    await wait_for(lambda: read_topic(topics, dlq_topic), timeout=30, what="a DLQ record")
    await wait_quiet(topics, _groups(topics, "echo"), _outputs(topics))
    (dead,) = await read_topic(topics, dlq_topic)
    assert dead.key == bad.key()
    assert header_map(dead)[Headers.ERROR_CODE] == "unexpected_InvalidTextRepresentationError"
    out = await read_topic(topics, f"{topics.topic_prefix}parsed")
    assert sorted(r.key or b"" for r in out) == sorted(e.key() for e in good)
    assert sorted(r["event_id"] for r in await rows(pool, topics.topic_prefix)) == sorted(
        e.event_id for e in good
    )  # the bad record's row was rolled back with its dedup row, every time
    job_row = await pool.fetchrow(
        "SELECT status, last_error FROM upload_jobs WHERE job_id = $1", job
    )
    assert job_row["status"] == "failed_parse"
    assert job_row["last_error"]["code"] == "unexpected_InvalidTextRepresentationError"


async def test_an_event_delivered_again_re_emits_its_stored_output_and_runs_once(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool
) -> None:
    """Copies of committed events (looked up per poll) and copies sent together before either
    ran (the second loses at ctx.commit()): one handler run each, one output per copy."""
    done = [uploaded_event(f"done-{i}.pdf") for i in range(3)]
    fresh = [uploaded_event(f"fresh-{i}.pdf") for i in range(3)]
    await start_stage(echo)
    parsed = f"{topics.topic_prefix}parsed"
    await produce_events(topics, f"{topics.topic_prefix}uploaded", done)

    async def outputs(n: int) -> list:
        out = await read_topic(topics, parsed)
        return out if len(out) >= n else []

    await wait_for(lambda: outputs(3), what="3 output events")
    await produce_events(topics, f"{topics.topic_prefix}uploaded", done + fresh + fresh)
    await wait_for(lambda: outputs(12), what="12 output events")
    await wait_quiet(topics, _groups(topics, "echo"), [parsed])
    out = await read_topic(topics, parsed)
    assert len(out) == 12
    assert sorted(r["event_id"] for r in await rows(pool, topics.topic_prefix)) == sorted(
        e.event_id for e in done + fresh
    )
    values: dict[bytes | None, set[bytes | None]] = {}
    for record in out:
        values.setdefault(record.key, set()).add(record.value)
    assert {e.key() for e in done + fresh} == set(values)
    assert all(len(v) == 1 for v in values.values())  # a copy re-emits the same output


async def test_the_working_status_lands_before_the_waves_commit_though_the_handler_is_done_first(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool
) -> None:
    """The working status is written beside the handlers, not before them: it must still land
    before the wave's commit moves the job on (after it, it would move nothing: a job never
    moves back), even for a handler with nothing to wait for."""
    jobs = [(uuid.uuid4(), uuid.uuid4(), uuid.uuid4()) for _ in range(4)]
    for user, document, job in jobs:
        await _insert_job(pool, user, document, job)
    events = [
        uploaded_event(f"ok-{n}.pdf", job_id=job, document_id=document, user_id=user)
        for n, (user, document, job) in enumerate(jobs)
    ]
    await start_stage(marked)
    await produce_events(topics, f"{topics.topic_prefix}uploaded", events)

    async def all_out() -> list:
        out = await read_topic(topics, f"{topics.topic_prefix}parsed")
        return out if len(out) >= len(events) else []

    await wait_for(all_out, what="an output per event")
    for _, _, job in jobs:
        trail = await pool.fetch(
            "SELECT status FROM events WHERE job_id = $1 AND kind = 'advanced' ORDER BY id", job
        )
        assert [r["status"] for r in trail] == ["parse_queued", "parsed"]
        row = await pool.fetchrow(
            "SELECT status, stage_times FROM upload_jobs WHERE job_id = $1", job
        )
        assert row["status"] == "parsed"
        times = (
            json.loads(row["stage_times"])
            if isinstance(row["stage_times"], str)
            else row["stage_times"]
        )
        assert times["parsing"] <= times["parsed"]


async def test_a_waves_jobs_are_read_with_it_and_each_handler_gets_its_own(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reads_job`: the jobs of a wave come in one statement, none from a query of its own."""
    per_record: list[str] = []
    fetchrow = asyncpg.pool.Pool.fetchrow

    async def counted(self: asyncpg.Pool, query: str, *args: object, **kw: object) -> object:
        if query == JOB:
            per_record.append(query)
        return await fetchrow(self, query, *args, **kw)

    monkeypatch.setattr(asyncpg.pool.Pool, "fetchrow", counted)
    events = []
    for n in range(5):
        user, document, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await _insert_job(pool, user, document, job, filename=f"policy-{n}.pdf")
        events.append(uploaded_event("ok.pdf", job_id=job, document_id=document, user_id=user))
    await start_stage(jobreader)
    await produce_events(topics, f"{topics.topic_prefix}uploaded", events)

    async def all_out() -> list:
        out = await read_topic(topics, f"{topics.topic_prefix}parsed")
        return out if len(out) >= len(events) else []

    out = await wait_for(all_out, what="an output per event")
    paths = {DocumentParsed.model_validate_json(r.value).job_id: r for r in out}
    for n, event in enumerate(events):
        parsed = DocumentParsed.model_validate_json(paths[event.job_id].value)
        assert parsed.parsed_path == f"policy-{n}.pdf"
    assert per_record == []


async def test_a_documents_later_record_reads_its_job_after_the_earlier_ones_commit(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool
) -> None:
    """Two records of one document in one poll run in two waves: the second's job is read
    after the first's commit renamed the document, not with the poll."""
    user, document, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _insert_job(pool, user, document, job, filename="before.pdf")
    first, second = (
        uploaded_event(
            name,
            event_id=DocumentUploaded.make_id(job, name),
            job_id=job,
            document_id=document,
            user_id=user,
        )
        for name in ("rename.pdf", "then.pdf")
    )
    # Both in the topic before the stage polls: one poll, two waves.
    await produce_events(topics, f"{topics.topic_prefix}uploaded", [first, second])
    await start_stage(jobreader)

    async def both_out() -> list:
        out = await read_topic(topics, f"{topics.topic_prefix}parsed")
        return out if len(out) >= 2 else []

    out = await wait_for(both_out, what="two outputs")
    paths = [DocumentParsed.model_validate_json(r.value).parsed_path for r in out]
    assert paths == ["before.pdf", "renamed.pdf"]


async def test_transient_error_comes_back_after_its_backoff_via_the_retry_topic(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool
) -> None:
    await start_stage(echo, retry_base_delay_s=1.5)
    event = uploaded_event("transient.pdf")
    sent = time.time()
    await produce_events(topics, f"{topics.topic_prefix}uploaded", [event])

    await wait_for(lambda: rows(pool, topics.topic_prefix), timeout=30)
    await wait_quiet(topics, _groups(topics, "echo"), _outputs(topics))
    done = await rows(pool, topics.topic_prefix)
    assert [r["attempt"] for r in done] == [1]
    retried = await read_topic(topics, f"{topics.topic_prefix}uploaded.retry.1")
    assert len(retried) == 1
    headers = header_map(retried[0])
    due_ms = int(headers[Headers.DUE_AT])
    assert due_ms >= sent * 1000 + 1500 - 50  # base delay 1.5 s * 2^0
    assert time.time() * 1000 >= due_ms  # it ran only once due
    assert headers[Headers.ERROR_CODE] == "test_busy"


async def test_permanent_error_lands_in_the_dlq_with_error_headers_and_fails_the_job(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool
) -> None:
    user, document, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _insert_job(pool, user, document, job)
    event = uploaded_event("permanent.pdf", job_id=job, document_id=document, user_id=user)
    await start_stage(echo)
    await produce_events(topics, f"{topics.topic_prefix}uploaded", [event])

    dlq_topic = f"{topics.topic_prefix}uploaded.dlq"
    await wait_for(lambda: read_topic(topics, dlq_topic), what="a DLQ record")
    await wait_quiet(topics, _groups(topics, "echo"), _outputs(topics))
    dead = await read_topic(topics, dlq_topic)
    assert len(dead) == 1
    headers = header_map(dead[0])
    assert headers[Headers.ERROR_CLASS] == "permanent"
    assert headers[Headers.ERROR_CODE] == "test_permanent"
    assert "never be processed" in headers[Headers.ERROR_MESSAGE]
    assert headers[Headers.ORIGINAL_TOPIC] == f"{topics.topic_prefix}uploaded"
    assert {Headers.ORIGINAL_PARTITION, Headers.ORIGINAL_OFFSET, Headers.ERROR_STACK} <= set(
        headers
    )
    assert dead[0].value == event.to_bytes()
    job_row = await pool.fetchrow("SELECT * FROM upload_jobs WHERE job_id = $1", job)
    assert (job_row["status"], job_row["state"]) == ("failed_parse", "deadletter")
    assert job_row["last_error"]["code"] == "test_permanent"


async def test_malformed_message_is_dead_lettered_and_the_next_on_its_partition_runs(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool
) -> None:
    good = uploaded_event("ok.pdf")
    topic = f"{topics.topic_prefix}uploaded"
    await produce(topics, topic, [b"{not json", b'{"schema_version": 9}'], partition=0)
    await produce(topics, topic, [good.to_bytes()], keys=[good.key()], partition=0)
    await start_stage(echo)

    await wait_for(lambda: _count(pool, topics.topic_prefix, 1), what="the good message")
    await wait_quiet(topics, _groups(topics, "echo"), _outputs(topics))
    assert len(await rows(pool, topics.topic_prefix)) == 1
    dead = await read_topic(topics, f"{topic}.dlq")
    assert sorted(header_map(r)[Headers.ERROR_CODE] for r in dead) == [
        "not_json",
        "wrong_schema_version",
    ]


async def test_a_permission_error_goes_through_the_retry_topics_to_the_dlq(
    start_stage: StartStage, topics: Settings, pool: asyncpg.Pool
) -> None:
    """Not infrastructure: no in-place retry forever, but retries with backoff, then the DLQ."""
    user, document, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await _insert_job(pool, user, document, job)
    event = uploaded_event("denied.pdf", job_id=job, document_id=document, user_id=user)
    await start_stage(echo, retry_base_delay_s=0.2)
    await produce_events(topics, f"{topics.topic_prefix}uploaded", [event])

    dlq_topic = f"{topics.topic_prefix}uploaded.dlq"
    await wait_for(lambda: read_topic(topics, dlq_topic), timeout=30, what="a DLQ record")
    await wait_quiet(topics, _groups(topics, "echo"), _outputs(topics))
    for n in range(1, topics.retry_max_attempts + 1):
        (retried,) = await read_topic(topics, f"{topics.topic_prefix}uploaded.retry.{n}")
        assert header_map(retried)[Headers.ERROR_CODE] == "os_EACCES"
    (dead,) = await read_topic(topics, dlq_topic)
    headers = header_map(dead)
    assert (headers[Headers.ERROR_CLASS], headers[Headers.ERROR_CODE]) == ("transient", "os_EACCES")
    assert "Permission denied" in headers[Headers.ERROR_MESSAGE]
    job_row = await pool.fetchrow("SELECT * FROM upload_jobs WHERE job_id = $1", job)
    assert (job_row["status"], job_row["state"]) == ("failed_parse", "deadletter")
    assert job_row["last_error"]["code"] == "os_EACCES"
    assert await rows(pool, topics.topic_prefix) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["before_db_commit:3", "after_db_commit:3", "after_produce:1"]
)  # records 1-2 are done when record 3 dies; after_produce counts whole batches
async def test_sigkill_at_a_commit_point_then_restart_gives_exactly_one_row_and_one_effect(
    point: str, start_stage: StartStage, topics: Settings, pool: asyncpg.Pool, tmp_path
) -> None:
    events = [uploaded_event(f"ok-{i}.pdf") for i in range(6)]
    await produce_events(topics, f"{topics.topic_prefix}uploaded", events)
    env = _process_env(topics, tmp_path) | {"ACCESSA_FAULT_INJECT": f"echo:{point}"}
    log = tmp_path / "echo.log"
    victim = start_process(["tests.integration.stages", "echo"], env, log)
    code = await wait_for(lambda: asyncio.to_thread(victim.poll), timeout=60, what="the kill")
    assert code == -signal.SIGKILL, log.read_text()[-3000:]

    survivor = start_process(["tests.integration.stages", "echo"], env, log)
    try:
        await start_stage(sink)
        await wait_for(
            lambda: _count(pool, topics.topic_prefix, 6, "runtime_test_effects"),
            timeout=60,
            what="6 downstream effects",
        )
        groups = _groups(topics, "echo") | _groups(topics, "sink", "parsed")
        await wait_quiet(topics, groups, _outputs(topics))
        stored = await rows(pool, topics.topic_prefix)
        assert sorted(str(r["event_id"]) for r in stored) == sorted(str(e.event_id) for e in events)
        effects = await rows(pool, topics.topic_prefix, "runtime_test_effects")
        assert len(effects) == 6 == len({r["event_id"] for r in effects})
    finally:
        survivor.terminate()
        survivor.wait(30)


@pytest.mark.slow
async def test_sigterm_drains_the_in_flight_message_and_exits_cleanly(
    topics: Settings, pool: asyncpg.Pool, tmp_path
) -> None:
    port = free_port()
    env = _process_env(topics, tmp_path) | {"ACCESSA_HEALTH_PORT": str(port)}
    proc = start_process(["tests.integration.stages", "echo"], env, tmp_path / "echo.log")
    try:
        await produce_events(topics, f"{topics.topic_prefix}uploaded", [uploaded_event("slow.pdf")])

        async def in_flight() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                return False
            return 'accessa_stage_in_flight{stage="echo"} 1.0' in text

        await wait_for(in_flight, timeout=60, what="the slow message in flight")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0
    assert len(await rows(pool, topics.topic_prefix)) == 1
    assert len(await read_topic(topics, f"{topics.topic_prefix}parsed")) == 1
    # The offset was committed before leaving: a new consumer of the group has no lag.
    admin = kafka_clients.admin(topics)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(
            f"{topics.topic_prefix}{topics.group_prefix}echo"
        )
    finally:
        await admin.close()
    assert sum(o.offset for tp, o in offsets.items() if tp.topic.endswith("uploaded")) == 1


# --- helpers


def _groups(settings: Settings, stage: str, input: str = "uploaded") -> dict[str, list[str]]:
    """A test stage's consumer groups and their input topics (the main and the retry one)."""
    group, prefix = f"{settings.topic_prefix}{settings.group_prefix}{stage}", settings.topic_prefix
    retries = [f"{prefix}{input}.retry.{n}" for n in range(1, settings.retry_max_attempts + 1)]
    return {group: [f"{prefix}{input}"], f"{group}-retry": retries}


def _outputs(settings: Settings) -> list[str]:
    """Every topic echo writes: its output, its retry topics, its DLQ."""
    prefix, n = settings.topic_prefix, settings.retry_max_attempts
    return [
        f"{prefix}parsed",
        f"{prefix}uploaded.dlq",
        *(f"{prefix}uploaded.retry.{i}" for i in range(1, n + 1)),
    ]


async def _count(pool: asyncpg.Pool, prefix: str, n: int, table: str = "runtime_test_rows") -> bool:
    return len(await rows(pool, prefix, table)) >= n


def _process_env(settings: Settings, tmp_path) -> dict[str, str]:
    return {
        "ACCESSA_TOPIC_PREFIX": settings.topic_prefix,
        "ACCESSA_HEALTH_PORT": str(free_port()),
        "ACCESSA_HOME": str(tmp_path / "home"),
        "ACCESSA_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "ACCESSA_DATABASE_URL": settings.dsn,
        "ACCESSA_SHUTDOWN_GRACE_S": "20",
    }


async def _insert_job(
    pool: asyncpg.Pool,
    user: uuid.UUID,
    document: uuid.UUID,
    job: uuid.UUID,
    *,
    filename: str = "p.pdf",
):
    await pool.execute(
        """INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path)
           VALUES ($1, $2, $3, 10, $4, 'raw/p.pdf')""",
        document,
        user,
        uuid.uuid4().hex * 2,
        filename,
    )
    await pool.execute(
        """INSERT INTO upload_jobs (job_id, user_id, document_id, correlation_id)
           VALUES ($1, $2, $3, 'c')""",
        job,
        user,
        document,
    )
