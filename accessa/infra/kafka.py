"""The embedded single-node KRaft broker: real Apache Kafka jars resolved by Maven.

Layout under `$ACCESSA_HOME/kafka/`: `server.properties`, `data/` (formatted once with a
generated cluster id), `kafka.log`, `kafka.pid`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from accessa.config import Settings
from accessa.infra import process

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
KAFKA_LIB = REPO_ROOT / "infra" / "kafka" / "lib"
_MARKER = "kafka.Kafka"


@dataclass
class ComponentStatus:
    name: str
    managed: bool  # started by `accessa infra up` (False = external)
    running: bool
    healthy: bool
    address: str
    version: str | None = None
    pid: int | None = None
    detail: str = ""


def ensure_jars() -> Path:
    """Resolve the broker jars from Maven Central into infra/kafka/lib (once)."""
    if not any(KAFKA_LIB.glob("kafka_2.13-*.jar")):
        if shutil.which("mvn") is None:
            raise RuntimeError("Maven (mvn) is needed to fetch the Kafka jars")
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies"],
            check=True,
        )
    return KAFKA_LIB


def kafka_version() -> str | None:
    jars = sorted(KAFKA_LIB.glob("kafka_2.13-*.jar"))
    return jars[0].stem.removeprefix("kafka_2.13-") if jars else None


def new_cluster_id() -> str:
    """A random KRaft cluster id, as Kafka's own ``Uuid.randomUuid()`` makes it.

    Like Kafka, re-roll ids that start with ``-``: StorageTool would parse one as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class LocalKafka:
    """Start, stop and inspect the embedded broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home.resolve() / "kafka"
        self.data = self.dir / "data"
        self.props = self.dir / "server.properties"
        self.pidfile = self.dir / "kafka.pid"
        self.log = self.dir / "kafka.log"

    def _properties(self) -> str:
        s = self.settings
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},"
                f"CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={self.data}",
                f"num.partitions={s.topic_partitions}",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=12",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                # A single local broker: no need to wait for more members before rebalancing.
                "group.initial.rebalance.delay.ms=0",
                "log.retention.hours=168",
                "",
            ]
        )

    def pid(self) -> int | None:
        pid = process.read_pid(self.pidfile)
        return pid if process.alive(pid, _MARKER) else None

    def up(self, timeout_s: float = 90.0) -> bool:
        """Start the broker if it is not running; True if this call started it."""
        if self.pid() is not None:
            return False
        lib = ensure_jars()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.props.write_text(self._properties())
        java = [shutil.which("java") or "java", "-cp", f"{lib}/*"]
        if not (self.data / "meta.properties").exists():
            fmt = subprocess.run(
                [*java, "kafka.tools.StorageTool", "format", "-t", new_cluster_id(),
                 "-c", str(self.props)],
                capture_output=True, text=True,
            )  # fmt: skip
            if fmt.returncode != 0:
                raise RuntimeError(f"Kafka storage format failed: {fmt.stderr or fmt.stdout}")
        log4j = resources.files("accessa.infra") / "log4j2.properties"
        cmd = [
            java[0],
            f"-Xmx{self.settings.kafka_heap}",
            f"-Xms{self.settings.kafka_heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            *java[1:],
            _MARKER,
            str(self.props),
        ]
        with self.log.open("ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.pidfile.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"Kafka exited with {proc.returncode}; see {self.log}")
            if asyncio.run(broker_reachable(self.settings.bootstrap_servers, timeout_s=5)):
                return True
            time.sleep(0.25)  # poll interval of the readiness probe
        raise RuntimeError(f"Kafka not ready after {timeout_s:.0f}s; see {self.log}")

    def down(self, purge: bool = False) -> bool:
        """Stop the broker we started (by pid); True if one was stopped."""
        pid = self.pid()
        if pid is not None:
            process.terminate(pid, timeout_s=60)
        self.pidfile.unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
        return pid is not None

    def status(self) -> ComponentStatus:
        pid = self.pid()
        healthy = pid is not None and asyncio.run(
            broker_reachable(self.settings.bootstrap_servers, timeout_s=5)
        )
        return ComponentStatus(
            name="kafka", managed=True, running=pid is not None, healthy=healthy,
            address=self.settings.bootstrap_servers, version=kafka_version(), pid=pid,
            detail=str(self.log),
        )  # fmt: skip


def _port_open(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


async def broker_reachable(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """True when a real client can fetch cluster metadata from the broker."""
    if not _port_open(bootstrap):
        return False
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    # aiokafka logs every failed connect at ERROR; a probe expects failures.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        return True
    except Exception:
        return False
    finally:
        await admin.close()
        logging.getLogger("aiokafka").setLevel(logging.NOTSET)


async def external_status(settings: Settings) -> ComponentStatus:
    healthy = await broker_reachable(settings.bootstrap_servers)
    return ComponentStatus(
        name="kafka", managed=False, running=healthy, healthy=healthy,
        address=settings.bootstrap_servers, detail="external",
    )  # fmt: skip


def java_available() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))
