"""Console page render times on 10k jobs: p50/p95 per page, server side through the whole app.

A fresh database (dropped afterwards) on the configured Postgres gets 10,000 jobs of 100
users (one in twenty dead-lettered, each with its audit trail, stage times and quality
flags), then each page is requested ROUNDS times by a
signed-in client over the console app's ASGI interface (lifespan, middleware, templates).
The pipeline page renders the shared snapshot (stale-while-revalidate); what one snapshot
costs to take (Kafka lag, groups, DLQ depth; Postgres counts; dependency probes) is measured
on its own as "pipeline snapshot". Needs Postgres and Kafka up (`accessa infra up`).

    python -m bench.bench_console [--jobs 10000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import httpx

from accessa.config import get_settings
from accessa.console_auth import issue_login_token
from accessa.db import connect, with_database
from accessa.migrate import migrate
from producer_api.console import data
from producer_api.console.app import create_console_app

SEED = """
INSERT INTO documents (document_id, user_id, sha256, size, filename, raw_path, pages)
SELECT md5('d' || g)::uuid, md5('u' || g % 100)::uuid, encode(sha256(('s' || g)::bytea), 'hex'),
       100000, 'policy-' || g || '.pdf', 'raw/' || g || '.pdf', 4
FROM generate_series(1, $1) g;
INSERT INTO upload_jobs (job_id, user_id, document_id, status, state, stage, progress, pages,
                         chunk_count, vector_count, embed_tokens, cost_usd, correlation_id,
                         stage_times, last_error, created_at, updated_at, completed_at)
SELECT md5('j' || g)::uuid, md5('u' || g % 100)::uuid, md5('d' || g)::uuid,
       CASE WHEN g % 20 = 0 THEN 'failed_parse' ELSE 'complete' END,
       CASE WHEN g % 20 = 0 THEN 'deadletter' ELSE 'done' END,
       CASE WHEN g % 20 = 0 THEN 'parsing' ELSE 'complete' END,
       jsonb_build_object('percent', CASE WHEN g % 20 = 0 THEN 20 ELSE 100 END), 4, 10, 10,
       1200, 0.000024, md5('c' || g),
       jsonb_build_object('validated', t, 'parsing', t + interval '0.3 s',
                          'parsed', t + interval '4 s', 'chunked', t + interval '4.5 s',
                          'embedding', t + interval '5 s', 'complete', t + interval '7 s'),
       CASE WHEN g % 20 = 0 THEN '{"code": "pdf_corrupt", "message": "not a PDF"}'::jsonb END,
       t, t + interval '7 s', CASE WHEN g % 20 <> 0 THEN t + interval '7 s' END
FROM generate_series(1, $1) g, LATERAL (SELECT now() - g * interval '10 s' AS t) at;
INSERT INTO events (job_id, document_id, user_id, stage, kind, status, detail, created_at)
SELECT j.job_id, j.document_id, j.user_id, s.stage,
       CASE WHEN j.state = 'deadletter' AND s.n = 3 THEN 'failed' ELSE 'advanced' END,
       s.status, '{}'::jsonb, j.created_at + s.n * interval '1 s'
FROM upload_jobs j, (VALUES (1, 'api', 'uploaded'), (2, 'parser', 'parse_queued'),
                            (3, 'parser', 'parsed'), (4, 'chunker', 'chunks_stored'),
                            (5, 'embedder', 'embeddings_stored'),
                            (6, 'finalizer', 'complete')) s (n, stage, status);
INSERT INTO embedding_spend (day, user_id, usd, tokens)
SELECT current_date - d, '00000000-0000-0000-0000-000000000000', 0.01 * d, 1000 * d
FROM generate_series(0, 29) d;
INSERT INTO document_chunks (chunk_id, document_id, user_id, job_id, chunker_version,
                             embed_model, ordinal, content, content_sha256, token_count,
                             metadata, embedding)
