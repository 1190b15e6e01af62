"""The embedded KRaft cluster: real Apache Kafka jars resolved by Maven, one node or several.

Layout under `$ACCESSA_HOME/kafka/`: `cluster.id`, `node-<n>/` (`server.properties`, `data/`
formatted once, `kafka.log`, `kafka.pid`) and, when secured, `tls/` (a local CA and the nodes'
certificate) and `credentials.json` (each process's SCRAM password, created at format time).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psutil

from accessa import kafka_clients
from accessa.config import Settings
from accessa.devstack import process
from accessa.devstack.kafka_jars import java_command, kafka_version
from accessa.devstack.kafka_properties import BROKER_PRINCIPAL, server_properties
from accessa.devstack.tls import create_ca, issue_cert
from accessa.health import broker_check
from accessa.kafka_clients import credentials_file, principal_name

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


def new_cluster_id() -> str:
    """A random KRaft cluster id, as Kafka's own ``Uuid.randomUuid()`` makes it.

    Like Kafka, re-roll ids that start with ``-``: StorageTool would parse one as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


PROCESSES = ("api", "parser", "chunker", "embedder", "finalizer", "ops")


@dataclass
class KafkaNode:
    """One KRaft node (broker + controller) of the embedded cluster."""

    node_id: int
    dir: Path
    port: int  # clients
    internal_port: int  # replication between brokers
    controller_port: int

    @property
    def pidfile(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def log(self) -> Path:
        return self.dir / "kafka.log"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def pid(self) -> int | None:
        pid = process.read_pid(self.pidfile)
        return pid if process.alive(pid, _MARKER) else None

    def kill(self) -> None:
        """SIGKILL the node (a crash, for failover tests)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).wait(30)


class LocalKafka:
    """Start, stop and inspect the embedded KRaft cluster: `ACCESSA_KAFKA_BROKERS` nodes, each
    broker and controller, on PLAINTEXT or (`ACCESSA_KAFKA_SECURE`) SASL_SSL with ACLs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.home.resolve() / "kafka"
        self.tls_dir = self.dir / "tls"
        s = settings
        self.nodes = [
            KafkaNode(
                node_id=i + 1,
                dir=self.dir / f"node-{i + 1}",
                port=port,
                internal_port=port + 2,
                controller_port=s.kafka_controller_port + 10 * i,
            )
            for i, port in enumerate(s.kafka_node_ports)
        ]

    # --- configuration

    def _properties(self, node: KafkaNode) -> str:
        passwords = self.passwords() if self.settings.kafka_secure else {}
        return server_properties(
            self.settings, self.nodes, node, tls_dir=self.tls_dir, passwords=passwords
        )

    def passwords(self) -> dict[str, str]:
        """The generated password of each process's principal (created once, kept 0600)."""
        path = credentials_file(self.settings)
        if path.exists():
            return json.loads(path.read_text())["passwords"]
        path.parent.mkdir(parents=True, exist_ok=True)
        users = {principal_name(p): secrets.token_urlsafe(24) for p in PROCESSES}
        path.touch(mode=0o600)
        path.write_text(json.dumps({"processes": list(PROCESSES), "passwords": users}, indent=2))
        return users

    def _tls_material(self) -> None:
        ca = create_ca(self.tls_dir)
        if not (self.tls_dir / "broker.pem").exists():
            cert = issue_cert(ca, self.tls_dir, BROKER_PRINCIPAL)
            (self.tls_dir / "broker.pem").write_bytes(
                cert.key.read_bytes() + cert.cert.read_bytes()
            )
            (self.tls_dir / "broker.pem").chmod(0o600)

    def _format(self, node: KafkaNode, java: list[str], cluster_id: str) -> None:
        scram: list[str] = []
        if self.settings.kafka_secure:
            for user, password in self.passwords().items():
                for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
                    scram += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        fmt = subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(node.dir / "server.properties"),
                *scram,
            ],
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise RuntimeError(f"Kafka storage format failed: {fmt.stderr or fmt.stdout}")

    # --- lifecycle

    def pid(self) -> int | None:
        """The first running node's pid (None when none runs)."""
        return next((pid for pid in self.pids() if pid is not None), None)

    def pids(self) -> list[int | None]:
        return [node.pid() for node in self.nodes]

    def up(self, timeout_s: float = 90.0) -> bool:
        """Start every node that is not running; True if this call started any."""
        todo = [node for node in self.nodes if node.pid() is None]
        if not todo:
            return False
        self._check_shape()
        java = java_command()
        if self.settings.kafka_secure:
            self._tls_material()
        cluster_file = self.dir / "cluster.id"
        if not cluster_file.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            cluster_file.write_text(new_cluster_id())
            self._shape_file.write_text(json.dumps(self._shape()))
        cluster_id = cluster_file.read_text().strip()
        procs = {}
        for node in todo:
            node.dir.mkdir(parents=True, exist_ok=True)
            (node.dir / "server.properties").write_text(self._properties(node))
            if not (node.data / "meta.properties").exists():
                self._format(node, java, cluster_id)
            procs[node.node_id] = self._start(node, java)
        self._wait_ready(procs, timeout_s)
        return True

    @property
    def _shape_file(self) -> Path:
        return self.dir / "cluster.json"

    def _shape(self) -> dict[str, object]:
        return {"brokers": len(self.nodes), "secure": self.settings.kafka_secure}

    def _check_shape(self) -> None:
        """Refuse to start a cluster formatted as another shape (its SCRAM users, quorum and
        listeners are fixed at format time)."""
        if not self._shape_file.exists():
            return
        formatted = json.loads(self._shape_file.read_text())
        if formatted != self._shape():
            raise RuntimeError(
                f"the Kafka cluster in {self.dir} was formatted as {formatted}, not "
                f"{self._shape()}: set ACCESSA_KAFKA_BROKERS/ACCESSA_KAFKA_SECURE as then, "
                "or `accessa infra down --purge` to start afresh"
            )

    def start_node(self, node: KafkaNode, timeout_s: float = 90.0) -> None:
        """Start one stopped node again (failover tests)."""
        java = java_command()
        self._wait_ready({node.node_id: self._start(node, java)}, timeout_s, [node])

    def _start(self, node: KafkaNode, java: list[str]) -> subprocess.Popen[bytes]:
        log4j = resources.files("accessa.devstack") / "log4j2.properties"
        heap = self.settings.kafka_heap
        cmd = [
            java[0],
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            *java[1:],
            _MARKER,
            str(node.dir / "server.properties"),
        ]
        with node.log.open("ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
        node.pidfile.write_text(str(proc.pid))
        return proc

    def _wait_ready(
        self,
        procs: dict[int, subprocess.Popen[bytes]],
        timeout_s: float,
        nodes: list[KafkaNode] | None = None,
    ) -> None:
        """Until every started node answers a real client (a quorum forms only once enough
        nodes run, so all are started before any is waited for)."""
        deadline = time.monotonic() + timeout_s
        waiting = [n for n in (nodes or self.nodes) if n.node_id in procs]
        problem: str | None = None
        while waiting:
            for node in list(waiting):
                proc = procs[node.node_id]
                if proc.poll() is not None:
                    raise RuntimeError(f"Kafka exited with {proc.returncode}; see {node.log}")
                one = self.settings.model_copy(
                    update={
                        "kafka_bootstrap_servers": None,
                        "kafka_port": node.port,
                        "kafka_brokers": 1,
                    }
                )
                problem = asyncio.run(broker_check(one, timeout_s=5))
                if problem is None:
                    waiting.remove(node)
            if waiting and time.monotonic() > deadline:
                logs = ", ".join(str(n.log) for n in waiting)
                raise RuntimeError(
                    f"Kafka not ready after {timeout_s:.0f}s ({problem}); see {logs}"
                )
            if waiting:
                time.sleep(0.25)  # poll interval of the readiness probe

    def down(self, purge: bool = False) -> bool:
        """Stop the nodes we started (by pid); True if any was stopped."""
        stopped = False
        for node in self.nodes:
            pid = node.pid()
            if pid is not None:
                process.terminate(pid, timeout_s=60)
                stopped = True
            node.pidfile.unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
        return stopped

    def stop_node(self, node: KafkaNode) -> None:
        """SIGTERM one node and wait for it to exit (a controlled shutdown)."""
        pid = node.pid()
        if pid is not None:
            process.terminate(pid, timeout_s=60)

    def status(self) -> ComponentStatus:
        pids = self.pids()
        running = [p for p in pids if p is not None]
        problem = asyncio.run(broker_check(self.settings, timeout_s=5)) if running else "stopped"
        replication = ""
        if problem is None:
            state = asyncio.run(replication_state(self.settings))
            replication = (
                f"; {state['under_replicated']} of {state['partitions']} partitions "
                f"under-replicated, {state['offline']} offline"
            )
        nodes = ", ".join(
            f"node {n.node_id} {'up' if p else 'down'} :{n.port}"
            for n, p in zip(self.nodes, pids, strict=True)
        )
        return ComponentStatus(
            name="kafka",
            managed=True,
            running=bool(running),
            healthy=problem is None and len(running) == len(self.nodes),
            address=self.settings.bootstrap_servers,
            version=kafka_version(),
            pid=running[0] if running else None,
            detail=f"{nodes}; {self.settings.kafka_protocol}{replication}"
            + (f"; {problem}" if problem else "")
            + f"; logs {self.dir}/node-*/kafka.log",
        )


async def replication_state(settings: Settings) -> dict[str, int]:
    """Partitions of every topic, how many lack an in-sync replica (under-replicated) and how
    many have no leader (offline), as the cluster's metadata says."""
    admin = kafka_clients.admin(settings, request_timeout_ms=5000)
    await admin.start()
    try:
        described = await admin.describe_topics(await admin.list_topics())
    finally:
        await admin.close()
    partitions = [p for t in described if not t["error_code"] for p in t["partitions"]]
    return {
        "partitions": len(partitions),
        "under_replicated": sum(len(p["isr"]) < len(p["replicas"]) for p in partitions),
        "offline": sum(p["leader"] < 0 for p in partitions),
    }


async def external_status(settings: Settings) -> ComponentStatus:
    problem = await broker_check(settings)
    return ComponentStatus(
        name="kafka",
        managed=False,
        running=problem is None,
        healthy=problem is None,
        address=settings.bootstrap_servers,
        detail=f"external, {settings.kafka_protocol}" + (f"; {problem}" if problem else ""),
    )
