"""Generated insurance-policy PDFs for tests and load runs (reportlab, BSD licence).

`make_policy_pdf(seed=...)` lays out one page per planned section: declarations, a coverage
schedule, numbered exclusions, conditions, endorsements, then definitions and further
provisions. The same seed gives the same bytes. Each policy carries `policy_phrase(seed)` once,
on its declarations page, so search tests can look for a phrase no other seed contains.
"""

from __future__ import annotations

import io
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from PIL import Image
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import inch
from reportlab.lib.utils import ImageReader
from reportlab.platypus import (
    Flowable,
    ListFlowable,
    ListItem,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Table,
    TableStyle,
)

from mocks import policy_text
from mocks.policy_text import policy_phrase

__all__ = ["make_policy_pdf", "policy_phrase", "raw_pdf"]

_RL_CONFIG_LOCK = threading.Lock()


def make_policy_pdf(*, seed: int, pages: int = 8, target_bytes: int | None = None) -> bytes:
    """An insurance-policy-like PDF of exactly `pages` pages, the same bytes for the same seed.

    With `target_bytes`, every page also carries an incompressible image sized so that the
    file ends up close to (within about 10% of) that many bytes.
    """
    if pages < 1:
        raise ValueError("pages must be at least 1")
    base = _build(seed, pages, image_bytes=0)
    if target_bytes is None or target_bytes <= len(base):
        return base
    per_page = (target_bytes - len(base)) // pages  # zlib gains nothing on noise
    return _build(seed, pages, image_bytes=per_page)