SELECT md5('k' || o)::uuid, md5('d1')::uuid, md5('u1')::uuid, md5('j1')::uuid,
       'markdown-simple@2', 'text-embedding-3-small', o, repeat('policy text ', 40),
       md5('k' || o), 200,
       jsonb_build_object('heading_path', jsonb_build_array('Policy', 'Section ' || o),
                          'page_start', o / 3 + 1, 'page_end', o / 3 + 1),
       array_fill(0.01, ARRAY[1536])::vector
FROM generate_series(0, 11) o;
ANALYZE;
"""
QUALITY = """UPDATE upload_jobs SET quality = jsonb_build_object(
    'flags', CASE WHEN random() < 0.2 THEN '["low_ocr_confidence"]'::jsonb ELSE '[]' END,
    'reasons', '[]'::jsonb, 'pages', jsonb_build_array(jsonb_build_object('page', 1,
    'text_words', 120, 'ocr_words', 0, 'ocr_confidence', null, 'image_coverage', 0.0)))"""


def pages(first_job: str, user: str) -> dict[str, str]:
    return {
        "pipeline": "/console/",
        "jobs": "/console/jobs",
        "jobs?state=deadletter": "/console/jobs?state=deadletter",
        "jobs?user": f"/console/jobs?user={user}",
        "jobs?flag": "/console/jobs?flag=low_ocr_confidence",
        "jobs, page 100": "",  # filled in: the cursor 100 pages (5000 jobs) down
        "document": f"/console/jobs/{first_job}",
        "dlq": "/console/dlq",
        "cost": "/console/cost",
    }


async def _cursor_deep(client: httpx.AsyncClient, depth: int) -> str:
    url = "/console/jobs"
    for _ in range(depth):
        html = (await client.get(url)).text
        url = html.split('id="next-page" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    return url


async def run(jobs: int, rounds: int) -> dict[str, Any]:
    settings = get_settings()
    name = "accessa_bench_console"
    admin = await connect(settings.dsn, database="postgres")
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    scoped = settings.model_copy(
        update={
            "database_url": with_database(settings.dsn, name),
            "rate_limits_enabled": False,
        }
    )
    try:
        await migrate(scoped)
        app = create_console_app(scoped)  # the console's own process, as `accessa run console`
        async with app.router.lifespan_context(app):
            pool = app.state.pool
            started = time.perf_counter()
            await pool.execute(SEED.replace("$1", str(int(jobs))))
            await pool.execute(QUALITY)
            seeded_s = time.perf_counter() - started
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                token = await issue_login_token(pool, operator="bench", ttl_s=60)
                assert (await client.get(f"/console/login?token={token}")).status_code == 303
                urls = pages(str(uuid5(1)), str(uuid5(1, "u")))
                urls["jobs, page 100"] = await _cursor_deep(client, 100)
                timings = {}
                for page, url in urls.items():
                    times = []
                    for _ in range(rounds):
                        t0 = time.perf_counter()
                        response = await client.get(url)
                        times.append((time.perf_counter() - t0) * 1000)
                        assert response.status_code == 200, (page, response.status_code)
                    timings[page] = _percentiles(times)
                snaps, times = data.Snapshots(), []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    await snaps.refresh(scoped, pool, app.state.db)
                    times.append((time.perf_counter() - t0) * 1000)
                timings["pipeline snapshot"] = _percentiles(times)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
    return {
        "jobs": jobs,
        "rounds": rounds,
        "seed_s": round(seeded_s, 1),
        "pages": timings,
    }


def _percentiles(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
    }


def uuid5(n: int, kind: str = "j") -> str:
    """The seed's ids: md5 of kind + number, as Postgres' md5(...)::uuid makes them."""
    import hashlib
    import uuid

    return str(uuid.UUID(hashlib.md5(f"{kind}{n}".encode()).hexdigest()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    result = asyncio.run(run(args.jobs, args.rounds))
    print(json.dumps(result, indent=2))
    width = max(map(len, result["pages"]))
    for page, t in result["pages"].items():
        print(f"{page:<{width}}  p50 {t['p50_ms']:7.1f} ms  p95 {t['p95_ms']:7.1f} ms")


if __name__ == "__main__":
    main()
