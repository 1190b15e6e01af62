"""A node's `server.properties` in the embedded KRaft cluster: listeners, the quorum and
replication, and when secured SASL_SSL for clients, mutual TLS between the nodes and ACLs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from accessa.config import Settings
from accessa.kafka_clients import OPS, principal_name

if TYPE_CHECKING:
    from accessa.devstack.kafka import KafkaNode

BROKER_PRINCIPAL = "accessa-broker"  # the nodes' own certificate: controller and replication


def server_properties(
    settings: Settings,
    nodes: list[KafkaNode],
    node: KafkaNode,
    *,
    tls_dir: Path,
    passwords: dict[str, str],
) -> str:
    """The properties of `node` among `nodes`; `passwords` (principal -> password) and the
    PEM files in `tls_dir` are used only when `settings.kafka_secure`."""
    s = settings
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    rf = min(3, len(nodes))
    lines = [
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.voters={voters}",
        f"listeners=CLIENT://127.0.0.1:{node.port},INTERNAL://127.0.0.1:{node.internal_port},"
        f"CONTROLLER://127.0.0.1:{node.controller_port}",
        f"advertised.listeners=CLIENT://127.0.0.1:{node.port},"
        f"INTERNAL://127.0.0.1:{node.internal_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=INTERNAL",
        f"log.dirs={node.data}",
        f"num.partitions={s.topic_partitions}",
        "auto.create.topics.enable=false",
        f"default.replication.factor={rf}",
        f"min.insync.replicas={2 if rf >= 3 else 1}",
        f"offsets.topic.replication.factor={rf}",
        "offsets.topic.num.partitions=12",
        f"transaction.state.log.replication.factor={rf}",
        f"transaction.state.log.min.isr={2 if rf >= 3 else 1}",
        f"share.coordinator.state.topic.replication.factor={rf}",
        # Local nodes: no need to wait for more members before rebalancing.
        "group.initial.rebalance.delay.ms=0",
        "log.retention.hours=168",
    ]
    if not s.kafka_secure:
        lines.append(
            "listener.security.protocol.map=CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,"
            "CONTROLLER:PLAINTEXT"
        )
    else:
        lines += _secure_properties(tls_dir, passwords)
    return "\n".join([*lines, ""])


def _secure_properties(tls_dir: Path, passwords: dict[str, str]) -> list[str]:
    """Clients on SASL_SSL (SCRAM-SHA-512/256, PLAIN); nodes among themselves on mutual
    TLS, their certificate mapped to the super user `accessa-broker`."""
    plain_users = " ".join(f'user_{user}="{password}"' for user, password in passwords.items())
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
    return [
        "listener.security.protocol.map=CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        f"listener.name.client.scram-sha-512.sasl.jaas.config={scram}",
        f"listener.name.client.scram-sha-256.sasl.jaas.config={scram}",
        f"listener.name.client.plain.sasl.jaas.config={plain}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={tls_dir / 'broker.pem'}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={tls_dir / 'ca.crt'}",
        "listener.name.internal.ssl.client.auth=required",
        "listener.name.controller.ssl.client.auth=required",
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+),.*$/$1/,DEFAULT",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{BROKER_PRINCIPAL};User:{principal_name(OPS)}",
        "allow.everyone.if.no.acl.found=false",
    ]
