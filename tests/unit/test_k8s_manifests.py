"""infra/k8s: build the base and each overlay with kustomize and check every object offline.

Built-in kinds are validated against the Kubernetes JSON schemas shipped by the
`kubernetes-validate` wheel (strict: unknown fields fail). The CRD kinds it has no schema for
(KEDA ScaledObject, Prometheus Operator ServiceMonitor) get their own checks here, against the
settings and topics they must agree with. kustomize comes from `infra/k8s/install-kustomize.sh`.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from accessa.config import STAGE_PORTS, Settings
from schemas.topics import STAGES

pytestmark = pytest.mark.usefixtures("without_runner_settings")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
BUILDS = {
    "base": K8S / "base",
    "local": K8S / "overlays" / "local",
    "prod": K8S / "overlays" / "prod",
}
NAMESPACES = {"base": None, "local": "accessa-local", "prod": "accessa"}
K8S_VERSION = "1.34"
# Custom resources (no schema in kubernetes-validate): test_k8s_kafka.py checks the Kafka ones.
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
    ("kafka.strimzi.io/v1beta2", "KafkaUser"),
}
GRACE_HEADROOM_S = 15  # terminationGracePeriodSeconds >= ACCESSA_SHUTDOWN_GRACE_S + this
SETTINGS_ENV = {f"ACCESSA_{name.upper()}": name for name in Settings.model_fields}
SECRET_FIELDS = {
    f"ACCESSA_{name.upper()}"
    for name, info in Settings.model_fields.items()
    if info.annotation is SecretStr
}
APP_DEPLOYMENTS = {f"accessa-{p}": p for p in ("api", *STAGES, "compactor")}


def _kustomize() -> str:
    for candidate in (os.environ.get("KUSTOMIZE"), str(ROOT / ".accessa" / "bin" / "kustomize")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("kustomize")
    if found:
        return found
    pytest.skip(
        "kustomize not found in .accessa/bin/, $KUSTOMIZE or PATH: "
        "run `bash infra/k8s/install-kustomize.sh` (needs Go >= 1.24 and the Go module proxy)"
    )


@dataclass
class Build:
    name: str
    objects: list[dict[str, Any]]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        matches = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"{self.name}: want one {kind}/{name}, found {len(matches)}"
        return matches[0]

    @property
    def config(self) -> dict[str, str]:
        maps = [
            o for o in self.kind("ConfigMap") if o["metadata"]["name"].startswith("accessa-config")
        ]
        assert len(maps) == 1, f"{self.name}: want one accessa-config ConfigMap"
        return maps[0]["data"]

    @property
    def secrets(self) -> dict[str, dict[str, str]]:
        """The per-process settings Secrets (accessa-<process>-secrets) the build ships."""
        return {
            o["metadata"]["name"]: o.get("stringData", {})
            for o in self.kind("Secret")
            if re.fullmatch(r"accessa-[a-z]+-secrets", o["metadata"]["name"])
        }

    @property
    def settings(self) -> Settings:
        """The Settings the API pod would get (placeholder secret where the overlay has none)."""
        secret = self.secrets.get("accessa-api-secrets", {})
        env = {**{k: "x" * 40 for k in SECRET_FIELDS}, **secret, **self.config}
        known: dict[str, Any] = {SETTINGS_ENV[k]: v for k, v in env.items() if k in SETTINGS_ENV}
        return Settings(**known)  # unknown keys fail test_config_and_secret_keys_are_settings

    def pod_specs(self) -> list[tuple[str, dict[str, Any]]]:
        specs = [
            (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
            for o in self.objects
            if o["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")
        ]
        return specs + [
            (
                f"CronJob/{o['metadata']['name']}",
                o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            )
            for o in self.kind("CronJob")
        ]


@functools.cache
def _build(name: str) -> Build:
    run = subprocess.run(
        [_kustomize(), "build", str(BUILDS[name])], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"kustomize build {name} failed:\n{run.stderr}"
    return Build(name, [o for o in yaml.safe_load_all(run.stdout) if o])


@pytest.fixture(params=sorted(BUILDS))
def build(request: pytest.FixtureRequest) -> Build:
    return _build(request.param)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


# --- every object


def test_builtin_kinds_match_the_kubernetes_schemas(build: Build) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    errors = []
    for obj in build.objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        try:
            kv.validate(obj, K8S_VERSION, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {e.message}")
    assert not errors, "\n".join(errors)


def test_namespace(build: Build) -> None:
    want = NAMESPACES[build.name]
    for obj in build.objects:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == want
        else:
            assert obj["metadata"].get("namespace") == want, obj["metadata"]["name"]


def test_config_and_secret_keys_are_settings(build: Build) -> None:
    config = build.config
    assert set(config) <= set(SETTINGS_ENV), sorted(set(config) - set(SETTINGS_ENV))
    assert not set(config) & SECRET_FIELDS, "secrets belong in the Secret"
    assert "ACCESSA_DATABASE_URL" not in config, "the database URL carries a password"
    shipped: set[str] = set()
    for name, secret in build.secrets.items():
        assert set(secret) <= set(SETTINGS_ENV), (name, sorted(set(secret) - set(SETTINGS_ENV)))
        assert not set(secret) & set(config), f"{name} and the ConfigMap both set a key"
        shipped |= set(secret)
    if build.name != "prod":
        assert {*SECRET_FIELDS, "ACCESSA_DATABASE_URL"} <= shipped
    settings = build.settings  # every value parses
    assert settings.health_host == "0.0.0.0"
    assert settings.api_host == "0.0.0.0"
    assert settings.kafka_bootstrap_servers
    assert settings.storage_backend == "s3"


def test_pods_reference_the_config(build: Build) -> None:
    """Every Accessa container reads the ConfigMap; test_k8s_secrets.py checks its Secrets."""
    config_name = next(
        o["metadata"]["name"]
        for o in build.kind("ConfigMap")
        if o["metadata"]["name"].startswith("accessa-config")
    )
    for where, spec in build.pod_specs():
        for c in spec.get("initContainers", []) + spec["containers"]:
            refs = c.get("envFrom", [])
            if not refs:
                continue  # a dependency (Kafka, Postgres), not an Accessa process
            assert {"configMapRef": {"name": config_name}} in refs, where


def test_every_container_has_requests_and_limits(build: Build) -> None:
    for where, spec in build.pod_specs():
        for c in spec.get("initContainers", []) + spec["containers"]:
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), f"{where}/{c['name']} {part}"


# --- the Accessa Deployments


def test_one_deployment_per_process(build: Build) -> None:
    names = {d["metadata"]["name"] for d in build.kind("Deployment")}
    assert set(APP_DEPLOYMENTS) <= names
    for name, process in APP_DEPLOYMENTS.items():
        assert _container(build.named("Deployment", name))["args"] == ["run", process]


@pytest.mark.parametrize("name", sorted(APP_DEPLOYMENTS))
def test_probes_hit_health_and_ready_on_the_process_port(build: Build, name: str) -> None:
    process = APP_DEPLOYMENTS[name]
    c = _container(build.named("Deployment", name))
    port_name = "http" if process == "api" else "metrics"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports[port_name] == STAGE_PORTS[process]
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": port_name}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port_name}


@pytest.mark.parametrize("name", sorted(APP_DEPLOYMENTS))
def test_termination_grace_outlasts_the_drain(build: Build, name: str) -> None:
    spec = build.named("Deployment", name)["spec"]["template"]["spec"]
    grace = build.settings.shutdown_grace_s
    pre_stop = spec["containers"][0].get("lifecycle", {}).get("preStop", {})
    sleep_s = float(pre_stop["exec"]["command"][-1]) if "exec" in pre_stop else 0.0
    assert spec["terminationGracePeriodSeconds"] >= grace + GRACE_HEADROOM_S
    assert spec["terminationGracePeriodSeconds"] >= sleep_s + grace + 10


@pytest.mark.parametrize("name", sorted(APP_DEPLOYMENTS))
def test_runs_non_root_on_a_read_only_root(build: Build, name: str) -> None:
    spec = build.named("Deployment", name)["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in empty_dirs}
    assert {"/tmp", str(build.settings.home)} <= mounts


@pytest.mark.parametrize("name", sorted(APP_DEPLOYMENTS))
def test_a_disruption_budget_covers_each_deployment(build: Build, name: str) -> None:
    labels = build.named("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    budgets = [
        p
        for p in build.kind("PodDisruptionBudget")
        if _selects(p["spec"]["selector"]["matchLabels"], labels)
    ]
    assert len(budgets) == 1, name
    spec = budgets[0]["spec"]
    assert spec.get("maxUnavailable", 0) >= 1 or spec.get("minAvailable") == 1


def test_one_image_for_every_accessa_process(build: Build) -> None:
    images = {_container(build.named("Deployment", n))["image"] for n in APP_DEPLOYMENTS}
    job = build.named("Job", "accessa-migrate")["spec"]["template"]["spec"]
    images |= {c["image"] for c in job.get("initContainers", []) + job["containers"]}
    assert len(images) == 1, images


# --- the console


def test_the_console_runs_as_its_own_cluster_internal_deployment(build: Build) -> None:
    """`accessa run console` in its own pod: probes on its port, a ClusterIP Service, a
    disruption budget, and nothing that exposes it outside the cluster."""
    deployment = build.named("Deployment", "accessa-console")
    c = _container(deployment)
    assert c["args"] == ["run", "console"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": Settings().console_port}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert build.settings.console_host == "0.0.0.0"
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= build.settings.shutdown_grace_s + 10
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (service,) = [s for s in build.kind("Service") if _selects(s["spec"]["selector"], labels)]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert not {"externalIPs", "loadBalancerIP", "externalName"} & set(service["spec"])
    assert not build.kind("Ingress") and not build.kind("HTTPRoute")
    budgets = [
        p
        for p in build.kind("PodDisruptionBudget")
        if _selects(p["spec"]["selector"]["matchLabels"], labels)
    ]
    assert len(budgets) == 1
    assert c["image"] == _container(build.named("Deployment", "accessa-api"))["image"]


# --- Services and scraping


def test_api_service_and_consumer_metrics_services(build: Build) -> None:
    services = build.kind("Service")
    for name, process in APP_DEPLOYMENTS.items():
        labels = build.named("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        port_name = "http" if process == "api" else "metrics"
        matching = [s for s in services if _selects(s["spec"]["selector"], labels)]
        assert matching, f"no Service selects {name}"
        assert any(p["targetPort"] == port_name for s in matching for p in s["spec"]["ports"])


def test_service_monitors_select_services_with_their_ports(build: Build) -> None:
    monitors = build.kind("ServiceMonitor")
    assert monitors
    scraped: set[str] = set()
    for sm in monitors:
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        selected = [
            s
            for s in build.kind("Service")
            if _selects(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert selected, f"ServiceMonitor {sm['metadata']['name']} selects no Service"
        for endpoint in sm["spec"]["endpoints"]:
            assert endpoint.get("path", "/metrics") == "/metrics"
            for s in selected:
                assert endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
        scraped |= {s["metadata"]["name"] for s in selected}
    assert "accessa-api" in scraped
    assert {f"accessa-{stage}-metrics" for stage in STAGES} <= scraped


# --- KEDA


def _scaled_object(build: Build, stage: str) -> dict[str, Any]:
    targets = [
        s
        for s in build.kind("ScaledObject")
        if s["spec"]["scaleTargetRef"]["name"] == f"accessa-{stage}"
    ]
    assert len(targets) == 1, f"{build.name}: want one ScaledObject for {stage}"
    return targets[0]


def test_every_scaled_object_targets_a_stage_deployment(build: Build) -> None:
    deployments = {d["metadata"]["name"] for d in build.kind("Deployment")}
    for so in build.kind("ScaledObject"):
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        ref = so["spec"]["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment"
        assert ref["name"] in deployments
    assert len(build.kind("ScaledObject")) == len(STAGES)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_kafka_trigger_watches_the_stage_group_and_input_topic(build: Build, stage: str) -> None:
    so = _scaled_object(build, stage)
    settings = build.settings
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["bootstrapServers"] == settings.kafka_bootstrap_servers
    # The group the stage runtime joins (accessa/runtime/stage.py): `accessa-<stage>` by default.
    assert meta["consumerGroup"] == f"{settings.topic_prefix}{settings.group_prefix}{stage}"
    assert meta["topic"] == f"{settings.topic_prefix}{STAGES[stage].input}"
    for key in ("lagThreshold", "activationLagThreshold"):
        assert isinstance(meta[key], str) and meta[key].isdigit(), key
    assert int(meta["lagThreshold"]) > int(meta["activationLagThreshold"]) >= 1
    assert meta["offsetResetPolicy"] in {"earliest", "latest"}
    if NAMESPACES[build.name]:  # the KEDA operator lives in another namespace
        host = meta["bootstrapServers"].split(",")[0].rsplit(":", 1)[0]
        assert "." in host, f"{host!r} does not resolve from the KEDA namespace"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_replica_bounds_respect_partitions(build: Build, stage: str) -> None:
    spec = _scaled_object(build, stage)["spec"]
    partitions = build.settings.topic_partitions
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    assert isinstance(spec["pollingInterval"], int) and spec["pollingInterval"] > 0
    assert isinstance(spec["cooldownPeriod"], int) and spec["cooldownPeriod"] > 0
    deployment = build.named("Deployment", f"accessa-{stage}")
    assert "replicas" not in deployment["spec"], "the HPA owns replicas of a scaled Deployment"


# --- the migration Job


def test_migration_job_migrates_then_creates_topics(build: Build) -> None:
    spec = build.named("Job", "accessa-migrate")["spec"]["template"]["spec"]
    steps = [c.get("args") for c in spec.get("initContainers", []) + spec["containers"]]
    assert ["migrate"] in steps
    assert ["infra", "topics"] in steps
    assert steps.index(["migrate"]) < steps.index(["infra", "topics"])
    assert spec["restartPolicy"] in {"Never", "OnFailure"}


# --- overlays


def test_replaced_chunk_versions_are_collected_hourly_one_run_at_a_time(build: Build) -> None:
    gc = build.named("CronJob", "accessa-reprocess-gc")
    assert gc["spec"]["concurrencyPolicy"] == "Forbid"
    pod = gc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["reprocess", "gc", "--json"]
    assert (
        pod["containers"][0]["image"]
        == _container(build.named("Deployment", "accessa-parser"))["image"]
    )


def test_local_overlay_is_small_and_self_contained() -> None:
    build = _build("local")
    assert build.named("Deployment", "accessa-api")["spec"]["replicas"] == 1
    for so in build.kind("ScaledObject"):
        assert so["spec"]["minReplicaCount"] == 1
    settings = build.settings
    assert settings.env == "local"
    mocks = build.named("Service", "accessa-mocks")
    mock_ports = {p["port"] for p in mocks["spec"]["ports"]}
    assert settings.openai_base_url.startswith("http://accessa-mocks:")
    assert settings.llamaparse_base_url.startswith("http://accessa-mocks:")
    assert {settings.mock_openai_port, settings.mock_llamaparse_port} <= mock_ports
    services = {s["metadata"]["name"] for s in build.kind("Service")}
    assert {"kafka", "postgres", "s3"} <= services


def test_prod_overlay() -> None:
    build = _build("prod")
    settings = build.settings
    assert settings.env == "production"
    assert not build.secrets, "production secrets come from the cluster, not the repo"
    image = _container(build.named("Deployment", "accessa-api"))["image"]
    assert ":" in image and not image.endswith(":latest")
    assert max(so["spec"]["maxReplicaCount"] for so in build.kind("ScaledObject")) > 6
    assert all(so["spec"]["minReplicaCount"] >= 2 for so in build.kind("ScaledObject"))
