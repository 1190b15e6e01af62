"""The whole pipeline as real processes: `accessa run mocks|api|parser|chunker|embedder|finalizer`
on the test broker and database, with this session's own topics and state folder."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from accessa.auth import mint_token
from accessa.config import Settings
from tests.utils import ROOT, free_port

PROCESSES = ("mocks", "api", "parser", "chunker", "embedder", "finalizer")


@dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    api_url: str
    health: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def token(self, user: uuid.UUID) -> str:
        return mint_token(self.settings, user)

    def client(self, user: uuid.UUID) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url, timeout=60,
            headers={"Authorization": f"Bearer {self.token(user)}"},
        )  # fmt: skip

    def start(self, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "accessa.cli.main", "run", name.split("#")[0]],
            env={**self.env, **extra_env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> int:
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            return proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def wait_ready(self, names: tuple[str, ...], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for name in names:
            url = self.health[name]
            while True:
                proc = self.procs[name]
                if proc.poll() is not None:
                    tail = (self.logs / f"{name}.log").read_text()[-3000:]
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready at {url}")
                time.sleep(0.2)  # readiness poll interval


@pytest.fixture(scope="session")
def pipeline(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Every process of the pipeline, ready; stopped (SIGTERM) at the end of the session."""
    import asyncio

    from accessa.infra.topics import ensure_topics

    home = tmp_path_factory.mktemp("pipeline")
    prefix = f"e2e{uuid.uuid4().hex[:6]}-"
    ports = {name: free_port() for name in PROCESSES}
    openai_port, llama_port = ports["mocks"], free_port()
    settings = infra.model_copy(update={"topic_prefix": prefix, "home": home})
    asyncio.run(ensure_topics(settings))
    env = {
        "ACCESSA_HOME": str(home),
        "ACCESSA_TOPIC_PREFIX": prefix,
        "ACCESSA_KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "ACCESSA_DATABASE_URL": infra.dsn,
        "ACCESSA_API_PORT": str(ports["api"]),
        "ACCESSA_MOCK_OPENAI_PORT": str(openai_port),
        "ACCESSA_MOCK_LLAMAPARSE_PORT": str(llama_port),
        "ACCESSA_OPENAI_BASE_URL": f"http://127.0.0.1:{openai_port}/v1",
        "ACCESSA_LLAMAPARSE_BASE_URL": f"http://127.0.0.1:{llama_port}",
        "ACCESSA_RATE_LIMITS_ENABLED": "false",
        "ACCESSA_RETRY_BASE_DELAY_S": "1",
        "ACCESSA_LOG_JSON": "true",
    }
    import os

    env = {**os.environ, **env}
    health = {name: f"http://127.0.0.1:{port}/health" for name, port in ports.items()}
    health["mocks"] = f"http://127.0.0.1:{openai_port}/_mock/stats"
    health["api"] = f"http://127.0.0.1:{ports['api']}/ready"
    pipe = Pipeline(settings, env, f"http://127.0.0.1:{ports['api']}", health, home)
    try:
        for name in PROCESSES:
            extra = {} if name in ("api", "mocks") else {"ACCESSA_HEALTH_PORT": str(ports[name])}
            pipe.start(name, **extra)
        pipe.wait_ready(PROCESSES)
        yield pipe
    finally:
        for name in list(pipe.procs):
            pipe.stop(name)
