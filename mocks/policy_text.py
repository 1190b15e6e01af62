"""What a generated policy says: its people, places and clauses, and prose made of its
sentences, all drawn from a seeded `random.Random` so that the same seed says the same."""

from __future__ import annotations

import random

FIRST_NAMES = ["Avery", "Jordan", "Morgan", "Riley", "Casey", "Quinn", "Harper", "Rowan", "Emerson"]
LAST_NAMES = ["Whitfield", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Castellano", "Brennan"]
STREETS = ["Juniper Lane", "Harbor View Road", "Old Mill Street", "Cedar Ridge Drive"]
CITIES = ["Springfield, IL", "Portland, OR", "Asheville, NC", "Madison, WI", "Boise, ID"]
INSURERS = ["Northwind Mutual Insurance Company", "Bluestone Casualty Group"]
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
PERILS = [
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
EXCLUSIONS = [
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
CONDITIONS = [
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
ENDORSEMENTS = [
    ("HO 04 90", "Personal Property Replacement Cost"),
    ("HO 04 61", "Scheduled Personal Property"),
    ("HO 04 95", "Water Back-Up and Sump Discharge"),
    ("HO 04 20", "Specified Additional Amount"),
    ("HO 24 82", "Personal Injury Coverage"),
    ("HO 04 53", "Credit Card and Forgery"),
]
TERMS = [
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


def policy_facts(rng: random.Random, seed: int) -> dict[str, str]:
    """The declarations of one policy: insured, number, period, premises, insurer, agent."""
    start_year = 2020 + rng.randint(0, 6)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    return {
        "insured": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
        "policy_number": f"HO-{seed % 100:02d}-{rng.randint(1_000_000, 9_999_999)}",
        "period": f"{month:02d}/{day:02d}/{start_year} to {month:02d}/{day:02d}/{start_year + 1}",
        "address": f"{rng.randint(10, 9999)} {rng.choice(STREETS)}, {rng.choice(CITIES)}",
        "insurer": rng.choice(INSURERS),
        "agent": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)} Agency",
        "phrase": policy_phrase(seed),
    }


def prose(rng: random.Random, sentences: int) -> str:
    """`sentences` policy-like sentences, their blanks filled from `rng`."""
    return " ".join(
        rng.choice(_SENTENCES).format(
            cov=rng.choice("ABCDEF"),
            peril=rng.choice(PERILS),
            amount=f"${rng.choice([500, 1000, 2500, 5000, 10000]):,}",
            days=rng.choice([30, 60, 90]),
        )
        for _ in range(sentences)
    )
