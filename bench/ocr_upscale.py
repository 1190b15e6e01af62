"""Does OCR's upscaled retry help on low-resolution scans? Writes `upscale_retry` in ocr.json.

    OMP_THREAD_LIMIT=1 .venv/bin/python -m bench.ocr_upscale [--pages 3] [--out bench/ocr.json]

Generated scans (mocks/scanned_pdf.py: Helvetica 11 pt, 1 degree of skew, noise 8, and a
fax-like 50 dpi with noise 20) are read three ways by `consumers.parser.ocr.ocr_pages`:
`render` as before the retry (pdfium's render at 300 dpi, read once), `upscaled` (every page
read again from its own image upscaled with Lanczos to 300 dpi, the better reading kept), and
`parser` as the parser runs it (the retry only below ACCESSA_QUALITY_MIN_OCR_CONFIDENCE).
Per variant: mean word confidence, word recall and CER against the known text, and seconds a
page.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from accessa.config import Settings
from bench.ocr_compare import cer, word_recall
from consumers.parser import ocr
from mocks.scanned_pdf import known_pages, scan, text_pdf

SCANS = {
    "100 dpi": (100, 8.0),
    "72 dpi": (72, 8.0),
    "50 dpi": (50, 8.0),
    "50 dpi fax (noise 20)": (50, 20.0),
}


def measure(pages: int) -> dict[str, Any]:
    threshold = Settings().quality_min_ocr_confidence
    variants = {"render": 0.0, "upscaled": 1.01, "parser": threshold}  # retry_below
    out: dict[str, Any] = {}
    for label, (dpi, noise) in SCANS.items():
        truth = known_pages(pages, seed=dpi)
        pdfs = [scan(text_pdf([t]), dpi=dpi, noise=noise, seed=i) for i, t in enumerate(truth)]
        row: dict[str, Any] = {}
        for variant, retry_below in variants.items():
            start = time.perf_counter()
            read = [ocr.ocr_pages(pdf, [1], retry_below=retry_below)[1] for pdf in pdfs]
            seconds = (time.perf_counter() - start) / pages
            texts = [r.text if r else "" for r in read]
            row[variant] = {
                "confidence": round(sum(r.confidence for r in read if r) / pages, 3),
                "word_recall": round(sum(map(word_recall, truth, texts)) / pages, 3),
                "cer": round(sum(map(cer, truth, texts)) / pages, 4),
                "upscaled_kept": sum(bool(r and r.upscaled) for r in read),
                "seconds_per_page": round(seconds, 2),
            }
        out[label] = row
        print(label, json.dumps(row), file=sys.stderr, flush=True)
    return {"pages_per_scan": pages, "threshold": threshold, "scans": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("ocr.json"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report["upscale_retry"] = measure(args.pages)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
