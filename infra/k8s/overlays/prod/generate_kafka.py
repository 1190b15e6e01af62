"""Writes kafka.yaml beside this file: the production Strimzi KafkaTopics and KafkaUsers.

Topics come from schemas/topics.py (main, retry, DLQ; unprefixed), users and their ACLs from
PRINCIPALS below. Run from the repo root after changing either:
    .venv/bin/python infra/k8s/overlays/prod/generate_kafka.py
tests/unit/test_k8s_kafka.py fails when kafka.yaml differs from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[4]
OUT = Path(__file__).with_name("kafka.yaml")
CLUSTER = "kafka"  # the Strimzi `Kafka` resource these belong to (strimzi.io/cluster label)
PARTITIONS = 12  # = ACCESSA_TOPIC_PARTITIONS of this overlay (the test checks)
REPLICAS = 3
MIN_INSYNC = 2


def _imports() -> tuple[Any, Any, Any, Any]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from accessa.config import Settings
    from accessa.topics import topic_configs
    from schemas.topics import STAGES, Topics

    return Settings, topic_configs, STAGES, Topics


def _acl(kind: str, name: str, *operations: str, pattern: str = "literal") -> dict[str, Any]:
    return {
        "resource": {"type": kind, "name": name, "patternType": pattern},
        "operations": list(operations),
    }


def principals() -> dict[str, list[dict[str, Any]]]:
    """KafkaUser name -> ACLs. Write and Read imply Describe on a topic; Read on a group
    implies Describe; Write lets an idempotent producer initialise (KIP-679)."""
    settings_cls, _, stages, topics_cls = _imports()
    topics = topics_cls("", settings_cls().retry_max_attempts)
    retries = range(1, topics.retry_attempts + 1)
    # As accessa/devstack/acls.py grants on the secured embedded broker (the test compares).
    # The API writes uploads, and POST /jobs/{id}/retry re-emits a failed job's stage input.
    users: dict[str, list[dict[str, Any]]] = {
        "accessa-api": [_acl("topic", s.input, "Write") for s in stages.values()]
    }
    for name, stage in stages.items():
        group = f"accessa-{name}"
        users[group] = [
            _acl("topic", stage.input, "Read"),
            *(_acl("topic", topics.retry(stage.input, n), "Read", "Write") for n in retries),
            _acl("topic", topics.dlq(stage.input), "Write"),
            _acl("topic", stage.output, "Write"),
            # Main records and due retries are consumed by two groups (accessa/runtime/stage.py).
            _acl("group", group, "Read"),
            _acl("group", f"{group}-retry", "Read"),
        ]
    # CLI, the migrate Job (creates and grows topics) and reprocess gc: inspection, replay,
    # redrive and offset resets on any Accessa group.
    users["accessa-ops"] = [
        *(
            _acl("topic", t, "Create", "Alter", "Describe", "DescribeConfigs", "Read", "Write")
            for t in topics.all()
        ),
        # ListGroups shows the groups a principal may Describe: no cluster-wide ACL needed.
        _acl("group", "accessa-", "Read", "Describe", "Delete", pattern="prefix"),
    ]
    # KEDA's lag scaler: committed and end offsets only.
    users["accessa-keda"] = [
        acl
        for name, stage in stages.items()
        for acl in (
            _acl("topic", stage.input, "Describe"),
            _acl("group", f"accessa-{name}", "Describe"),
        )
    ]
    return users


def documents() -> list[dict[str, Any]]:
    settings_cls, topic_configs, _, topics_cls = _imports()
    labels = {"strimzi.io/cluster": CLUSTER}
    docs: list[dict[str, Any]] = []
    settings = settings_cls()
    for name in topics_cls("", settings.retry_max_attempts).all():
        # The retention `accessa infra topics` sets (ACCESSA_TOPIC_RETENTION_HOURS; DLQ 30 days).
        retention = int(topic_configs(settings, name, None)["retention.ms"])
        config: dict[str, Any] = {"min.insync.replicas": MIN_INSYNC, "retention.ms": retention}
        docs.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaTopic",
                # Prefixed to stay unique among other teams' topics; spec.topicName is the
                # real name.
                "metadata": {"name": f"accessa-{name.replace('.', '-')}", "labels": labels},
                "spec": {
                    "topicName": name,
                    "partitions": PARTITIONS,
                    "replicas": REPLICAS,
                    "config": config,
                },
            }
        )
    for user, acls in principals().items():
        process = user.removeprefix("accessa-")
        docs.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaUser",
                "metadata": {"name": user, "labels": labels},
                "spec": {
                    # The password is the one the pods read (Secret accessa-kafka-<process>), so
                    # the secret store stays the only source of the credential.
                    "authentication": {
                        "type": "scram-sha-512",
                        "password": {
                            "valueFrom": {
                                "secretKeyRef": {
                                    "name": f"accessa-kafka-{process}",
                                    "key": "password",
                                }
                            }
                        },
                    },
                    "authorization": {"type": "simple", "acls": acls},
                },
            }
        )
    return docs


def render() -> str:
    header = (
        "# Generated by generate_kafka.py from schemas/topics.py: do not edit by hand.\n"
        f"# Needs the Strimzi CRDs and the Entity Operator of Kafka cluster `{CLUSTER}` watching\n"
        "# this namespace (topicOperator and userOperator watchedNamespace).\n"
    )
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, width=100) for d in documents())
    return header + body


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
