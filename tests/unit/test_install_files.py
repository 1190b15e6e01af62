"""Install files install from the package registries alone: no path of one machine in them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_FILES = sorted(
    [*ROOT.glob("constraints*.txt"), ROOT / "pyproject.toml", ROOT / "Makefile", ROOT / ".ci/run"]
)
# A file: URL, `pkg @ /abs/path`, or an absolute path into places only one machine has.
LOCAL_REFERENCE = re.compile(
    r"file:/|@\s*/|(?<![\w.$)])/(?:tmp|home|root|work|mnt|Users|var/folders)/", re.IGNORECASE
)


def local_references(text: str) -> list[str]:
    """The lines of an install file that name a local path or a file: URL."""
    return [line.strip() for line in text.splitlines() if LOCAL_REFERENCE.search(line)]


@pytest.mark.parametrize("path", INSTALL_FILES, ids=lambda p: p.name)
def test_install_file_names_no_local_path_or_file_url(path: Path) -> None:
    assert path.exists(), path
    assert local_references(path.read_text()) == []


@pytest.mark.parametrize(
    "line",
    [
        "bpe-openai @ file:///tmp/bpe/bpe_openai-0.1.4-cp39-abi3-manylinux_2_17_x86_64.whl",
        "foo @ /home/dev/wheels/foo-1.0-py3-none-any.whl",
        "\tpip install /root/.cache/wheels/bar.whl",
        "pip install -f /work/main/wheels baz",
    ],
)
def test_the_check_catches_local_wheels(line: str) -> None:
    assert local_references(line) == [line.strip()]


def test_the_check_lets_registry_pins_and_repo_paths_through() -> None:
    text = "bpe-openai==0.1.4\n$(BIN)/pip install -c constraints.txt -e '.[dev]'\ncd /\n"
    assert local_references(text) == []
