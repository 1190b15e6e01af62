"""Compare offline OCR engines on generated scans of known text.

    OMP_THREAD_LIMIT=1 .venv/bin/python bench/ocr_compare.py [--pages 3] [--out bench/ocr.json]

Known insurance wording is typeset (mocks/scanned_pdf.py), rasterised at 150/200/300 dpi,
tilted by up to 1 degree, given noise and specks, and wrapped back into image-only PDFs. Each
engine runs in a subprocess of its own (so its peak RSS is its own) on every page; per dpi we
record the character error rate (Levenshtein distance / reference length, whitespace
collapsed), word recall, pages/s after the engine is loaded, and the process's peak RSS. An
engine whose package is missing is recorded as such. Install weight is what its Python
distributions (and Debian packages) occupy on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DPIS = (150, 200, 300)
TESSDATA = "/usr/share/tesseract-ocr/5/tessdata"

ENGINES: dict[str, dict[str, Any]] = {
    "tesserocr": {
        "what": "Tesseract LSTM in-process (tesserocr wheel bundling libtesseract; Debian eng)",
        "licence": "Apache-2.0 (Tesseract, eng.traineddata); MIT (tesserocr)",
        "distributions": ["tesserocr"],
        "debian": ["tesseract-ocr-eng"],
    },
    "pytesseract": {
        "what": "Tesseract 5.3 CLI from Debian via pytesseract, OMP_THREAD_LIMIT=1",
        "licence": "Apache-2.0 (Tesseract, pytesseract)",
        "distributions": ["pytesseract"],
        "debian": ["tesseract-ocr", "tesseract-ocr-eng", "libtesseract5", "liblept5"],
    },
    "rapidocr-onnxruntime": {
        "what": "RapidOCR 1.4 (PP-OCRv4 det + ch/en rec, ONNX) on onnxruntime",
        "licence": "Apache-2.0 (RapidOCR, PP-OCR models); MIT (onnxruntime)",
        "distributions": [
            "rapidocr-onnxruntime",
            "onnxruntime",
            "opencv-python",
            "shapely",
            "pyclipper",
            "flatbuffers",
            "protobuf",
            "sympy",
            "mpmath",
            "coloredlogs",
            "humanfriendly",
        ],
        "debian": [],
    },
}


def _normalise(text: str) -> str:
    return " ".join(text.split())


def cer(reference: str, hypothesis: str) -> float:
    from rapidfuzz.distance import Levenshtein

    reference, hypothesis = _normalise(reference), _normalise(hypothesis)
    return Levenshtein.distance(reference, hypothesis) / max(len(reference), 1)


def word_recall(reference: str, hypothesis: str) -> float:
    words = re.findall(r"\w+", reference.lower())
    found = set(re.findall(r"\w+", hypothesis.lower()))
    return sum(w in found for w in words) / max(len(words), 1)


# --- one engine, in its own process


def _reader(engine: str):
    """A function image -> text for `engine`, loaded once."""
    if engine == "tesserocr":
        import tesserocr

        api = tesserocr.PyTessBaseAPI(path=TESSDATA, lang="eng")

        def read(image):
            api.SetImage(image)
            return api.GetUTF8Text()

        return read
    if engine == "pytesseract":
        import pytesseract

        pytesseract.get_tesseract_version()
        return lambda image: pytesseract.image_to_string(image, lang="eng")
    if engine == "rapidocr-onnxruntime":
        import numpy as np
        from rapidocr_onnxruntime import RapidOCR

        ocr = RapidOCR()

        def read(image):
            result, _ = ocr(np.asarray(image.convert("RGB")))
            return "\n".join(line[1] for line in result or [])

        return read
    raise ValueError(engine)


def run_worker(engine: str, scans_dir: Path) -> dict[str, Any]:
    import pypdfium2 as pdfium

    started = time.perf_counter()
    try:
        read = _reader(engine)
    except Exception as exc:  # an engine that is not installed is a result, not a crash
        return {"error": f"{type(exc).__name__}: {exc}"}
    load_s = time.perf_counter() - started
    truth = json.loads((scans_dir / "truth.json").read_text())
    per_dpi = {}
    for dpi in DPIS:
        document = pdfium.PdfDocument((scans_dir / f"scan-{dpi}.pdf").read_bytes())
        texts, seconds = [], 0.0
        for index in range(len(document)):
            # The page image at its scan resolution, as the parser renders it.
            image = document[index].render(scale=dpi / 72, grayscale=True).to_pil()
            start = time.perf_counter()
            texts.append(read(image))
            seconds += time.perf_counter() - start
        document.close()
        rates = [cer(ref, hyp) for ref, hyp in zip(truth, texts, strict=True)]
        recalls = [word_recall(ref, hyp) for ref, hyp in zip(truth, texts, strict=True)]
        per_dpi[str(dpi)] = {
            "pages": len(texts),
            "cer": round(sum(rates) / len(rates), 4),
            "cer_worst_page": round(max(rates), 4),
            "word_recall": round(sum(recalls) / len(recalls), 4),
            "seconds_per_page": round(seconds / len(texts), 3),
            "pages_per_s": round(len(texts) / seconds, 3),
            "sample": texts[0][:160],
        }
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return {"load_s": round(load_s, 2), "peak_rss_mb": round(peak_kb / 1024), "dpi": per_dpi}


# --- the driver


def make_scans(directory: Path, pages: int) -> None:
    from mocks.scanned_pdf import known_pages, scan, text_pdf

    truth = known_pages(pages, seed=12)
    original = text_pdf(truth)
    (directory / "truth.json").write_text(json.dumps(truth))
    for dpi in DPIS:
        (directory / f"scan-{dpi}.pdf").write_bytes(scan(original, dpi=dpi, seed=dpi))


def install_mb(distributions: list[str], debian: list[str]) -> float | None:
    total = 0
    for name in distributions:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in files)
    for package in debian:
        out = subprocess.run(
            ["dpkg-query", "-Wf", "${Installed-Size}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip().isdigit():
            total += int(out.stdout) * 1024
    return round(total / 1_048_576, 1) if total else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3, help="pages per dpi")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("ocr.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--scans", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.scans)))
        return

    # Parallelise by process, not OpenMP: Tesseract's own threads fight on 2 cores.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_scans(Path(tmp), args.pages)
        for engine in args.engines.split(","):
            print(f"{engine} ...", file=sys.stderr, flush=True)
            out = subprocess.run(
                [sys.executable, __file__, "--worker", engine, "--scans", tmp],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            try:
                measured = json.loads(out.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                measured = {"error": out.stderr.strip()[-500:]}
            spec = ENGINES[engine]
            results[engine] = {
                "what": spec["what"],
                "licence": spec["licence"],
                "install_mb": install_mb(spec["distributions"], spec["debian"]),
                **measured,
            }
            print(json.dumps(results[engine], indent=1), file=sys.stderr)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scans": {
            "pages_per_dpi": args.pages,
            "dpi": list(DPIS),
            "skew_deg": 1.0,
            "noise_sd": 8.0,
            "font": "Helvetica 11 pt, A4",
        },
        "engines": results,
    }
    if args.out.exists():  # bench/ocr_upscale.py's figures stay
        kept = json.loads(args.out.read_text()).get("upscale_retry")
        report |= {"upscale_retry": kept} if kept else {}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