def _build(seed: int, pages: int, *, image_bytes: int) -> bytes:
    rng = random.Random(seed)
    facts = policy_text.policy_facts(rng, seed)
    styles = _styles()
    story: list[Flowable] = []
    builders = _page_builders(pages)
    for number, builder in enumerate(builders, start=1):
        story.extend(builder(rng, facts, styles, number))
        if number < pages:
            story.append(PageBreak())
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=LETTER,
        invariant=True,
        title=f"Homeowners Policy {facts['policy_number']}",
        author=facts["insurer"],
        leftMargin=0.9 * inch,
        rightMargin=0.9 * inch,
        topMargin=0.8 * inch,
        bottomMargin=0.9 * inch,
    )
    image_rng = random.Random(f"image:{seed}")

    def decorate(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.drawString(0.9 * inch, 0.5 * inch, f"Policy {facts['policy_number']}")
        canvas.drawRightString(LETTER[0] - 0.9 * inch, 0.5 * inch, f"Page {doc.page} of {pages}")
        if image_bytes > 0:
            side = max(8, int((image_bytes / 3) ** 0.5))
            noise = Image.frombytes("RGB", (side, side), image_rng.randbytes(side * side * 3))
            canvas.drawImage(ImageReader(noise), LETTER[0] - 1.4 * inch, 0.15 * inch, 24, 24)
        canvas.restoreState()

    with _binary_streams():
        document.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()


@contextmanager
def _binary_streams() -> Iterator[None]:
    """Turn off ASCII85 stream encoding: +25% size, and pure Python (seconds per 25 MB)."""
    with _RL_CONFIG_LOCK:
        saved, rl_config.useA85 = rl_config.useA85, 0
        try:
            yield
        finally:
            rl_config.useA85 = saved


def _styles() -> dict[str, ParagraphStyle]:
    sheet = getSampleStyleSheet()
    body = ParagraphStyle("Body", parent=sheet["Normal"], fontSize=10, leading=12, spaceAfter=6)
    return {
        "title": ParagraphStyle("Title", parent=sheet["Title"], fontSize=18, leading=22),
        "h2": ParagraphStyle("H2", parent=sheet["Heading2"], fontSize=14, leading=17),
        "h3": ParagraphStyle("H3", parent=sheet["Heading3"], fontSize=11.5, leading=14),
        "body": body,
        "cell": ParagraphStyle("Cell", parent=body, fontSize=9, leading=11, spaceAfter=0),
    }


_Builder = Callable[[random.Random, dict[str, str], dict[str, ParagraphStyle], int], list]


def _page_builders(pages: int) -> list[_Builder]:
    fixed: list[_Builder] = [_declarations, _coverages, _exclusions, _conditions, _endorsements]
    extra = [_definitions if n % 2 == 0 else _provisions for n in range(max(0, pages - 5))]
    return (fixed + extra)[:pages]


def _declarations(rng, facts, styles, number) -> list[Flowable]:
    rows = [
        ["Named Insured", facts["insured"]],
        ["Policy Number", facts["policy_number"]],
        ["Policy Period", f"{facts['period']} (12:01 a.m. standard time)"],
        ["Residence Premises", facts["address"]],
        ["Insurer", facts["insurer"]],
        ["Agent", facts["agent"]],
    ]
    return [
        Paragraph("Homeowners Insurance Policy", styles["title"]),
        Paragraph("Declarations", styles["h2"]),
        _table(rows, [1.8 * inch, 4.6 * inch], header=False),
        Paragraph("Special Provisions", styles["h3"]),
        Paragraph(
            f"This policy includes the special provision known as {facts['phrase']}, which "
            "applies to the residence premises shown above.",
            styles["body"],
        ),
        Paragraph(policy_text.prose(rng, 3), styles["body"]),
    ]


def _coverages(rng, facts, styles, number) -> list[Flowable]:
    dwelling = rng.randrange(200_000, 900_000, 5_000)
    rows = [["Coverage", "Limit of Liability", "Deductible", "Annual Premium"]]
    for name, share in [
        ("A - Dwelling", 1.0),
        ("B - Other Structures", 0.1),
        ("C - Personal Property", 0.5),
        ("D - Loss of Use", 0.2),
        ("E - Personal Liability", None),
        ("F - Medical Payments", None),
    ]:
        limit = int(dwelling * share) if share else rng.choice([300_000, 500_000, 5_000])
        deductible = f"${rng.choice([500, 1000, 2500]):,}" if share else "None"
        rows.append([name, f"${limit:,}", deductible, f"${rng.randint(40, 1900):,}"])
    return [
        Paragraph("Section I - Coverages", styles["h2"]),
        Paragraph("Schedule of Coverages", styles["h3"]),
        _table(rows, [2.1 * inch, 1.6 * inch, 1.2 * inch, 1.4 * inch], header=True),
        Paragraph("Perils Insured Against", styles["h3"]),
        Paragraph(policy_text.prose(rng, 4), styles["body"]),
        _bullets([p.capitalize() for p in rng.sample(policy_text.PERILS, 5)], styles),
    ]


def _exclusions(rng, facts, styles, number) -> list[Flowable]:
    items = rng.sample(policy_text.EXCLUSIONS, 8)
    return [
        Paragraph("Section II - Exclusions", styles["h2"]),
        Paragraph(
            "We do not insure for loss caused directly or indirectly by any of the "
            "following. Such loss is excluded regardless of any other cause.",
            styles["body"],
        ),
        ListFlowable(
            [ListItem(Paragraph(f"{text}.", styles["body"])) for text in items],
            bulletType="1",
            bulletFormat="%s.",
        ),
        Paragraph(policy_text.prose(rng, 3), styles["body"]),
    ]


def _conditions(rng, facts, styles, number) -> list[Flowable]:
    flow: list[Flowable] = [Paragraph("Section III - Conditions", styles["h2"])]
    for index, title in enumerate(rng.sample(policy_text.CONDITIONS, 4), start=1):
        flow.append(Paragraph(f"{index}. {title}", styles["h3"]))
        flow.append(Paragraph(policy_text.prose(rng, 3), styles["body"]))
    return flow


def _endorsements(rng, facts, styles, number) -> list[Flowable]:
    chosen = rng.sample(policy_text.ENDORSEMENTS, 4)
    rows = [["Form", "Title", "Edition", "Premium"]]
    rows += [
        [
            form,
            title,
            f"{rng.randint(1, 12):02d}/{rng.choice([2011, 2016, 2022])}",
            f"${rng.randint(15, 240)}",
        ]
        for form, title in chosen
    ]
    return [
        Paragraph("Endorsements", styles["h2"]),
        _table(rows, [1.0 * inch, 3.0 * inch, 1.0 * inch, 1.0 * inch], header=True),
        Paragraph(f"Endorsement {chosen[0][0]}", styles["h3"]),
        Paragraph(policy_text.prose(rng, 4), styles["body"]),
    ]


def _definitions(rng, facts, styles, number) -> list[Flowable]:
    flow: list[Flowable] = [Paragraph(f"Definitions (Part {number})", styles["h2"])]
    for term in rng.sample(policy_text.TERMS, 3):
        flow.append(Paragraph(term, styles["h3"]))
        flow.append(Paragraph(f'"{term}" means {policy_text.prose(rng, 2)}', styles["body"]))
    return flow


def _provisions(rng, facts, styles, number) -> list[Flowable]:
    return [
        Paragraph(f"Additional Provisions (Part {number})", styles["h2"]),
        Paragraph(policy_text.prose(rng, 4), styles["body"]),
        _bullets([policy_text.prose(rng, 1) for _ in range(3)], styles),
        Paragraph(policy_text.prose(rng, 3), styles["body"]),
    ]


def _table(rows: list[list[str]], widths: list[float], *, header: bool) -> Table:
    table = Table(rows, colWidths=widths)
    style = [
        ("FONT", (0, 0), (-1, -1), "Helvetica", 9),
        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
    if header:
        style += [
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9),
            ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
        ]
    table.setStyle(TableStyle(style))
    return table


def _bullets(items: list[str], styles: dict[str, ParagraphStyle]) -> ListFlowable:
    return ListFlowable(
        [ListItem(Paragraph(text, styles["body"])) for text in items],
        bulletType="bullet",
        start="•",
    )


def raw_pdf(*objects: bytes, version: bytes = b"1.7") -> bytes:
    """A well-formed PDF made of these object bodies, numbered from 1 (object 1 is the
    catalog), with a correct xref table: for tests that need byte-level control."""
    out, offsets = b"%PDF-" + version + b"\n%\xe2\xe3\xcf\xd3\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    trailer = b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
    return out + trailer % (len(objects) + 1, xref)
