"""`make fuzz`: coverage-guided fuzzing (atheris) of upload validation and the local parser.

Each input goes through what an upload meets: the API's checks in-process (`check_size`,
`validate_pdf`, as producer_api/ingest.py calls them), then the local parser backend in its
memory-capped worker with its page limits (what the parser stage runs). The only acceptable
outcomes are success, `ApiError` from validation and `PipelineError` from the parser; any
other exception is a crash, more than 10 s in either step is a hang, and a worker whose
peak RSS grows past ACCESSA_PARSER_MEMORY_LIMIT_MB is over budget.

A supervisor runs atheris in a child process for ACCESSA_FUZZ_SECONDS (default 180) and
starts it again when it dies (a native crash, libFuzzer's timeout or RSS limit), so the run
stays bounded and keeps going. The child records Python-level problems itself and carries
on; every problem input is copied to tests/data/fuzz_regressions/, which
tests/unit/test_fuzz_regressions.py replays. Figures go to bench/reliability.json["fuzz"].
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import mmap
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import traceback
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
REGRESSIONS = ROOT / "tests" / "data" / "fuzz_regressions"
RELIABILITY = ROOT / "bench" / "reliability.json"
STEP_TIMEOUT_S = 10.0
# The child's own per-input limit: both steps' watchdogs, plus room to report.
LIBFUZZER_TIMEOUT_S = 2 * int(STEP_TIMEOUT_S) + 5
_COUNTERS = struct.Struct("<qqq")  # inputs tried, peak worker RSS (KB), peak own RSS (KB)


@dataclass
class Outcome:
    """What one input did: `problem` is None for an acceptable outcome."""

    validation: str  # "ok" or the ApiError code
    parser: str  # "ok", the PipelineError code, or "skipped" (validation refused it)
    problem: str | None = None  # "crash" or "hang"
    detail: str = ""
    worker_peak_kb: int = 0


class Target:
    """Validation in this process, parsing in the parser's memory-capped worker."""

    def __init__(self, step_timeout_s: float = STEP_TIMEOUT_S) -> None:
        from accessa.config import get_settings
        from consumers.parser.backends import LocalBackend

        self.settings = get_settings()
        self.step_timeout_s = step_timeout_s
        self.memory_limit_mb = self.settings.parser_memory_limit_mb
        self._backend_type = LocalBackend
        self.backend = self._new_backend()
        self.loop = asyncio.new_event_loop()

    def _new_backend(self) -> Any:
        return self._backend_type(self.settings.pdf_max_expanded_bytes, self.memory_limit_mb)

    def close(self) -> None:
        self.backend.worker.close()
        self.loop.close()

    def check(self, data: bytes, *, parse_refused: bool = True) -> Outcome:
        """Run one input; `parse_refused` also parses what validation refused (the parser
        must cope with any stored bytes), except what is not a PDF at all."""
        from producer_api.core.errors import ApiError
        from producer_api.validation import check_size, validate_pdf

        started = time.monotonic()
        try:
            check_size(len(data), self.settings.max_upload_mb)
            validate_pdf(data, self.settings.pdf_max_expanded_bytes)
            validation = "ok"
        except ApiError as exc:
            validation = exc.code
        except Exception as exc:
            return Outcome("exception", "skipped", "crash", _describe(exc))
        if time.monotonic() - started > self.step_timeout_s:
            return Outcome(validation, "skipped", "hang", "validation did not finish in time")
        if validation != "ok" and (
            not parse_refused or validation in ("not_pdf", "file_too_large")
        ):
            return Outcome(validation, "skipped")
        return self._parse(data, validation)

    def _parse(self, data: bytes, validation: str) -> Outcome:
        from accessa.errors import PipelineError

        call = self.backend.parse(data, "fuzz.pdf", document_id=uuid.UUID(int=0))
        try:
            self.loop.run_until_complete(asyncio.wait_for(call, self.step_timeout_s))
            parser = "ok"
        except PipelineError as exc:
            parser = exc.code
        except TimeoutError:
            self._kill_worker()
            return Outcome(validation, "timeout", "hang", "the parser did not finish in time")
        except Exception as exc:
            return Outcome(validation, "exception", "crash", _describe(exc))
        return Outcome(validation, parser, worker_peak_kb=self._worker_peak_kb())

    def _worker_peak_kb(self) -> int:
        """Peak RSS (VmHWM) of the live worker process, 0 if none is running."""
        executor = self.backend.worker._executor
        peak = 0
        for process in list(getattr(executor, "_processes", {}).values()):
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                continue
            if found := re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE):
                peak = max(peak, int(found.group(1)))
        return peak

    def _kill_worker(self) -> None:
        """A hung worker cannot be told to stop: kill it and start a fresh backend."""
        executor = self.backend.worker._executor
        for process in list(getattr(executor, "_processes", {}).values()):
            process.kill()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self.backend.worker._executor = None
        self.backend = self._new_backend()


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)[-6:]).strip()


