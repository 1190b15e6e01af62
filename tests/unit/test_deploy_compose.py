"""infra/docker-compose.yml and the Dockerfile, checked statically (no Docker engine needed)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from accessa.config import STAGE_PORTS, Settings
from schemas.topics import STAGES

pytestmark = pytest.mark.usefixtures("without_runner_settings")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
SETTINGS_ENV = {f"ACCESSA_{name.upper()}" for name in Settings.model_fields}
APP_SERVICES = ("api", *STAGES, "compactor")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _command(service: dict[str, Any]) -> str:
    parts = [*(service.get("entrypoint") or []), *(service.get("command") or [])]
    return " ".join(parts if isinstance(parts, list) else [parts])


def test_compose_names_every_service(services: dict[str, dict[str, Any]]) -> None:
    expected = {"kafka", "postgres", "mocks", "migrate", "api", "console", *STAGES}
    assert expected <= set(services), f"missing: {expected - set(services)}"


def test_every_accessa_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    used = {key for s in services.values() for key in (s.get("environment") or {})}
    unknown = {key for key in used if key.startswith("ACCESSA_")} - SETTINGS_ENV
    assert not unknown, f"not Settings fields: {sorted(unknown)}"


def test_no_stray_accessa_names_in_file() -> None:
    """Catches ACCESSA_* names outside `environment:` too (interpolation, comments)."""
    names = set(re.findall(r"\bACCESSA_[A-Z0-9_]+", COMPOSE.read_text()))
    assert names - SETTINGS_ENV == set()


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_consumer_services_run_their_stage(services: dict[str, dict[str, Any]], stage: str) -> None:
    assert services[stage]["command"] == ["run", stage]


def test_api_and_mocks_commands(services: dict[str, dict[str, Any]]) -> None:
    assert services["api"]["command"] == ["run", "api"]
    assert services["mocks"]["command"] == ["run", "mocks"]


def test_the_console_is_its_own_service_as_ops_on_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    console = services["console"]
    assert console["command"] == ["run", "console"]
    env = console["environment"]
    settings = Settings(**{k.removeprefix("ACCESSA_").lower(): v for k, v in env.items()})
    assert console["ports"] == [f"127.0.0.1:{settings.console_port}:{settings.console_port}"]
    assert settings.console_host == "0.0.0.0"  # inside its container; published on loopback
    assert settings.console_url == f"http://127.0.0.1:{settings.console_port}"
    check = " ".join(console["healthcheck"]["test"])
    assert f"127.0.0.1:{settings.console_port}/health" in check
    assert console["image"] == services["api"]["image"]
    assert console["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "CONSOLE" not in " ".join(services["api"]["environment"])  # the API serves none


def test_migrate_service_migrates_and_creates_topics(services: dict[str, dict[str, Any]]) -> None:
    command = _command(services["migrate"])
    assert "accessa migrate" in command
    assert "accessa infra topics" in command
    assert services["migrate"].get("restart") == "no"


@pytest.mark.parametrize("name", [*APP_SERVICES, "migrate", "mocks"])
def test_app_services_reach_kafka_and_postgres_in_containers(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = services[name]["environment"]
    assert env["ACCESSA_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    if name == "mocks":
        assert "ACCESSA_DATABASE_URL" not in env, "the mocks need no database"
    else:
        assert env["ACCESSA_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["ACCESSA_DATABASE_URL"]
    assert env["ACCESSA_HEALTH_HOST"] == "0.0.0.0"
    Settings(**{k.removeprefix("ACCESSA_").lower(): v for k, v in env.items()})  # values parse


# Each service's own Postgres login (compose/postgres-logins.sh creates them).
LOGINS = {
    **{n: f"accessa_{n}" for n in APP_SERVICES},
    "migrate": "accessa_migrator",
    "console": "accessa_ops",
}
LOGINS_SCRIPT = ROOT / "infra" / "compose" / "postgres-logins.sh"
_URL = re.compile(
    r"postgresql://(?P<user>[a-z_]+):\$\{(?P<var>PG_PASSWORD_[A-Z]+):-[^}]*\}@postgres:5432/"
)


def test_every_port_is_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    published = {
        name: [str(p) for p in s.get("ports", [])] for name, s in services.items() if s.get("ports")
    }
    assert {"kafka", "postgres", "api", "console"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1:") and port.count(":") == 2, (name, port)


@pytest.mark.parametrize("name", sorted(LOGINS))
def test_each_service_logs_in_to_postgres_as_its_own_role(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    superuser = services["postgres"]["environment"]["POSTGRES_USER"]
    url = services[name]["environment"]["ACCESSA_DATABASE_URL"]
    match = _URL.match(url)
    assert match, f"{name}: {url!r} is not postgresql://<login>:${{PG_PASSWORD_...}}@postgres"
    assert match["user"] == LOGINS[name]
    assert match["user"] != superuser
    # The postgres service hands the same variable to the script that sets the password.
    assert (
        services["postgres"]["environment"][match["var"]] == f"${{{match['var']}:-{match['user']}}}"
    )
    assert f'-v {match["var"].removeprefix("PG_PASSWORD_").lower()}="${match["var"]}"' in (
        LOGINS_SCRIPT.read_text()
    )


def test_no_service_uses_the_postgres_superuser(services: dict[str, dict[str, Any]]) -> None:
    superuser = services["postgres"]["environment"]["POSTGRES_USER"]
    for name, service in services.items():
        url = (service.get("environment") or {}).get("ACCESSA_DATABASE_URL")
        if url:
            assert not url.startswith(f"postgresql://{superuser}:"), name
    assert f"postgresql://{superuser}:" not in COMPOSE.read_text()


def test_postgres_creates_the_logins_on_first_start(services: dict[str, dict[str, Any]]) -> None:
    mounts = services["postgres"]["volumes"]
    script = next(m for m in mounts if "/docker-entrypoint-initdb.d/" in m)
    source, target = script.split(":")[:2]
    assert (COMPOSE.parent / source).resolve() == LOGINS_SCRIPT
    assert target.endswith(".sh") and LOGINS_SCRIPT.stat().st_mode & 0o111
    created = set(re.findall(r"CREATE ROLE (\w+) LOGIN", LOGINS_SCRIPT.read_text()))
    assert created == set(LOGINS.values()) | {"accessa_ops"}
    assert re.search(
        r"CREATE ROLE accessa_migrator LOGIN .*IN ROLE accessa_owner", (LOGINS_SCRIPT.read_text())
    )


def test_third_parties_point_at_the_mocks_service(services: dict[str, dict[str, Any]]) -> None:
    env = services["embedder"]["environment"]
    ports = services["mocks"]["environment"]
    assert env["ACCESSA_OPENAI_BASE_URL"].startswith("http://mocks:")
    assert env["ACCESSA_LLAMAPARSE_BASE_URL"].startswith("http://mocks:")
    defaults = Settings()
    assert (
        str(ports.get("ACCESSA_MOCK_OPENAI_PORT", defaults.mock_openai_port))
        in (env["ACCESSA_OPENAI_BASE_URL"])
    )


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_dependencies(services: dict[str, dict[str, Any]], name: str) -> None:
    depends = services[name]["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_healthcheck_hits_health_on_the_process_port(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    check = " ".join(services[name]["healthcheck"]["test"])
    assert f"127.0.0.1:{STAGE_PORTS[name]}/health" in check


def test_stop_grace_outlasts_the_drain(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        service = services[name]
        grace = float(service["environment"].get("ACCESSA_SHUTDOWN_GRACE_S", 30))
        stop = float(str(service["stop_grace_period"]).removesuffix("s"))
        assert stop >= grace + 15, name


def test_infrastructure_has_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert "kafka-broker-api-versions" in " ".join(services["kafka"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("pgvector/pgvector:pg")


def test_app_services_share_one_image(services: dict[str, dict[str, Any]]) -> None:
    images = {services[n]["image"] for n in (*APP_SERVICES, "migrate", "mocks")}
    assert len(images) == 1


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def _schema_errors(document: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    """Against the Compose Specification schema Docker Compose itself validates with (vendored:
    tests/data/compose-spec.json, the one embedded in Docker Compose v2.40.3), so no Docker is
    needed; `docker compose config` also runs when some machine has it."""
    assert not _schema_errors(compose), "\n".join(_schema_errors(compose))
    cli = _compose_cli()
    if cli is not None:
        run = subprocess.run(
            [*cli, "-f", str(COMPOSE), "config", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("services", "api", "stop_grace_period"), 45),
        (("services", "kafka", "healthcheck", "test"), 5),
        (("services", "api", "env_file"), [{"required": False}]),
        (("services", "parser", "depends_on", "kafka", "condition"), "service_ready"),
        (("services", "api", "ports"), "8000:8000"),
        (("services", "api", "enviroment"), {"ACCESSA_ENV": "local"}),
        (("volumes", "postgres-data"), "local"),
    ],
)
def test_schema_check_catches_a_broken_file(
    compose: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    broken = copy.deepcopy(compose)
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert _schema_errors(broken)


def test_secrets_env_file_is_optional_and_ignored_by_git(
    services: dict[str, dict[str, Any]],
) -> None:
    """Credentials for a secured Kafka go in an optional, git-ignored env file."""
    for name in (*APP_SERVICES, "migrate", "mocks"):
        assert services[name]["env_file"] == [{"path": "accessa.secrets.env", "required": False}]
    assert "infra/accessa.secrets.env" in (ROOT / ".gitignore").read_text().splitlines()
    example = (ROOT / "infra" / "accessa.secrets.env.example").read_text()
    names = set(re.findall(r"\bACCESSA_[A-Z0-9_]+", example))
    assert {"ACCESSA_KAFKA_SASL_USERNAME", "ACCESSA_KAFKA_SASL_PASSWORD"} <= names
    assert names <= SETTINGS_ENV


# --- Dockerfile


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_runs_accessa_as_non_root() -> None:
    final = _instructions()
    last_from = max(i for i, (op, _) in enumerate(final) if op == "FROM")
    stage = final[last_from:]
    assert stage[0][1].startswith("python:3.11-slim")
    users = [arg for op, arg in stage if op == "USER"]
    assert users and not users[-1].startswith(("root", "0")), users
    assert ("ENTRYPOINT", '["accessa"]') in stage
    assert ("CMD", '["run", "api"]') in stage


def test_dockerfile_copies_every_package() -> None:
    """Each package `pip install .` finds (pyproject's include list) is copied into the image."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    copied = {
        source
        for op, arg in _instructions()
        if op == "COPY" and not arg.startswith("--from")
        for source in arg.split()[:-1]
    }
    assert packages <= copied, f"not copied: {packages - copied}"
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not packages & ignored
    assert {"pyproject.toml", "constraints.txt"} <= copied
