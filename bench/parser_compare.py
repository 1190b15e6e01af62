"""Compare PDF -> text/markdown libraries on the corpus and a generated policy.

    .venv/bin/python bench/parser_compare.py [--corpus DIR] [--out bench/parser_compare.json]

Per library: pages/s, files that failed (and why) or gave no text, characters extracted,
markdown headings and tables found on the structured files, and the licence. The generated
policy PDF has a known layout, so its heading recall and table count are the one objective
structure score.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import platform
import re
import sys
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumers.parser.backends import LocalBackend
from consumers.parser.local import parse_pdf
from mocks.policy_pdf import make_policy_pdf

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"  # shared/ beside the clone
STRUCTURED = [
    "pdflatex-4-pages.pdf",
    "multicolumn.pdf",
    "GeoTopo-komprimiert.pdf",
    "pdflatex-outline.pdf",
    "generated-policy.pdf",
]
POLICY_HEADINGS = [
    "Homeowners Insurance Policy",
    "Declarations",
    "Section I - Coverages",
    "Schedule of Coverages",
    "Section II - Exclusions",
    "Section III - Conditions",
    "Endorsements",
]
POLICY_TABLES = 3  # declarations, schedule of coverages, endorsements
HEADING = re.compile(r"^#{1,6}\s+(.+)$", re.MULTILINE)
TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*\|", re.MULTILINE)

# (name, licence, converter returning (text, pages))
Converter = Callable[[bytes], tuple[str, int]]


def pypdfium2_text(data: bytes) -> tuple[str, int]:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(data)
    try:
        texts = []
        for page in document:
            textpage = page.get_textpage()
            texts.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return "\n".join(texts), len(document)
    finally:
        document.close()


def local_markdown(data: bytes) -> tuple[str, int]:
    parsed = parse_pdf(data)
    return parsed.markdown, parsed.pages


def pymupdf_text(data: bytes) -> tuple[str, int]:
    import pymupdf

    with pymupdf.open(stream=data, filetype="pdf") as document:
        return "\n".join(page.get_text() for page in document), document.page_count


def pymupdf4llm_markdown(layout: bool) -> Converter:
    def convert(data: bytes) -> tuple[str, int]:
        import pymupdf
        import pymupdf4llm

        pymupdf4llm.use_layout(layout)
        with pymupdf.open(stream=data, filetype="pdf") as document:
            if document.needs_pass:
                raise ValueError("encrypted")
            # It prints OCR hints; keep the report readable.
            quiet = io.StringIO()
            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                markdown = pymupdf4llm.to_markdown(document, show_progress=False)
            return markdown, document.page_count

    return convert


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


CANDIDATES: list[tuple[str, str, str, Converter]] = [
    ("pypdfium2 (raw text)", "Apache-2.0 OR BSD-3-Clause", "pypdfium2", pypdfium2_text),
    (
        "local:pypdfium2 (ours, markdown)",
        "Apache-2.0 OR BSD-3-Clause (pdfium) + ours",
        "pypdfium2",
        local_markdown,
    ),
    ("pymupdf (raw text)", "AGPL-3.0 or Artifex commercial", "pymupdf", pymupdf_text),
    (
        "pymupdf4llm (markdown, layout)",
        "AGPL-3.0 or Artifex commercial",
        "pymupdf",
        pymupdf4llm_markdown(layout=True),
    ),
    (
        "pymupdf4llm (markdown, no layout)",
        "AGPL-3.0 or Artifex commercial",
        "pymupdf",
        pymupdf4llm_markdown(layout=False),
    ),
]


def run(corpus: Path) -> dict:
    files = {p.name: p.read_bytes() for p in sorted(corpus.glob("*.pdf"))}
    files["generated-policy.pdf"] = make_policy_pdf(seed=1, pages=12)
    results: dict = {
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "files": len(files),
        "libraries": {},
    }
    for name, licence, package, convert in CANDIDATES:
        with contextlib.suppress(Exception):
            convert(files["minimal-document.pdf"])  # warm-up: imports, models
        entry: dict[str, Any] = {
            "licence": licence,
            "package": package,
            "version": _version(package),
            "pages": 0,
            "seconds": 0.0,
            "chars": 0,
            "failed": {},
            "empty": [],
            "structure": {},
        }
        for file_name, data in files.items():
            started = time.perf_counter()
            try:
                text, pages = convert(data)
            except Exception as exc:
                entry["failed"][file_name] = f"{type(exc).__name__}: {getattr(exc, 'code', exc)}"
                continue
            finally:
                entry["seconds"] += time.perf_counter() - started
            entry["pages"] += pages
            entry["chars"] += len(text.strip())
            if not re.sub(r"<!--.*?-->", "", text).strip():
                entry["empty"].append(file_name)
            if file_name in STRUCTURED:
                entry["structure"][file_name] = _structure(file_name, text)
        entry["pages_per_s"] = round(entry["pages"] / entry["seconds"], 1)
        entry["seconds"] = round(entry["seconds"], 3)
        results["libraries"][name] = entry
    return results


def over_raw(corpus: Path = CORPUS, passes: int = 3) -> dict:
    """`make bench`'s figure: our markdown pages/s ÷ raw pypdfium2 text pages/s, on the corpus
    files both read (image-only, encrypted and corrupt ones are left out), best of `passes`.

    Measured twice: `parse_pdf` in this process, and as the stage pays it, through
    `LocalBackend` (the memory-capped worker process: the PDF pickled there, the result
    back; OCR off, so only text layers are read). `worker_round_trip_ms` is what the worker
    adds per document: a no-op call through it with the smallest and the largest PDF."""
    files = [p.read_bytes() for p in sorted(corpus.glob("*.pdf"))]
    usable = []
    for data in files:
        with contextlib.suppress(Exception):
            local_markdown(data)
            usable.append(data)
    pages = sum(pypdfium2_text(data)[1] for data in usable)
    backend = LocalBackend(ocr_enabled=False)
    loop = asyncio.new_event_loop()

    def in_worker(data: bytes) -> None:
        loop.run_until_complete(backend.parse(data, "bench.pdf", document_id=uuid.uuid4()))

    smallest, largest = min(usable, key=len), max(usable, key=len)
    converters: dict[str, Callable[[bytes], object]] = {
        "raw": pypdfium2_text,
        "ours": local_markdown,
        "worker": in_worker,
    }
    best: dict[str, float] = {}
    trip: dict[int, float] = {}  # a no-op call (len) through the worker, by PDF size
    try:
        in_worker(smallest)  # the worker process started, its imports done
        for _ in range(passes):
            for name, convert in converters.items():
                started = time.perf_counter()
                for data in usable:
                    convert(data)
                elapsed = time.perf_counter() - started
                best[name] = min(best.get(name, elapsed), elapsed)
            for data in (smallest, largest):
                started = time.perf_counter()
                for _ in range(10):
                    loop.run_until_complete(backend.worker.run(len, data))
                elapsed = (time.perf_counter() - started) / 10
                trip[len(data)] = min(trip.get(len(data), elapsed), elapsed)
    finally:
        backend.worker.close()
        loop.close()
    return {
        "files": len(usable),
        "pages": pages,
        "raw_pypdfium2_text_pages_per_s": round(pages / best["raw"], 1),
        "ours_markdown_pages_per_s": round(pages / best["ours"], 1),
        "ours_over_raw": round(best["raw"] / best["ours"], 3),
        "ours_in_worker_pages_per_s": round(pages / best["worker"], 1),
        "in_worker_over_raw": round(best["raw"] / best["worker"], 3),
        "worker_round_trip_ms": {
            f"{size // 1024} KiB": round(seconds * 1000, 2) for size, seconds in trip.items()
        },
    }


def _structure(file_name: str, text: str) -> dict:
    headings = [h.strip("*_ ").strip() for h in HEADING.findall(text)]
    found: dict[str, Any] = {
        "headings": len(headings),
        "tables": len(TABLE_SEPARATOR.findall(text)),
    }
    if file_name == "generated-policy.pdf":
        hits = sum(any(expected in h for h in headings) for expected in POLICY_HEADINGS)
        found["policy_heading_recall"] = round(hits / len(POLICY_HEADINGS), 2)
        found["policy_tables_expected"] = POLICY_TABLES
    return found


def summary(results: dict) -> str:
    rows = [
        f"{'library':34} {'licence':30} {'pages/s':>7} {'failed':>6} {'empty':>5} {'chars':>7}"
        "  structure"
    ]
    for name, e in results["libraries"].items():
        policy = e["structure"].get("generated-policy.pdf", {})
        geo = e["structure"].get("GeoTopo-komprimiert.pdf", {})
        structure = (
            f"policy h-recall {policy.get('policy_heading_recall', '-')}, "
            f"tables {policy.get('tables', '-')}/{POLICY_TABLES}; "
            f"GeoTopo headings {geo.get('headings', '-')}"
        )
        rows.append(
            f"{name:34} {e['licence'][:30]:30} {e['pages_per_s']:>7} {len(e['failed']):>6} "
            f"{len(e['empty']):>5} {e['chars']:>7}  {structure}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()
    results = run(args.corpus)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(summary(results))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
