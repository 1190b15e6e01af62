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

_RL_CONFIG_LOCK = threading.Lock()
_FIRST = ["Avery", "Jordan", "Morgan", "Riley", "Casey", "Quinn", "Harper", "Rowan", "Emerson"]
_LAST = ["Whitfield", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Castellano", "Brennan"]
_STREETS = ["Juniper Lane", "Harbor View Road", "Old Mill Street", "Cedar Ridge Drive"]
_CITIES = ["Springfield, IL", "Portland, OR", "Asheville, NC", "Madison, WI", "Boise, ID"]
_INSURERS = ["Northwind Mutual Insurance Company", "Bluestone Casualty Group"]
_PHRASE_WORDS = [
    "amber",
    "basalt",
    "cobalt",
    "delta",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "indigo",
    "juniper",
    "kestrel",
    "lantern",
    "meridian",
    "nimbus",
    "obsidian",
    "pelican",
    "quartz",
    "rosewood",
    "saffron",
    "tundra",
    "umber",
    "vesper",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
]
_PERILS = [
    "fire or lightning",
    "windstorm or hail",
    "explosion",
    "riot or civil commotion",
    "aircraft",
    "vehicles",
    "smoke",
    "vandalism or malicious mischief",
    "theft",
    "falling objects",
    "weight of ice, snow or sleet",
    "accidental discharge of water",
]
_EXCLUSIONS = [
    "Ordinance or Law, meaning the enforcement of any ordinance or law regulating construction",
    "Earth Movement, including earthquake, landslide, mudflow and sinkhole collapse",
    "Water Damage caused by flood, surface water, waves, tidal water or overflow",
    "Power Failure, meaning the failure of power or other utility service off premises",
    "Neglect, meaning neglect of an insured to use all reasonable means to save property",
    "War, including undeclared war, civil war, insurrection, rebellion or revolution",
    "Nuclear Hazard, as defined in the Conditions of this policy",
    "Intentional Loss, meaning any loss arising out of any act an insured commits",
    "Governmental Action, meaning the destruction or seizure of property by order of authority",
    "Wear and tear, marring, deterioration, mechanical breakdown or latent defect",
]
_CONDITIONS = [
    "Insurable Interest and Limit of Liability",
    "Duties After Loss",
    "Loss Settlement",
    "Appraisal",
    "Other Insurance",
    "Suit Against Us",
    "Our Option",
    "Loss Payment",
    "Abandonment of Property",
    "Mortgage Clause",
    "Cancellation",
    "Nonrenewal",
]
_ENDORSEMENTS = [
    ("HO 04 90", "Personal Property Replacement Cost"),
    ("HO 04 61", "Scheduled Personal Property"),
    ("HO 04 95", "Water Back-Up and Sump Discharge"),
    ("HO 04 20", "Specified Additional Amount"),
    ("HO 24 82", "Personal Injury Coverage"),
    ("HO 04 53", "Credit Card and Forgery"),
]
_TERMS = [
    "Bodily injury",
    "Business",
    "Insured",
    "Occurrence",
    "Property damage",
    "Residence employee",
    "Motor vehicle",
]
_SENTENCES = [
    "We will pay for direct physical loss to the property described in Coverage {cov}, "
    "provided the loss is caused by {peril}.",
    "The deductible of {amount} applies to each covered loss, unless a different deductible "
    "is shown in the Declarations.",
    "You must give prompt notice to us or our agent and protect the property from further "
    "damage after a loss caused by {peril}.",
    "Our limit of liability for Coverage {cov} will not be more than {amount} for any one "
    "occurrence, regardless of the number of insureds.",
    "This provision applies only while the residence premises is occupied by an insured and "
    "is not rented to others for more than {days} days.",
    "If you and we fail to agree on the amount of loss, either may demand an appraisal "
    "within {days} days after receipt of a written request.",
    "Payment will be made within {days} days after we reach agreement with you or an "
    "appraisal award is filed with us.",
    "Loss to property described in Coverage {cov} caused by {peril} is covered only if "
    "the damage is reported within {days} days.",
    "We do not cover loss to the extent the amount exceeds {amount} for property of this "
    "kind, unless it is scheduled by endorsement.",
]


def policy_phrase(seed: int) -> str:
    """A phrase that only the policy of this seed contains."""
    rng = random.Random(f"phrase:{seed}")
    words = rng.sample(_PHRASE_WORDS, 3)
    return f"{words[0]} {words[1]} {words[2]} rider {seed:06d}"


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
    facts = _facts(rng, seed)
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


def _facts(rng: random.Random, seed: int) -> dict[str, str]:
    start_year = 2020 + rng.randint(0, 6)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    return {
        "insured": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
        "policy_number": f"HO-{seed % 100:02d}-{rng.randint(1_000_000, 9_999_999)}",
        "period": f"{month:02d}/{day:02d}/{start_year} to {month:02d}/{day:02d}/{start_year + 1}",
        "address": f"{rng.randint(10, 9999)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}",
        "insurer": rng.choice(_INSURERS),
        "agent": f"{rng.choice(_FIRST)} {rng.choice(_LAST)} Agency",
        "phrase": policy_phrase(seed),
    }


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
        Paragraph(_prose(rng, 3), styles["body"]),
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
        Paragraph(_prose(rng, 4), styles["body"]),
        _bullets([p.capitalize() for p in rng.sample(_PERILS, 5)], styles),
    ]


def _exclusions(rng, facts, styles, number) -> list[Flowable]:
    items = rng.sample(_EXCLUSIONS, 8)
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
        Paragraph(_prose(rng, 3), styles["body"]),
    ]


def _conditions(rng, facts, styles, number) -> list[Flowable]:
    flow: list[Flowable] = [Paragraph("Section III - Conditions", styles["h2"])]
    for index, title in enumerate(rng.sample(_CONDITIONS, 4), start=1):
        flow.append(Paragraph(f"{index}. {title}", styles["h3"]))
        flow.append(Paragraph(_prose(rng, 3), styles["body"]))
    return flow


def _endorsements(rng, facts, styles, number) -> list[Flowable]:
    chosen = rng.sample(_ENDORSEMENTS, 4)
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
        Paragraph(_prose(rng, 4), styles["body"]),
    ]


def _definitions(rng, facts, styles, number) -> list[Flowable]:
    flow: list[Flowable] = [Paragraph(f"Definitions (Part {number})", styles["h2"])]
    for term in rng.sample(_TERMS, 3):
        flow.append(Paragraph(term, styles["h3"]))
        flow.append(Paragraph(f'"{term}" means {_prose(rng, 2)}', styles["body"]))
    return flow


def _provisions(rng, facts, styles, number) -> list[Flowable]:
    return [
        Paragraph(f"Additional Provisions (Part {number})", styles["h2"]),
        Paragraph(_prose(rng, 4), styles["body"]),
        _bullets([_prose(rng, 1) for _ in range(3)], styles),
        Paragraph(_prose(rng, 3), styles["body"]),
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


def _prose(rng: random.Random, sentences: int) -> str:
    return " ".join(
        rng.choice(_SENTENCES).format(
            cov=rng.choice("ABCDEF"),
            peril=rng.choice(_PERILS),
            amount=f"${rng.choice([500, 1000, 2500, 5000, 10000]):,}",
            days=rng.choice([30, 60, 90]),
        )
        for _ in range(sentences)
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
