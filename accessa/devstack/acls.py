"""Least-privilege ACLs for the pipeline's principals, and granting them on a broker.

| principal          | reads                         | writes                                   |
|--------------------|-------------------------------|------------------------------------------|
| accessa-api        | -                             | each stage's input (uploads; job retries) |
| accessa-<stage>    | its input and input.retry.n   | its output, input.retry.n, input.dlq     |
| accessa-ops        | super user: the CLI, topics, migrations, replay and redrive         |

A stage also reads (joins) only its own two consumer groups: `accessa-<stage>` and `-retry`.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest

from accessa import kafka_clients
from accessa.config import Settings
from accessa.kafka_clients import principal_name
from accessa.topics import topics_for
from schemas.topics import STAGES, Topics

# Kafka's wire codes (org.apache.kafka.common.acl / resource)
_RESOURCE = {"topic": 2, "group": 3}
_OPERATION = {"read": 3, "write": 4, "describe": 8}
_LITERAL, _ALLOW = 3, 3


@dataclass(frozen=True, order=True)
class Acl:
    principal: str
    resource: str  # topic | group
    name: str
    operation: str  # read | write | describe


def pipeline_acls(settings: Settings) -> list[Acl]:
    """Every ACL the pipeline's principals need under `settings`' topic and group prefix."""
    topics: Topics = topics_for(settings)
    acls: list[Acl] = []

    def allow(process: str, resource: str, name: str, *operations: str) -> None:
        acls.extend(Acl(principal_name(process), resource, name, op) for op in operations)

    # The API writes uploads, and `POST /jobs/{id}/retry` re-emits a failed job's stage input
    # (uploaded, parsed, chunked or embedded) through the same outbox. It reads nothing.
    for stage in STAGES.values():
        allow("api", "topic", topics.name(stage.input), "write", "describe")
    for stage in STAGES.values():
        retries = [topics.retry(stage.input, n) for n in range(1, topics.retry_attempts + 1)]
        allow(stage.name, "topic", topics.name(stage.input), "read", "describe")
        for retry in retries:
            allow(stage.name, "topic", retry, "read", "write", "describe")
        allow(stage.name, "topic", topics.name(stage.output), "write", "describe")
        allow(stage.name, "topic", topics.dlq(stage.input), "write", "describe")
        group = f"{settings.topic_prefix}{settings.group_prefix}{stage.name}"
        for name in (group, f"{group}-retry"):
            allow(stage.name, "group", name, "read", "describe")
    return acls


async def grant(settings: Settings, acls: list[Acl]) -> int:
    """Create `acls` on the cluster (as the ops super user); existing ones are kept. Returns
    how many were sent."""
    # aiokafka has the CreateAcls request but no admin method for it: send it ourselves.
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        for acl in acls:
            request = CreateAclsRequest(
                _RESOURCE[acl.resource],
                acl.name,
                _LITERAL,
                f"User:{acl.principal}",
                "*",
                _OPERATION[acl.operation],
                _ALLOW,
            )
            response = await admin._send_request(request)
            for error_code, message in response.creation_responses:
                if error_code:
                    raise for_code(error_code)(f"CreateAcls {acl}: {message}")
        return len(acls)
    finally:
        await admin.close()
