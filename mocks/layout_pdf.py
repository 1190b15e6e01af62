"""Generated PDFs with the layouts that trip parsers (reportlab, BSD licence).

`make_layout_pdf()` builds a Summary of Benefits and Coverage-like document:

- page 1: a title, a paragraph with a bold sentence inside it, a real bold heading, and a
  borderless three-column grid ("Important Questions | Answers | Why This Matters") with
  multi-line cells, drawn cell by cell as reportlab does;
- page 2: a full-width heading over two columns of prose (left column first);
- page 3: more of the grid and prose;
- every page: a running header (`UIN_LINE` + "/Page N"), a footer "Page N of M" and a large
  light-grey "S A M P L E" watermark across the middle.

The same call gives the same bytes (`invariant=True`).
"""

from __future__ import annotations

import io

from reportlab.lib import colors
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    FrameBreak,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Table,
    TableStyle,
)

UIN_LINE = "UIN- BAJHLIP23020V012223 Global Health Care/ Policy Wordings"
WATERMARK = "S A M P L E"
GRID_HEADER = ("Important Questions", "Answers", "Why This Matters:")
GRID_ROWS = [
    (
        "What is the overall deductible?",
        "$2,500 individual / $5,000 family",
        "Generally, you must pay all of the costs from providers up to the deductible amount "
        "before this plan begins to pay.",
    ),
    (
        "Are there services covered before you meet your deductible?",
        "Yes. Preventive care and primary care visits are covered before you meet your deductible.",
        "This plan covers some items and services even if you haven't yet met "
        "the deductible amount.",
    ),
    (
        "Are there other deductibles for specific services?",
        "No.",
        "You don't have to meet deductibles for specific services.",
    ),
    (
        "What is the out-of-pocket limit for this plan?",
        "$6,000 individual / $12,000 family",
        "The out-of-pocket limit is the most you could pay in a year for covered services.",
    ),
]
MORE_ROWS = [
    (
        "Will you pay less if you use a network provider?",
        "Yes. See www.example.com/network",
        "This plan uses a provider network. You will pay less if you use a provider in the "
        "plan's network.",
    ),
    (
        "Do you need a referral to see a specialist?",
        "No.",
        "You can see the specialist you choose without a referral.",
    ),
]
BOLD_SENTENCE = (
    "You must notify us within 30 days of any hospital admission, or the benefit we pay "
    "for that stay may be reduced by the amount of any prejudice the delay causes us under "
    "the conditions of this policy"
)
HEADING = "Excluded Services and Other Covered Services"
LEFT_COLUMN = (
    "Left column. Emergency care abroad is covered up to the limit shown in the schedule. "
    "The insured must contact the assistance line before any planned treatment. "
) * 4
RIGHT_COLUMN = (
    "Right column. Claims must be submitted with original invoices and a medical report "
    "within ninety days. Payment is made in the currency of the policy. "
) * 4


SCHEDULE_HEADER = ("Benefit", "Limit", "Excess", "Waiting period")
SCHEDULE_ROWS = [
    ("Emergency medical expenses", "$5,000,000", "", ""),
    ("Dental emergency", "", "$100", ""),
    ("Maternity cover", "", "", "10 months"),
    ("Lost baggage", "$2,500", "$50", ""),
]


def make_schedule_pdf() -> bytes:
    """A benefit schedule as a borderless grid whose rows fill different columns."""
    styles = _styles()
    buffer = io.BytesIO()
    document = BaseDocTemplate(buffer, pagesize=LETTER, invariant=True, title="Schedule")
    document.addPageTemplates(
        [
            PageTemplate(
                "one",
                [
                    Frame(
                        document.leftMargin, document.bottomMargin, document.width, document.height
                    )
                ],
            )
        ]
    )
    document.build(
        [
            Paragraph("Schedule of Benefits", styles["h2"]),
            _grid(
                [SCHEDULE_HEADER, *SCHEDULE_ROWS],
                styles,
                widths=[2.2 * inch, 1.4 * inch, 1.1 * inch, 1.4 * inch],
            ),
            Paragraph("Limits apply per insured person and per trip.", styles["body"]),
        ]
    )
    return buffer.getvalue()