def own_peak_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --- structure-aware mutation ---------------------------------------------------------------
_NAMES = [
    b"/FlateDecode",
    b"/LZWDecode",
    b"/ASCII85Decode",
    b"/ASCIIHexDecode",
    b"/RunLengthDecode",
    b"/CCITTFaxDecode",
    b"/DCTDecode",
    b"/JBIG2Decode",
    b"/Count",
    b"/Kids",
    b"/Length",
    b"/ObjStm",
    b"/XRef",
    b"/Filter",
    b"/DecodeParms",
    b"/Predictor",
    b"/Columns",
    b"/W",
    b"/Index",
    b"/Prev",
    b"/Parent",
    b"/Pages",
    b"/Page",
    b"/Contents",
    b"/Resources",
    b"/Font",
    b"/XObject",
    b"/Encrypt",
    b"/Type",
    b"/First",
    b"/N",
    b"/Size",
]
_NUMBERS = [
    b"0",
    b"-1",
    b"1",
    b"2147483647",
    b"4294967296",
    b"9223372036854775807",
    b"100000000",
    b"1e308",
    b"-0",
    b"65535",
]
_STREAM = re.compile(rb"stream\r?\n")


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """One PDF-aware change (a name or number swapped, an inflated stream mutated and
    deflated again, a range copied elsewhere), else libFuzzer's own byte-level mutation."""
    import atheris

    rng = random.Random(seed)
    choice = rng.randrange(5)
    if choice == 0 and (names := list(re.finditer(rb"/[A-Za-z][A-Za-z0-9]*", data))):
        hit = rng.choice(names)
        data = data[: hit.start()] + rng.choice(_NAMES) + data[hit.end() :]
    elif choice == 1 and (numbers := list(re.finditer(rb"(?<![\w.])-?\d+(?![\w.])", data))):
        hit = rng.choice(numbers)
        data = data[: hit.start()] + rng.choice(_NUMBERS) + data[hit.end() :]
    elif choice == 2 and (starts := list(_STREAM.finditer(data))):
        begin = rng.choice(starts).end()
        end = data.find(b"endstream", begin)
        if end > begin:
            try:
                body = zlib.decompressobj().decompress(data[begin:end], 4 << 20)
            except zlib.error:
                body = data[begin:end]
            body = atheris.Mutate(body, max(len(body) * 2, 64))
            data = data[:begin] + zlib.compress(body) + b"\n" + data[end:]
    elif choice == 3 and len(data) > 16:
        start = rng.randrange(len(data))
        piece = data[start : start + rng.randint(1, 4096)]
        at = rng.randrange(len(data))
        data = data[:at] + piece * rng.randint(1, 8) + data[at:]
    else:
        return atheris.Mutate(data, max_size)
    return data[:max_size]


# --- the atheris child ----------------------------------------------------------------------
def child(args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=["accessa", "producer_api"]):
        import accessa.pdf.bombs  # noqa: F401
        import producer_api.validation  # noqa: F401

    target = Target()
    problems = Path(args.problems)
    counter_file = open(args.counters, "r+b")  # noqa: SIM115 (mapped for the child's life)
    counters = mmap.mmap(counter_file.fileno(), _COUNTERS.size)
    outcomes: Counter[str] = Counter()
    tally = Path(args.counters).with_name(f"outcomes-{os.getpid()}.json")

    def one_input(data: bytes) -> None:
        tried, worker_kb, own_kb = _COUNTERS.unpack(counters[:])
        outcome = target.check(data)
        outcomes[f"{outcome.validation} / {outcome.parser}"] += 1
        if tried % 50 == 0:  # a child killed by libFuzzer loses at most this many
            tally.write_text(json.dumps(outcomes))
        worker_kb = max(worker_kb, outcome.worker_peak_kb)
        counters[:] = _COUNTERS.pack(tried + 1, worker_kb, max(own_kb, own_peak_kb()))
        if outcome.problem:
            name = f"{outcome.problem}-{hashlib.sha256(data).hexdigest()[:16]}"
            (problems / f"{name}.pdf").write_bytes(data)
            (problems / f"{name}.txt").write_text(json.dumps(outcome.__dict__, indent=2))

    atheris.Setup([sys.argv[0], *args.libfuzzer], one_input, custom_mutator=mutate)
    atheris.Fuzz()


