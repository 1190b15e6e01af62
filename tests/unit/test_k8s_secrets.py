"""infra/k8s: which Secrets (and which keys of them) each Accessa container can read, the
per-process Postgres logins, no Kafka credential where no Kafka is used, the same pod
hardening for every workload, and that each container holds exactly the secrets its process
uses (Settings.secrets_used) and starts in production with them.
Builds with kustomize like test_k8s_manifests.py; no cluster needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from accessa.cli.main import command_process
from accessa.config import Settings
from schemas.topics import STAGES
from tests.unit.test_k8s_manifests import BUILDS, SECRET_FIELDS, SETTINGS_ENV, Build, _build

pytestmark = pytest.mark.usefixtures("without_runner_settings")

ROOT = Path(__file__).resolve().parents[2]
DB = "ACCESSA_DATABASE_URL"
S3 = {"ACCESSA_S3_ACCESS_KEY_ID", "ACCESSA_S3_SECRET_ACCESS_KEY"}
KAFKA = {"ACCESSA_KAFKA_SASL_USERNAME", "ACCESSA_KAFKA_SASL_PASSWORD"}
JWT = "ACCESSA_JWT_SECRET"
TLS = {"accessa-kafka-ca", "accessa-pg-tls"}
# (kind, workload, container) -> (Secrets it may read, secret settings it gets from them).
# Read the code before widening one: producer_api/routes/webhooks.py (webhook secret),
# routes/search.py (OpenAI key), consumers/chunker/app.py (reads the parsed markdown from S3).
ALLOWED: dict[tuple[str, str, str], tuple[set[str], set[str]]] = {
    ("Deployment", "accessa-api", "api"): (
        {"accessa-api-secrets", "accessa-kafka-api", *TLS},
        {DB, JWT, "ACCESSA_LLAMAPARSE_WEBHOOK_SECRET", "ACCESSA_OPENAI_API_KEY", *S3, *KAFKA},
    ),
    ("Deployment", "accessa-parser", "parser"): (
        {"accessa-parser-secrets", "accessa-kafka-parser", *TLS},
        {DB, "ACCESSA_LLAMAPARSE_API_KEY", *S3, *KAFKA},
    ),
    ("Deployment", "accessa-chunker", "chunker"): (
        {"accessa-chunker-secrets", "accessa-kafka-chunker", *TLS},
        {DB, *S3, *KAFKA},
    ),
    ("Deployment", "accessa-embedder", "embedder"): (
        {"accessa-embedder-secrets", "accessa-kafka-embedder", *TLS},
        {DB, "ACCESSA_OPENAI_API_KEY", *KAFKA},
    ),
    ("Deployment", "accessa-finalizer", "finalizer"): (
        {"accessa-finalizer-secrets", "accessa-kafka-finalizer", *TLS},
        {DB, *KAFKA},
    ),
    ("Job", "accessa-migrate", "migrate"): ({"accessa-migrate-secrets", "accessa-pg-tls"}, {DB}),
    ("Job", "accessa-migrate", "topics"): ({"accessa-kafka-ops", "accessa-kafka-ca"}, KAFKA),
    # Local overlay only: creates the S3 stand-in's bucket.
    ("Job", "accessa-migrate", "bucket"): ({"accessa-ops-secrets"}, S3),
    ("CronJob", "accessa-reprocess-gc", "gc"): ({"accessa-ops-secrets", "accessa-pg-tls"}, {DB}),
    ("CronJob", "accessa-gc", "gc"): ({"accessa-ops-secrets", "accessa-pg-tls"}, {DB}),
    ("CronJob", "accessa-storage-gc", "gc"): (
        {"accessa-ops-secrets", "accessa-pg-tls"},
        {DB, *S3},
    ),
    # The compactor: its Postgres login only (no Kafka: it seals chunk segments).
    ("Deployment", "accessa-compactor", "compactor"): (
        {"accessa-compactor-secrets", "accessa-pg-tls"},
        {DB},
    ),
    # The console: the ops login and the ops principal only (no JWT secret, no S3, no keys).
    ("Deployment", "accessa-console", "console"): (
        {"accessa-console-secrets", "accessa-kafka-ops", *TLS},
        {DB, *KAFKA},
    ),
    # Local overlay only: the mock LlamaParse signs its webhooks.
    ("Deployment", "accessa-mocks", "mocks"): (
        {"accessa-mocks-secrets"},
        {"ACCESSA_LLAMAPARSE_WEBHOOK_SECRET"},
    ),
}
# Secret -> the Postgres login in its ACCESSA_DATABASE_URL.
LOGINS = {
    **{f"accessa-{p}-secrets": f"accessa_{p}" for p in ("api", *STAGES, "ops", "compactor")},
    "accessa-migrate-secrets": "accessa_migrator",
    "accessa-console-secrets": "accessa_ops",  # the console runs as ops, not as the API
}
NO_KAFKA = [
    ("Job", "accessa-migrate", "migrate"),
    ("CronJob", "accessa-reprocess-gc", "gc"),
    ("CronJob", "accessa-gc", "gc"),
    ("CronJob", "accessa-storage-gc", "gc"),
    ("Deployment", "accessa-compactor", "compactor"),
]
LOGIN_SCRIPTS = [
    ROOT / "infra" / "k8s" / "overlays" / "local" / "postgres-logins.sql",
    ROOT / "infra" / "compose" / "postgres-logins.sh",
]


@pytest.fixture(params=sorted(BUILDS))
def build(request: pytest.FixtureRequest) -> Build:
    return _build(request.param)


def _workloads(build: Build) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, pod spec) of every workload whose name says it is Accessa's."""
    found = []
    for o in build.objects:
        if o["kind"] in ("Deployment", "Job"):
            pod = o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            pod = o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        else:
            continue
        if o["metadata"]["name"].startswith("accessa-"):
            found.append((o["kind"], o["metadata"]["name"], pod))
    return found


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod.get("initContainers", []) + pod["containers"]


