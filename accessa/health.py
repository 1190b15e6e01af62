"""Readiness probes the processes report on `/ready` (and `accessa status`): can a real
client of these settings reach the Kafka cluster?"""

from __future__ import annotations

import asyncio
import logging
import socket

from aiokafka.errors import KafkaConnectionError

from accessa import kafka_clients
from accessa.config import Settings
from accessa.kafka_clients import OPS


def _port_open(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


async def broker_check(
    settings: Settings, timeout_s: float = 5.0, process: str = OPS
) -> str | None:
    """None when a real client of `settings` can fetch cluster metadata; else why not, in one
    line (unreachable, bad credential, untrusted certificate)."""
    if not _port_open(settings.bootstrap_servers):
        return f"Kafka broker not reachable at {settings.bootstrap_servers}"
    # aiokafka logs every failed connect at ERROR; a probe expects failures.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    admin = None
    try:
        admin = kafka_clients.admin(settings, process, request_timeout_ms=int(timeout_s * 1000))
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        return None
    except Exception as exc:
        if isinstance(exc, KafkaConnectionError):
            return await kafka_clients.diagnose(settings, process, timeout_s) or (
                kafka_clients.explain(exc)
            )
        return kafka_clients.explain(exc)
    finally:
        if admin is not None:
            await admin.close()
        logging.getLogger("aiokafka").setLevel(logging.NOTSET)
