"""infra/k8s: Kafka and Postgres credentials, TLS mounts, the KEDA TriggerAuthentication and
the prod overlay's Strimzi topics and users (required fields, drift from schemas/topics.py,
least-privilege ACLs). Builds with kustomize like test_k8s_manifests.py; no cluster needed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from accessa.topics import topic_configs
from schemas.topics import STAGES, Topics
from tests.unit.test_k8s_manifests import BUILDS, Build, _build

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "infra" / "k8s" / "overlays" / "prod" / "generate_kafka.py"
KAFKA_TLS = Path("/etc/accessa/kafka-tls")
PG_TLS = Path("/etc/accessa/pg-tls")
# Workload -> the Kafka principal (Secret accessa-kafka-<principal>) its pods log in as.
# The maintenance CronJobs and the migrate Job's `migrate` step talk to Postgres only:
# test_k8s_secrets.py checks they hold no Kafka credential.
WORKLOADS = {
    **{("Deployment", f"accessa-{p}"): p for p in ("api", *STAGES)},
    ("Job", "accessa-migrate"): "ops",
}
# Containers of a workload that do not talk to Kafka (or, `bucket`, to Postgres).
NOT_KAFKA = {"migrate", "bucket"}
# KEDA's `sasl` trigger parameter for each ACCESSA_KAFKA_SASL_MECHANISM.
KEDA_SASL = {
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
    "OAUTHBEARER": "oauthbearer",
}
# Kafka's implied operations: Read/Write/Delete/Alter each imply Describe.
IMPLIES = {"Describe": {"Read", "Write", "Delete", "Alter"}, "DescribeConfigs": {"AlterConfigs"}}


@pytest.fixture(params=sorted(BUILDS))
def build(request: pytest.FixtureRequest) -> Build:
    return _build(request.param)


def _pod(build: Build, kind: str, name: str) -> dict[str, Any]:
    obj = build.named(kind, name)
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def _kafka_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers that run an Accessa process against Kafka (not the migrate Job's SQL step,
    nor the local overlay's bucket-creating init container, which only talks to S3)."""
    containers = pod.get("initContainers", []) + pod["containers"]
    return [c for c in containers if c["name"] not in NOT_KAFKA]


def _postgres_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers that log in to Postgres (not the migrate Job's `topics` step, nor `bucket`)."""
    containers = pod.get("initContainers", []) + pod["containers"]
    return [c for c in containers if c["name"] not in {"topics", "bucket"}]


# --- pods: credentials and TLS material


@pytest.mark.parametrize(("kind", "name"), sorted(WORKLOADS))
def test_each_process_logs_in_with_its_own_kafka_secret(build: Build, kind: str, name: str) -> None:
    secret = f"accessa-kafka-{WORKLOADS[kind, name]}"
    containers = _kafka_containers(_pod(build, kind, name))
    assert containers
    for c in containers:
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "valueFrom" in e
        }
        assert refs["ACCESSA_KAFKA_SASL_USERNAME"] == {"name": secret, "key": "username"}
        assert refs["ACCESSA_KAFKA_SASL_PASSWORD"] == {"name": secret, "key": "password"}


