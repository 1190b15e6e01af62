"""The Apache Kafka broker jars (Maven resolves them into infra/kafka/lib), and java to run them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
KAFKA_LIB = REPO_ROOT / "infra" / "kafka" / "lib"


def ensure_jars() -> Path:
    """Resolve the broker jars from Maven Central into infra/kafka/lib (once)."""
    if not any(KAFKA_LIB.glob("kafka_2.13-*.jar")):
        if shutil.which("mvn") is None:
            raise RuntimeError("Maven (mvn) is needed to fetch the Kafka jars")
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies"],
            check=True,
        )
    return KAFKA_LIB


def kafka_version() -> str | None:
    jars = sorted(KAFKA_LIB.glob("kafka_2.13-*.jar"))
    return jars[0].stem.removeprefix("kafka_2.13-") if jars else None


def java_command() -> list[str]:
    """`java -cp <the broker jars>`, resolving the jars first."""
    return [shutil.which("java") or "java", "-cp", f"{ensure_jars()}/*"]


def java_available() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))