def _secret_keys() -> dict[str, set[str]]:
    """Keys of each settings Secret: the base's and the local overlay's (prod ships none and
    its secret store provides the same names and keys)."""
    keys: dict[str, set[str]] = {}
    for name in ("base", "local"):
        for secret, data in _build(name).secrets.items():
            keys.setdefault(secret, set()).update(data)
    return keys


def _reads(pod: dict[str, Any], c: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The Secrets a container can read (env, envFrom, mounted volumes) and the secret settings
    (ACCESSA_* keys) it gets from them."""
    keys = _secret_keys()
    names: set[str] = set()
    settings: set[str] = set()
    for ref in c.get("envFrom", []):
        if "secretRef" in ref:
            names.add(ref["secretRef"]["name"])
            settings |= keys[ref["secretRef"]["name"]]
    for env in c.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            names.add(ref["name"])
            settings.add(env["name"])
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in c.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names, settings


def test_every_accessa_container_is_on_the_allowlist(build: Build) -> None:
    seen = set()
    for kind, name, pod in _workloads(build):
        for c in _containers(pod):
            where = (kind, name, c["name"])
            assert where in ALLOWED, f"{build.name}: {where} has no entry in ALLOWED"
            seen.add(where)
            names, settings = _reads(pod, c)
            allowed_names, allowed_settings = ALLOWED[where]
            assert names == allowed_names, (build.name, where, names ^ allowed_names)
            assert settings == allowed_settings, (build.name, where, settings ^ allowed_settings)
    local_only = {("Job", "accessa-migrate", "bucket"), ("Deployment", "accessa-mocks", "mocks")}
    want = set(ALLOWED) if build.name == "local" else set(ALLOWED) - local_only
    assert seen == want


def test_only_the_api_holds_the_jwt_secret(build: Build) -> None:
    holders = set()
    for kind, name, pod in _workloads(build):
        for c in _containers(pod):
            if JWT in _reads(pod, c)[1]:
                holders.add((kind, name, c["name"]))
    assert holders == {("Deployment", "accessa-api", "api")}
    shipped = {n for n, data in build.secrets.items() if JWT in data}
    assert shipped <= {"accessa-api-secrets"}


def _process(c: dict[str, Any]) -> str:
    """The process a container runs as: `accessa <args>` (accessa/cli/main.py)."""
    if c["name"] == "bucket":  # local overlay: `python -c` S3Storage.ensure_bucket, S3 only
        return "storage-gc"
    process = command_process(c["args"])
    assert process is not None, c["name"]
    return process


def _env_names(names: set[str]) -> set[str]:
    return {f"ACCESSA_{n.upper()}" for n in names}


def test_no_configmap_carries_a_secret_setting(build: Build) -> None:
    """No stand-in values for secrets a pod does not hold: it simply has none."""
    for cm in build.kind("ConfigMap"):
        assert not set(cm.get("data", {})) & SECRET_FIELDS, cm["metadata"]["name"]


def test_each_container_holds_only_secrets_its_process_uses(build: Build) -> None:
    for kind, name, pod in _workloads(build):
        for c in _containers(pod):
            held = _reads(pod, c)[1] & SECRET_FIELDS
            used = _env_names(build.settings.secrets_used(_process(c)))
            assert held <= used, (build.name, kind, name, c["name"], held - used)


@pytest.mark.parametrize("where", NO_KAFKA, ids="/".join)
def test_migrate_and_gc_hold_no_kafka_credential(build: Build, where: tuple[str, ...]) -> None:
    kind, name, container = where
    (pod,) = [p for k, n, p in _workloads(build) if (k, n) == (kind, name)]
    (c,) = [c for c in _containers(pod) if c["name"] == container]
    names, settings = _reads(pod, c)
    assert not {n for n in names if n.startswith("accessa-kafka-")}
    assert not settings & KAFKA
    assert "kafka-tls" not in {m["name"] for m in c["volumeMounts"]}


def test_new_gc_cronjobs_run_their_command(build: Build) -> None:
    for name, args in (
        ("accessa-storage-gc", ["storage", "gc", "--json"]),
        ("accessa-gc", ["gc", "--json"]),
    ):
        cron = build.named("CronJob", name)
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["containers"][0]["args"] == args
        assert pod["restartPolicy"] == "Never"


def test_each_process_logs_in_to_postgres_as_its_own_role(build: Build) -> None:
    if build.name == "prod":
        assert not build.secrets
        return
    assert set(build.secrets) >= set(LOGINS)
    for name, login in LOGINS.items():
        url = urlsplit(build.secrets[name][DB])
        assert url.username == login, name


@pytest.mark.parametrize("script", LOGIN_SCRIPTS, ids=lambda p: p.name)
def test_the_local_postgres_creates_every_login(script: Path) -> None:
    text = script.read_text()
    assert set(re.findall(r"CREATE ROLE (\w+) LOGIN", text)) == set(LOGINS.values())
    assert re.search(r"CREATE ROLE accessa_owner NOLOGIN;", text)
    assert re.search(r"CREATE ROLE accessa_migrator LOGIN .*IN ROLE accessa_owner;", text)
    assert "SUPERUSER" not in text and "BYPASSRLS" not in text


@pytest.mark.parametrize("name", ["local"])
def test_the_local_postgres_mounts_its_logins(name: str) -> None:
    build = _build(name)
    pod = build.named("Deployment", "postgres")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts["/docker-entrypoint-initdb.d"])
    (cm,) = [
        o for o in build.kind("ConfigMap") if o["metadata"]["name"] == volume["configMap"]["name"]
    ]
    assert cm["data"]["postgres-logins.sql"] == LOGIN_SCRIPTS[0].read_text()


def test_every_workload_is_hardened(build: Build) -> None:
    for kind, name, pod in _workloads(build):
        where = f"{build.name}: {kind}/{name}"
        assert pod["automountServiceAccountToken"] is False, where
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0, where
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for c in _containers(pod):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (where, c["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (where, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), (where, c["name"])


def _production_env(build: Build, pod: dict[str, Any], c: dict[str, Any]) -> dict[str, str]:
    """The ACCESSA_* environment a container gets in production: ConfigMaps as built, each key
    of its Secrets a real-looking value (the secret store's), then its literal env."""
    maps = {o["metadata"]["name"]: o["data"] for o in build.kind("ConfigMap")}
    keys = _secret_keys()
    env: dict[str, str] = {}
    for ref in c.get("envFrom", []):
        if "configMapRef" in ref:
            env.update(maps[ref["configMapRef"]["name"]])
        else:
            for key in keys[ref["secretRef"]["name"]]:
                env[key] = (
                    "postgresql://u:p@db:5432/accessa" if key == DB else f"real-{key.lower()}" * 2
                )
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", "real-value-from-the-secret-store-0123456789")
    return env


def _production_settings(env: dict[str, str]) -> Settings:
    assert env["ACCESSA_ENV"] == "production"
    fields: dict[str, Any] = {SETTINGS_ENV[k]: v for k, v in env.items() if k in SETTINGS_ENV}
    return Settings(**fields)


def test_every_process_starts_in_production() -> None:
    """Each container's own Secrets satisfy `production_problems` of its process, and each
    used secret is needed: without it that process is refused (the default is local)."""
    build = _build("prod")
    checked = 0
    for kind, name, pod in _workloads(build):
        for c in _containers(pod):
            where, process = f"{kind}/{name}/{c['name']}", _process(c)
            env = _production_env(build, pod, c)
            problems = _production_settings(env).production_problems(process)
            assert problems == [], f"{where} ({process}) would not start: {problems}"
            for key in _env_names(build.settings.secrets_used(process)) & set(env):
                if Settings.model_fields[SETTINGS_ENV[key]].default is None:
                    continue  # optional (Kafka passwords): no local default to fall back on
                without = {k: v for k, v in env.items() if k != key}
                refused = _production_settings(without).production_problems(process)
                assert key in refused, (where, key)
                checked += 1
    assert checked == 13  # api 5, parser 3, chunker 2, embedder 1, storage-gc 2
