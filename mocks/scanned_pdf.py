"""Scanned-looking PDFs from known text, for OCR tests and `bench/ocr_compare.py`.

`text_pdf(pages)` typesets known paragraphs with reportlab; `scan(pdf, dpi=...)` rasterises each
page with pdfium, tilts it slightly, adds sensor noise and dust, and wraps the images back into
an image-only PDF (no text layer), as a flatbed scanner would.
"""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import pypdfium2 as pdfium
from PIL import Image
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

_SENTENCES = [
    "The insurer will pay for sudden and accidental damage to the buildings at the address "
    "shown in the schedule.",
    "You must tell us within 30 days of any change to the information in your statement of fact.",
    "The excess for escape of water is £350 for each claim, or £1,000 where subsidence applies.",
    "We will not pay for loss or damage caused by wear and tear, rot, fungus or vermin.",
    "Cover for accidental damage to contents applies only if it is shown on your schedule.",
    "If you cancel this policy within 14 days of receiving it, we will refund the premium in full.",
    "Section 3 covers your legal liability to pay compensation up to £2,000,000 per claim.",
    "Valuables kept away from the home are insured up to 10% of the contents sum insured.",
    "The policyholder named in the schedule is Harriet Whitcombe of 14 Juniper Lane, Bristol.",
    "Claims should be reported by telephone on 0345 600 7281 between 8am and 8pm.",
    "Unoccupied means not lived in by you or your family for more than 60 consecutive days.",
    "Theft from an outbuilding is limited to £2,500 unless force was used to gain entry.",
]


def known_pages(pages: int, *, seed: int = 0, sentences_per_page: int = 9) -> list[str]:
    """`pages` texts of sentences drawn (reproducibly) from insurance wording."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(_SENTENCES) for _ in range(sentences_per_page)) for _ in range(pages)
    ]


def text_pdf(pages: list[str], *, font_size: float = 11) -> bytes:
    """An A4 PDF with one page per text, set as a left-aligned paragraph in Helvetica."""
    style = getSampleStyleSheet()["BodyText"].clone(
        "known", fontName="Helvetica", fontSize=font_size, leading=font_size * 1.35
    )
    story = []
    for number, text in enumerate(pages):
        if number:
            story.append(PageBreak())
        story.append(Paragraph(text, style))
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=2.5 * cm,
        rightMargin=2.5 * cm,
        topMargin=2.5 * cm,
        bottomMargin=2.5 * cm,
        invariant=1,
    )
    doc.build(story)
    return out.getvalue()


def scan_images(
    pdf: bytes, *, dpi: int = 200, skew_deg: float = 1.0, noise: float = 8.0, seed: int = 0
) -> list[Image.Image]:
    """Each page as a greyscale scan: tilted by up to `skew_deg`, Gaussian noise of standard
    deviation `noise` (0-255 scale) and a sprinkle of dark specks."""
    rng = np.random.default_rng(seed)
    document = pdfium.PdfDocument(pdf)
    images = []
    try:
        for page in document:
            image = page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
            page.close()
            angle = float(rng.uniform(-skew_deg, skew_deg))
            image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
            pixels: np.ndarray[Any, Any] = np.asarray(image, dtype=np.float32)
            pixels = pixels + rng.normal(0, noise, pixels.shape)
            specks = rng.random(pixels.shape) < 0.0005
            pixels[specks] = rng.uniform(0, 120, int(specks.sum()))
            images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L"))
    finally:
        document.close()
    return images


def images_pdf(images: list[Image.Image], *, dpi: int) -> bytes:
    """An image-only PDF, one page per image at `dpi` (JPEG, as scanners save)."""
    out = io.BytesIO()
    first, *rest = images
    first.save(out, format="PDF", resolution=dpi, save_all=True, append_images=rest, quality=85)
    return out.getvalue()


def scan(
    pdf: bytes, *, dpi: int = 200, skew_deg: float = 1.0, noise: float = 8.0, seed: int = 0
) -> bytes:
    """`pdf` as an image-only scan at `dpi`."""
    images = scan_images(pdf, dpi=dpi, skew_deg=skew_deg, noise=noise, seed=seed)
    return images_pdf(images, dpi=dpi)
