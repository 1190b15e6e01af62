"""Whether this process's Kafka principal may run its stage, asked before consuming."""

from __future__ import annotations

from aiokafka.errors import TopicAuthorizationFailedError, for_code

from accessa import kafka_clients
from accessa.config import Settings


async def access_problem(
    settings: Settings, name: str, topics: list[str], group: str
) -> str | None:
    """Why `name`'s principal cannot use `topics` (the input first) and `group`, or None: a
    wrong credential or a missing ACL shows as one readable reason instead of a consumer that
    fails on every fetch."""
    admin = kafka_clients.admin(settings, name, request_timeout_ms=10_000)
    try:
        await admin.start()
        # The broker answers in its own order: report the first problem in ours (input first).
        described = {t["topic"]: t for t in await admin.describe_topics(topics)}
        for topic in (described[t] for t in topics if t in described):
            if topic["error_code"] == TopicAuthorizationFailedError.errno:
                return f"Kafka denied topic {topic['topic']} (TopicAuthorizationFailed)"
            if topic["error_code"]:  # e.g. not created yet: `accessa infra topics`
                return f"topic {topic['topic']}: {for_code(topic['error_code']).__name__}"
        for response in await admin.describe_consumer_groups([group]):
            for found in response.groups:
                if found[0]:
                    return f"Kafka denied group {group} ({for_code(found[0]).__name__})"
    except Exception as exc:
        return await kafka_clients.diagnose(settings, name) or kafka_clients.explain(exc)
    finally:
        await admin.close()
    return None