# --- the supervisor -------------------------------------------------------------------------
def supervise(seconds: float, work: Path) -> dict[str, Any]:
    """Run children until `seconds` are spent; collect what they found."""
    corpus, problems, artifacts = work / "corpus", work / "problems", work / "artifacts"
    for folder in (corpus, problems, artifacts):
        folder.mkdir(parents=True, exist_ok=True)
    for seed in sorted(CORPUS.glob("*.pdf")):
        shutil.copy(seed, corpus / seed.name)
    counters = work / "counters"
    counters.write_bytes(_COUNTERS.pack(0, 0, 0))
    from accessa.config import get_settings

    settings = get_settings()
    limit_mb = settings.parser_memory_limit_mb
    worker_base_kb = _worker_baseline_kb()
    deadline = time.monotonic() + seconds
    restarts, started = 0, time.monotonic()
    while (left := deadline - time.monotonic()) > 5:
        flags = [
            f"-max_total_time={int(left)}",
            f"-timeout={LIBFUZZER_TIMEOUT_S}",
            f"-rss_limit_mb={limit_mb + 1024}",
            f"-artifact_prefix={artifacts}/",
            f"-report_slow_units={int(STEP_TIMEOUT_S)}",
            "-print_final_stats=1",
            str(corpus),
        ]
        command = [
            sys.executable,
            "-m",
            "bench.fuzz",
            "--child",
            "--problems",
            str(problems),
            "--counters",
            str(counters),
            "--",
            *flags,
        ]
        with open(work / f"child-{restarts}.log", "wb") as log:
            subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
        restarts += 1
    tried, worker_kb, own_kb = _COUNTERS.unpack(counters.read_bytes())
    found = _collect(problems, artifacts)
    outcomes: Counter[str] = Counter()
    for tally in work.glob("outcomes-*.json"):
        outcomes.update(json.loads(tally.read_text()))
    return {
        "engine": f"atheris {_version('atheris')} (libFuzzer), PDF-aware mutator",
        "seconds": round(time.monotonic() - started),
        "seeds": len(list(CORPUS.glob("*.pdf"))),
        "inputs_tried": tried,
        "corpus_grown_to": len(list(corpus.iterdir())),
        "crashes": sum(f["kind"] == "crash" for f in found),
        "hangs": sum(f["kind"] in ("hang", "timeout", "slow") for f in found),
        "over_memory": sum(f["kind"] == "oom" for f in found)
        + (worker_kb - worker_base_kb > limit_mb * 1024),
        "child_restarts": restarts - 1,
        "worker_peak_rss_mb": round(worker_kb / 1024),
        "worker_idle_rss_mb": round(worker_base_kb / 1024),
        "validator_peak_rss_mb": round(own_kb / 1024),
        "parser_memory_limit_mb": limit_mb,
        "step_timeout_s": STEP_TIMEOUT_S,
        "regressions": sorted(f["file"] for f in found),
        "outcomes_validation_parser": dict(outcomes.most_common()),
    }


def _worker_baseline_kb() -> int:
    """Peak RSS of a parser worker after parsing a one-line PDF: what the budget adds to."""
    from mocks.policy_pdf import make_policy_pdf

    target = Target()
    try:
        assert target.check(make_policy_pdf(seed=1, pages=1)).problem is None
        return target._worker_peak_kb()
    finally:
        target.close()


def _collect(problems: Path, artifacts: Path) -> list[dict[str, str]]:
    """Copy every problem input to tests/data/fuzz_regressions/ (named by kind and hash)."""
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    found = []
    sources = [(p, p.name.split("-", 1)[0]) for p in problems.glob("*.pdf")]
    # libFuzzer's own: crash-* (a native crash), timeout-*, oom-*, slow-unit-*
    sources += [(p, p.name.split("-", 1)[0]) for p in artifacts.iterdir() if p.is_file()]
    for path, kind in sources:
        data = path.read_bytes()
        name = f"{kind}-{hashlib.sha256(data).hexdigest()[:16]}.pdf"
        shutil.copy(path, REGRESSIONS / name)
        found.append({"kind": kind, "file": name})
    return found


def _version(package: str) -> str:
    from importlib import metadata

    return metadata.version(package)


def write_report(figures: dict[str, Any], path: Path = RELIABILITY) -> None:
    """Merge under the `fuzz` key, keeping what `make reliability` wrote."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data["fuzz"] = figures
    path.write_text(json.dumps(data, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--problems", help=argparse.SUPPRESS)
    parser.add_argument("--counters", help=argparse.SUPPRESS)
    parser.add_argument("libfuzzer", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    seconds = float(os.environ.get("ACCESSA_FUZZ_SECONDS", "180"))
    work = Path(os.environ.get("ACCESSA_FUZZ_DIR", ROOT / ".accessa" / "fuzz"))
    shutil.rmtree(work, ignore_errors=True)
    figures = supervise(seconds, work)
    write_report(figures)
    print(json.dumps(figures, indent=2))
    if figures["crashes"] or figures["hangs"] or figures["over_memory"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