def make_layout_pdf(pages: int = 3) -> bytes:
    """The SBC-like PDF described above; `pages` (>= 3) repeats the closing page."""
    styles = _styles()
    story: list[Flowable] = [
        Paragraph("Summary of Benefits and Coverage", styles["title"]),
        Paragraph(
            "This summary explains what the plan covers and what you pay for covered "
            f"services. <b>{BOLD_SENTENCE}.</b> The rest of this paragraph continues in "
            "the regular body font and says nothing more of importance.",
            styles["body"],
        ),
        Paragraph(HEADING, styles["bold"]),
        Paragraph(
            "Services your plan generally does not cover are listed below; check your "
            "policy or plan document for more information.",
            styles["body"],
        ),
        _grid([GRID_HEADER, *GRID_ROWS], styles),
        NextPageTemplate("two"),
        PageBreak(),
        Paragraph("Coverage Abroad", styles["h2"]),
        FrameBreak(),
        Paragraph(LEFT_COLUMN, styles["body"]),
        FrameBreak(),
        Paragraph(RIGHT_COLUMN, styles["body"]),
        NextPageTemplate("one"),
        PageBreak(),
    ]
    for number in range(3, max(3, pages) + 1):
        story += [
            Paragraph(f"Your Rights to Continue Coverage (Part {number})", styles["h2"]),
            _grid([GRID_HEADER, *MORE_ROWS], styles),
            Paragraph(
                "If you lose coverage under the plan, then, depending upon the circumstances, "
                "Federal and State laws may provide protections that allow you to keep "
                "health coverage.",
                styles["body"],
            ),
        ]
        if number < pages:
            story.append(PageBreak())
    buffer = io.BytesIO()
    document = BaseDocTemplate(
        buffer,
        pagesize=LETTER,
        invariant=True,
        title="Summary of Benefits and Coverage",
        leftMargin=0.8 * inch,
        rightMargin=0.8 * inch,
        topMargin=0.9 * inch,
        bottomMargin=0.9 * inch,
    )
    x, y = document.leftMargin, document.bottomMargin
    w, h = document.width, document.height
    gutter = 0.3 * inch
    half = (w - gutter) / 2
    decorate = _decorator(pages)
    document.addPageTemplates(
        [
            PageTemplate("one", [Frame(x, y, w, h, id="body")], onPage=decorate),
            PageTemplate(
                "two",
                [
                    Frame(x, y + h - 0.6 * inch, w, 0.6 * inch, id="top"),
                    Frame(x, y, half, h - 0.6 * inch, id="left"),
                    Frame(x + half + gutter, y, half, h - 0.6 * inch, id="right"),
                ],
                onPage=decorate,
            ),
        ]
    )
    document.build(story)
    return buffer.getvalue()


def _decorator(pages: int):
    def decorate(canvas, doc) -> None:
        width, height = LETTER
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.drawString(0.8 * inch, height - 0.5 * inch, f"{UIN_LINE}/Page {doc.page}")
        canvas.drawRightString(width - 0.8 * inch, 0.5 * inch, f"Page {doc.page} of {pages}")
        canvas.setFont("Helvetica-Bold", 60)
        canvas.setFillColor(colors.Color(0.85, 0.85, 0.85))
        canvas.drawCentredString(width / 2, height / 2, WATERMARK)
        canvas.restoreState()

    return decorate


def _grid(
    rows: list[tuple[str, ...]],
    styles: dict[str, ParagraphStyle],
    widths: list[float] | None = None,
) -> Table:
    """A borderless grid: no rules, cells top-aligned, the first column and header bold."""
    cells = [
        [
            Paragraph(text, styles["cell_bold" if r == 0 or c == 0 else "cell"])
            for c, text in enumerate(row)
        ]
        for r, row in enumerate(rows)
    ]
    table = Table(cells, colWidths=widths or [2.1 * inch, 2.0 * inch, 2.8 * inch])
    table.setStyle(
        TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("BOTTOMPADDING", (0, 0), (-1, -1), 6)])
    )
    return table


def _styles() -> dict[str, ParagraphStyle]:
    body = ParagraphStyle("Body", fontName="Helvetica", fontSize=10, leading=12, spaceAfter=6)
    return {
        "title": ParagraphStyle(
            "Title", fontName="Helvetica-Bold", fontSize=18, leading=22, spaceAfter=10
        ),
        "h2": ParagraphStyle("H2", fontName="Helvetica-Bold", fontSize=14, leading=17),
        "bold": ParagraphStyle("Bold", parent=body, fontName="Helvetica-Bold"),
        "body": body,
        "cell": ParagraphStyle("Cell", parent=body, spaceAfter=0),
        "cell_bold": ParagraphStyle(
            "CellBold", parent=body, fontName="Helvetica-Bold", spaceAfter=0
        ),
    }