@pytest.mark.parametrize(("kind", "name"), sorted(WORKLOADS))
def test_tls_material_is_mounted_where_the_settings_point(
    build: Build, kind: str, name: str
) -> None:
    pod = _pod(build, kind, name)
    volumes = {v["name"]: v for v in pod["volumes"]}
    sources = [s["secret"] for s in volumes["kafka-tls"]["projected"]["sources"]]
    ca, client = sources
    assert ca == {"name": "accessa-kafka-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    # The client certificate is the principal's own and optional (SASL needs none).
    assert client["name"] == f"accessa-kafka-{WORKLOADS[kind, name]}"
    assert client["optional"] is True
    assert {i["path"] for i in client["items"]} == {"user.crt", "user.key"}
    assert volumes["pg-tls"]["secret"]["secretName"] == "accessa-pg-tls"
    for c in _kafka_containers(pod):
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert mounts["kafka-tls"]["mountPath"] == str(KAFKA_TLS)
        assert mounts["kafka-tls"]["readOnly"]
    for c in _postgres_containers(pod):
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert mounts["pg-tls"]["mountPath"] == str(PG_TLS)
        assert mounts["pg-tls"]["readOnly"]
    settings = build.settings
    if settings.kafka_ssl_cafile is not None:
        assert settings.kafka_ssl_cafile == KAFKA_TLS / "ca.crt"
    for path in (settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile):
        assert path is None or path.parent == KAFKA_TLS


def test_base_and_prod_talk_sasl_ssl_local_plaintext(build: Build) -> None:
    settings = build.settings
    if build.name == "local":
        assert settings.kafka_protocol == "PLAINTEXT"  # its in-cluster broker has no TLS
        return
    assert settings.kafka_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_ssl_cafile == KAFKA_TLS / "ca.crt"
    config = build.config
    assert not {"ACCESSA_KAFKA_SASL_USERNAME", "ACCESSA_KAFKA_SASL_PASSWORD"} & set(config)


def test_database_url_verifies_the_mounted_ca() -> None:
    secrets = _build("base").secrets
    assert secrets
    for name, secret in secrets.items():
        url = secret["ACCESSA_DATABASE_URL"]
        assert "sslmode=verify-full" in url, name
        assert f"sslrootcert={PG_TLS / 'ca.crt'}" in url, name


def test_local_overlay_ships_placeholder_secrets_prod_none() -> None:
    wanted = {f"accessa-kafka-{p}" for p in set(WORKLOADS.values())}
    wanted |= {"accessa-kafka-ca", "accessa-pg-tls"}
    local = {s["metadata"]["name"] for s in _build("local").kind("Secret")}
    assert wanted <= local
    assert not _build("prod").kind("Secret"), "prod secrets come from the cluster's store"


# --- KEDA


def test_scaled_objects_log_in_like_the_processes(build: Build) -> None:
    settings = build.settings
    protocol = settings.kafka_protocol
    auths = {a["metadata"]["name"]: a for a in build.kind("TriggerAuthentication")}
    for so in build.kind("ScaledObject"):
        (trigger,) = so["spec"]["triggers"]
        meta = trigger["metadata"]
        want_sasl = KEDA_SASL[settings.kafka_sasl_mechanism] if "SASL" in protocol else "none"
        assert meta["sasl"] == want_sasl
        assert meta["tls"] == ("enable" if protocol in ("SSL", "SASL_SSL") else "disable")
        if protocol == "PLAINTEXT":
            assert "authenticationRef" not in trigger
            continue
        params = {
            r["parameter"]: r
            for r in auths[trigger["authenticationRef"]["name"]]["spec"]["secretTargetRef"]
        }
        assert params["username"] == {
            "parameter": "username",
            "name": "accessa-kafka-keda",
            "key": "username",
        }
        assert params["password"]["name"] == "accessa-kafka-keda"
        assert params["ca"] == {"parameter": "ca", "name": "accessa-kafka-ca", "key": "ca.crt"}


# --- custom resources: required fields


def test_custom_resources_have_their_required_fields(build: Build) -> None:
    for t in build.kind("KafkaTopic"):
        assert t["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert t["metadata"]["labels"]["strimzi.io/cluster"]
        assert isinstance(t["spec"]["partitions"], int) and t["spec"]["partitions"] >= 1
        assert isinstance(t["spec"]["replicas"], int) and t["spec"]["replicas"] >= 1
    for u in build.kind("KafkaUser"):
        assert u["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert u["metadata"]["labels"]["strimzi.io/cluster"]
        assert u["spec"]["authentication"]["type"] in {"scram-sha-512", "tls", "tls-external"}
        assert u["spec"]["authorization"]["type"] == "simple"
        acls = u["spec"]["authorization"]["acls"]
        assert acls, u["metadata"]["name"]
        for acl in acls:
            resource = acl["resource"]
            assert resource["type"] in {"topic", "group"}
            assert isinstance(resource["name"], str) and resource["name"]
            assert resource["patternType"] in {"literal", "prefix"}
            assert acl["operations"] and set(acl["operations"]) <= {
                "Read",
                "Write",
                "Create",
                "Delete",
                "Alter",
                "Describe",
                "DescribeConfigs",
            }
    for a in build.kind("TriggerAuthentication"):
        assert a["apiVersion"] == "keda.sh/v1alpha1"
        refs = a["spec"]["secretTargetRef"]
        assert refs
        for ref in refs:
            assert {"parameter", "name", "key"} <= set(ref) and all(ref.values())


# --- prod: topics and users as Strimzi resources


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_kafka", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kafka_yaml_is_what_the_generator_writes() -> None:
    generator = _generator()
    assert generator.OUT.read_text() == generator.render(), (
        "infra/k8s/overlays/prod/kafka.yaml is stale: run "
        ".venv/bin/python infra/k8s/overlays/prod/generate_kafka.py"
    )


def test_prod_topics_match_schemas_topics() -> None:
    build = _build("prod")
    settings = build.settings
    assert settings.topic_prefix == "", "prod topic names are unprefixed"
    topics = {t["spec"]["topicName"]: t["spec"] for t in build.kind("KafkaTopic")}
    assert sorted(topics) == sorted(Topics("", settings.retry_max_attempts).all())
    for name, spec in topics.items():
        assert spec["partitions"] == settings.topic_partitions == 12
        assert spec["replicas"] == settings.kafka_replication_factor == 3
        assert spec["config"]["min.insync.replicas"] == settings.kafka_min_insync_replicas == 2
        retention = spec["config"]["retention.ms"]
        assert retention == int(topic_configs(settings, name, None)["retention.ms"]), name
        hours = 30 * 24 if name.endswith(".dlq") else settings.topic_retention_hours
        assert retention == hours * 3600 * 1000, name


def test_every_principal_is_a_kafka_user_with_the_pods_password() -> None:
    build = _build("prod")
    users = {u["metadata"]["name"]: u["spec"] for u in build.kind("KafkaUser")}
    assert set(users) == {f"accessa-{p}" for p in (*WORKLOADS.values(), "keda")}
    for name, spec in users.items():
        assert spec["authentication"]["type"] == "scram-sha-512"
        ref = spec["authentication"]["password"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"accessa-kafka-{name.removeprefix('accessa-')}", "key": "password"}


# --- least privilege


def _allows(acls: list[dict[str, Any]], kind: str, name: str, operation: str) -> bool:
    for acl in acls:
        r = acl["resource"]
        if r["type"] != kind:
            continue
        hit = name == r["name"] if r["patternType"] == "literal" else name.startswith(r["name"])
        ops = set(acl["operations"])
        if hit and (operation in ops or ops & IMPLIES.get(operation, set())):
            return True
    return False


@pytest.fixture(scope="module")
def acls() -> dict[str, list[dict[str, Any]]]:
    return {
        u["metadata"]["name"]: u["spec"]["authorization"]["acls"]
        for u in _build("prod").kind("KafkaUser")
    }


ALL_TOPICS = Topics("", 3).all()
ALL_GROUPS = [f"accessa-{s}{suffix}" for s in STAGES for suffix in ("", "-retry")]


def _can(acls: list[dict[str, Any]], kind: str, operation: str, names: list[str]) -> set[str]:
    return {n for n in names if _allows(acls, kind, n, operation)}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_reads_its_input_writes_its_output_and_nothing_else(
    acls: dict[str, list[dict[str, Any]]], stage: str
) -> None:
    user = acls[f"accessa-{stage}"]
    source, sink = STAGES[stage].input, STAGES[stage].output
    retries = {f"{source}.retry.{n}" for n in (1, 2, 3)}
    assert _can(user, "topic", "Read", ALL_TOPICS) == {source, *retries}
    assert _can(user, "topic", "Write", ALL_TOPICS) == {sink, *retries, f"{source}.dlq"}
    assert _can(user, "group", "Read", ALL_GROUPS) == {f"accessa-{stage}", f"accessa-{stage}-retry"}
    for operation in ("Create", "Delete", "Alter"):
        assert not _can(user, "topic", operation, ALL_TOPICS)


def test_parser_cannot_read_parsed_nor_join_another_group(
    acls: dict[str, list[dict[str, Any]]],
) -> None:
    parser = acls["accessa-parser"]
    assert not _allows(parser, "topic", "parsed", "Read")
    assert not _allows(parser, "topic", "chunked", "Write")
    assert not _allows(parser, "group", "accessa-chunker", "Read")
    assert not _allows(parser, "group", "accessa-ops", "Read")


def test_api_writes_only_stage_inputs_and_reads_nothing(
    acls: dict[str, list[dict[str, Any]]],
) -> None:
    """Uploads, and the stage input that POST /jobs/{id}/retry re-emits for a failed job."""
    api = acls["accessa-api"]
    assert _can(api, "topic", "Write", ALL_TOPICS) == {"uploaded", "parsed", "chunked", "embedded"}
    assert not _can(api, "topic", "Read", ALL_TOPICS)
    assert not _can(api, "group", "Read", [*ALL_GROUPS, "accessa-api"])


def test_same_grants_as_the_embedded_secured_broker(
    acls: dict[str, list[dict[str, Any]]],
) -> None:
    """accessa/devstack/acls.py grants the api and stage principals on the local secured broker:
    the Strimzi users must allow the same reads, writes and group joins."""
    embedded = pytest.importorskip("accessa.devstack.acls")
    from accessa.config import Settings

    want: dict[str, set[tuple[str, str, str]]] = {}
    for acl in embedded.pipeline_acls(Settings(topic_prefix="", group_prefix="accessa-")):
        if acl.operation in ("read", "write"):
            want.setdefault(acl.principal, set()).add(
                (acl.resource, acl.name, acl.operation.capitalize())
            )
    assert set(want) == {"accessa-api", *(f"accessa-{s}" for s in STAGES)}
    for principal, grants in want.items():
        have = {
            (kind, name, op)
            for kind, names in (("topic", ALL_TOPICS), ("group", ALL_GROUPS))
            for op in ("Read", "Write")
            for name in _can(acls[principal], kind, op, names)
        }
        assert have == grants, principal


def test_keda_only_describes_stage_groups_and_inputs(
    acls: dict[str, list[dict[str, Any]]],
) -> None:
    keda = acls["accessa-keda"]
    for operation in ("Read", "Write"):
        assert not _can(keda, "topic", operation, ALL_TOPICS)
    assert not _can(keda, "group", "Read", ALL_GROUPS)
    assert _can(keda, "topic", "Describe", ALL_TOPICS) == {s.input for s in STAGES.values()}
    assert _can(keda, "group", "Describe", ALL_GROUPS) == {f"accessa-{s}" for s in STAGES}


def test_only_ops_creates_topics_and_uses_any_accessa_group(
    acls: dict[str, list[dict[str, Any]]],
) -> None:
    ops = acls["accessa-ops"]
    for operation in ("Create", "Alter", "Read", "Write"):
        assert _can(ops, "topic", operation, ALL_TOPICS) == set(ALL_TOPICS)
    assert _can(ops, "group", "Read", ALL_GROUPS) == set(ALL_GROUPS)
    assert not _allows(ops, "topic", "someone-elses-topic", "Read")
    assert not _allows(ops, "group", "other-team", "Read")
    for name, user in acls.items():
        if name != "accessa-ops":
            assert not _can(user, "topic", "Create", ALL_TOPICS), name
            assert all(a["resource"]["patternType"] == "literal" for a in user), name
