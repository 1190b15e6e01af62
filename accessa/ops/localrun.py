"""The whole pipeline as local child processes (`accessa run <process>` each), for end-to-end
tests and benchmarks: own topic prefix, own state folder, free ports, readiness checked."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from accessa import kafka_clients
from accessa.auth import mint_token
from accessa.config import Settings
from accessa.devstack import acls
from accessa.topics import ensure_topics
from schemas.topics import STAGES

PROCESSES = ("mocks", "api", "parser", "chunker", "embedder", "finalizer")
# Started on demand (`start("console")`): the operator's console, as the ops identity.
CONSOLE = "console"
# Started on demand too: the chunk segments' compactor (Postgres only, one per database).
COMPACTOR = "compactor"
_HTTP = ("api", "mocks", CONSOLE)  # serve their own /ready (no ACCESSA_HEALTH_PORT)
DB_LOGINS = {"relay": "api", CONSOLE: "ops"}  # whose Postgres login a process uses
REPO = Path(__file__).resolve().parents[2]  # accessa/ops/localrun.py -> the repository


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalPipeline:
    settings: Settings
    env: dict[str, str]
    api_url: str
    openai_url: str
    health: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kafka_env: dict[str, dict[str, str]] = field(default_factory=dict)  # each one's principal
    db_env: dict[str, dict[str, str]] = field(default_factory=dict)  # each one's Postgres login
    # Set: stages bind ACCESSA_HEALTH_BASE_PORT + their offset, as under `accessa run all`;
    # unset: each stage process gets a free port of its own.
    health_base_port: int | None = None
    console_url: str = ""

    @classmethod
    def create(cls, infra: Settings, home: Path, **env: str) -> LocalPipeline:
        """Settings and environment for a fresh pipeline on `infra`'s broker and database."""
        prefix = f"p{uuid.uuid4().hex[:8]}-"
        api, openai, llama, console = free_port(), free_port(), free_port(), free_port()
        # Postgres pinned too: each child logs in as its own process (db_env), this side as ops.
        settings = kafka_clients.pinned(infra).model_copy(
            update={"topic_prefix": prefix, "home": home, "database_url": infra.dsn_for("ops")}
        )
        asyncio.run(ensure_topics(settings))
        if infra.kafka_protocol.startswith("SASL") and infra.embedded_kafka:
            asyncio.run(acls.grant(settings, acls.pipeline_acls(settings)))
        full_env = {
            **os.environ,
            "ACCESSA_HOME": str(home),
            "ACCESSA_TOPIC_PREFIX": prefix,
            "ACCESSA_DATABASE_URL": infra.dsn_for("ops"),
            "ACCESSA_API_PORT": str(api),
            "ACCESSA_API_URL": f"http://127.0.0.1:{api}",
            "ACCESSA_CONSOLE_PORT": str(console),
            "ACCESSA_CONSOLE_URL": f"http://127.0.0.1:{console}",
            "ACCESSA_MOCK_OPENAI_PORT": str(openai),
            "ACCESSA_MOCK_LLAMAPARSE_PORT": str(llama),
            "ACCESSA_OPENAI_BASE_URL": f"http://127.0.0.1:{openai}/v1",
            "ACCESSA_LLAMAPARSE_BASE_URL": f"http://127.0.0.1:{llama}",
            "ACCESSA_RATE_LIMITS_ENABLED": "false",
            "ACCESSA_LOG_JSON": "true",
            **env,
        }
        health = {
            "mocks": f"http://127.0.0.1:{openai}/_mock/stats",
            "api": f"http://127.0.0.1:{api}/ready",
            CONSOLE: f"http://127.0.0.1:{console}/ready",
        }
        full_env.update(kafka_clients.child_env(infra, kafka_clients.OPS))
        kafka_env = {p: kafka_clients.child_env(infra, p) for p in PROCESSES if p != "mocks"}
        kafka_env[CONSOLE] = kafka_clients.child_env(infra, kafka_clients.OPS)
        db_env = {  # the relay publishes the API's outbox: the API's login; the console is ops
            p: {"ACCESSA_DATABASE_URL": infra.dsn_for(DB_LOGINS.get(p, p))}
            for p in (*PROCESSES, "relay", CONSOLE, COMPACTOR)
        }
        return cls(
            settings,
            full_env,
            f"http://127.0.0.1:{api}",
            f"http://127.0.0.1:{openai}",
            health,
            home,
            kafka_env=kafka_env,
            db_env=db_env,
            console_url=f"http://127.0.0.1:{console}",
        )

    def token(self, user: uuid.UUID) -> str:
        return mint_token(self.settings, user)

    def client(self, user: uuid.UUID) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url,
            timeout=120,
            headers={"Authorization": f"Bearer {self.token(user)}"},
        )

    def start(self, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start `accessa run <process>`; `name` may carry a replica suffix (`embedder#2`)."""
        process = name.split("#")[0]
        env = {**self.env, **self.kafka_env.get(process, {}), **self.db_env.get(process, {})}
        env.update(extra_env)
        if process not in _HTTP and self.health_base_port is not None:
            env.pop("ACCESSA_HEALTH_PORT", None)
            env["ACCESSA_HEALTH_BASE_PORT"] = str(self.health_base_port)
            port = self.settings.model_copy(
                update={"health_port": None, "health_base_port": self.health_base_port}
            ).port_for(process)
            self.health[name] = f"http://127.0.0.1:{port}/ready"
        elif process not in _HTTP:
            port = free_port()
            env["ACCESSA_HEALTH_PORT"] = str(port)
            self.health[name] = f"http://127.0.0.1:{port}/ready"
        log = (self.logs / f"{name.replace('#', '-')}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "accessa.cli.main", "run", process],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        return self.procs[name]

    def start_all(self, names: tuple[str, ...] = PROCESSES) -> None:
        """Start `names` and wait until each is ready; if one fails, stop them all again."""
        try:
            for name in names:
                self.start(name)
            self.wait_ready(names)
        except BaseException:
            self.stop_all()
            raise

    def stop(self, name: str, timeout: float = 40) -> int:
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def wait_ready(self, names: tuple[str, ...], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        retried: dict[str, int] = {}
        for name in names:
            while True:
                proc = self.procs[name]
                if proc.poll() is not None:
                    log = self.logs / f"{name.replace('#', '-')}.log"
                    tail = log.read_text()[-3000:]
                    # free_port() only finds a port free: another process may take it before
                    # the stage binds it. A stage's health port can simply be another one.
                    taken = "address already in use" in tail and name.split("#")[0] in STAGES
                    if taken and retried.get(name, 0) < 3:
                        retried[name] = retried.get(name, 0) + 1
                        self.start(name)
                        continue
                    raise RuntimeError(f"{name} exited {proc.returncode}:\n{tail}")
                try:
                    if httpx.get(self.health[name], timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready at {self.health[name]}")
                time.sleep(0.2)  # readiness poll interval
