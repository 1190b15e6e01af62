"""The parser's and chunker's regular expressions do linear work on any line.

Python's `re` backtracks and counts nothing we could read, and a wall-clock bound would be a
timed assertion, so the bound is proven on the pattern instead. A backtracking matcher's work
grows faster than the input only through (1) an unbounded repeat inside another, (2) two
unbounded repeats that can match the same character with only optional items between them
(every way of splitting a run between them is tried), or (3) for a search (`sub`, `split`,
`finditer`), a leading unbounded repeat that is rescanned from every position of a long run
and can then fail. Without these, a match attempt examines each character a bounded number of
times, and a search starting inside a run fails at once. The test walks each pattern's parse
tree (`re._parser`, the tree `re` compiles) and asserts none of the three is there, treating
every pattern as searched (the stricter case); the patterns these modules used before are
kept here to show the check finds each of their hazards. Then each new matcher runs on 1 MB
adversarial lines and must still give the answer the old pattern gave on short ones.
"""

from __future__ import annotations

import random
import re
import re._constants as c  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
from re import _compiler  # type: ignore[attr-defined]

import pytest

from accessa import text as normalize
from consumers.chunker import blocks, packing
from consumers.parser import layout

MODULES = (layout, normalize, blocks, packing)
UNIVERSE = [chr(i) for i in range(0x3000)] + ["\u3000", "\ufeff"]
SINGLE = (c.LITERAL, c.NOT_LITERAL, c.IN, c.ANY)
REPEATS = (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT)

# The patterns before this change: each took seconds on 20k characters.
OLD = {
    "layout._PAGE_NUMBER": re.compile(
        r"(?:[/|\s-]*\bpage\s*\d+(?:\s*(?:of|/)\s*\d+)?\b|^\s*\d+\s*$)", re.I
    ),
    "blocks._HEADING": re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$"),
    "blocks._TABLE_SEPARATOR": re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$"),
    "normalize._TRAILING_SPACE": re.compile(r"[ \t\u00a0]+$", re.MULTILINE),
    "normalize._PAGE_MARKERS": re.compile(
        r"^\s*<!--\s*page\s+\d+(?:\s+ocr\s+confidence=[\d.]+)?\s*-->\s*$",
        re.MULTILINE | re.IGNORECASE,
    ),
}
MB = 1_000_000


class Check:
    """The hazards of one compiled pattern."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.flags = pattern.flags
        self.tree = sre_parse.parse(pattern.pattern, pattern.flags)
        self.found: list[str] = []
        self._sets: dict[int, frozenset[str]] = {}

    def hazards(self) -> list[str]:
        self._walk(list(self.tree), [])
        self.found += self._leading(list(self.tree), [])
        return self.found

    def chars(self, item: tuple) -> frozenset[str]:
        """The characters a one-character item matches (compiled alone, same flags)."""
        key = id(item)
        if key not in self._sets:
            rx = _compiler.compile(sre_parse.SubPattern(self.tree.state, [item]), self.flags)
            self._sets[key] = frozenset(ch for ch in UNIVERSE if rx.fullmatch(ch))
        return self._sets[key]

    @staticmethod
    def run(item: tuple) -> tuple | None:
        """The one-character item an unbounded repeat repeats, or None."""
        op, av = item
        if op in REPEATS and av[1] == c.MAXREPEAT and len(av[2]) == 1 and av[2][0][0] in SINGLE:
            return av[2][0]
        return None

    def _nullable(self, item: tuple) -> bool:
        op, av = item
        if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            return True
        if op in REPEATS:
            return av[0] == 0 or all(map(self._nullable, av[2]))
        if op in (c.SUBPATTERN, c.ATOMIC_GROUP):
            return all(map(self._nullable, av[-1]))
        if op == c.BRANCH:
            return any(all(map(self._nullable, b)) for b in av[1])
        return False

    def _always(self, item: tuple) -> bool:
        """`item` matches wherever it is tried (optional and without assertions)."""
        op, av = item
        if op in REPEATS:
            return av[0] == 0 and not any(o in (c.AT, c.ASSERT, c.ASSERT_NOT) for o, _ in av[2])
        return op in (c.SUBPATTERN, c.ATOMIC_GROUP) and all(map(self._always, av[-1]))

    def _firsts(self, items: list) -> list[tuple]:
        """Unbounded runs that can start `items` (through items that may match nothing)."""
        out: list[tuple] = []
        for op, av in items:
            if self.run((op, av)) is not None:
                out.append((op, av))
            elif op in REPEATS:
                out += self._firsts(list(av[2]))
            elif op in (c.SUBPATTERN, c.ATOMIC_GROUP):
                out += self._firsts(list(av[-1]))
            elif op == c.BRANCH:
                out += [r for b in av[1] for r in self._firsts(list(b))]
            if not self._nullable((op, av)):
                break
        return out

    def _walk(self, items: list, follow: list) -> None:
        for i, (op, av) in enumerate(items):
            after = items[i + 1 :] + follow
            if op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[1] == c.MAXREPEAT:
                inner = [r for r in self._all_repeats(list(av[2])) if r[1][1] == c.MAXREPEAT]
                if inner:
                    self.found.append("nested unbounded repeats")
                if (body := self.run((op, av))) is not None:
                    for right in self._firsts(after):
                        if self.chars(body) & self.chars(self.run(right)):  # type: ignore[arg-type]
                            self.found.append("adjacent unbounded repeats over common chars")
            if op in REPEATS:
                self._walk(list(av[2]), after)
            elif op in (c.SUBPATTERN, c.ATOMIC_GROUP):
                self._walk(list(av[-1]), after)
            elif op == c.BRANCH:
                for branch in av[1]:
                    self._walk(list(branch), after)
            elif op in (c.ASSERT, c.ASSERT_NOT):
                self._walk(list(av[1]), [])

    def _all_repeats(self, items: list) -> list[tuple]:
        out = []
        for op, av in items:
            if op in REPEATS:
                out += [(op, av), *self._all_repeats(list(av[2]))]
            elif op in (c.SUBPATTERN, c.ATOMIC_GROUP):
                out += self._all_repeats(list(av[-1]))
            elif op == c.BRANCH:
                out += [r for b in av[1] for r in self._all_repeats(list(b))]
        return out

    def _leading(self, items: list, guards: list) -> list[str]:
        """Hazard (3): searched from every position, the run a match starts with."""
        for i, (op, av) in enumerate(items):
            if op == c.AT and av in (c.AT_BEGINNING, c.AT_BEGINNING_STRING):
                if av == c.AT_BEGINNING_STRING or not self.flags & re.MULTILINE:
                    return []  # anchored: one attempt
                guards = [*guards, ("line", None)]
            elif op in (c.ASSERT, c.ASSERT_NOT):
                guards = [*guards, (op, av)]
            elif op in (c.SUBPATTERN, c.ATOMIC_GROUP):
                return self._leading(list(av[-1]) + items[i + 1 :], guards)
            elif op == c.BRANCH:
                return [h for b in av[1] for h in self._leading(list(b) + items[i + 1 :], guards)]
            elif (body := self.run((op, av))) is not None:
                rest = items[i + 1 :]
                if all(map(self._always, rest)) or self._guarded(self.chars(body), guards):
                    return []
                return ["a leading run rescanned from each of its characters"]
            elif not self._nullable((op, av)):
                return []  # a fixed first character: a start elsewhere fails at once
        return []

    def _guarded(self, run: frozenset[str], guards: list) -> bool:
        """A start inside the run fails at once: the character before is tested first."""
        for op, av in guards:
            if op == "line" and "\n" not in run:
                return True
            if op in (c.ASSERT, c.ASSERT_NOT) and av[0] == -1 and len(av[1]) == 1:
                before = self.chars(av[1][0]) if av[1][0][0] in SINGLE else None
                if before is None:
                    continue
                if op == c.ASSERT_NOT and run <= before:
                    return True
                if op == c.ASSERT and not run & before:
                    return True
        return False


def patterns() -> dict[str, re.Pattern[str]]:
    return {
        f"{module.__name__.rsplit('.', 1)[1]}.{name}": value
        for module in MODULES
        for name, value in vars(module).items()
        if isinstance(value, re.Pattern)
    }


@pytest.mark.parametrize("name", sorted(patterns()))
def test_no_pattern_can_backtrack_superlinearly(name: str) -> None:
    assert Check(patterns()[name]).hazards() == []


@pytest.mark.parametrize("name", sorted(OLD))
def test_the_check_finds_each_old_quadratic_pattern(name: str) -> None:
    assert Check(OLD[name]).hazards() != []
    assert name not in patterns() or patterns()[name].pattern != OLD[name].pattern


def test_page_numbers_on_a_1_mb_line_of_separators() -> None:
    line = "Policy " + " -" * (MB // 2) + " x"
    assert layout._PAGE_NUMBER.sub("", line) == line
    assert layout._PAGE_NUMBER.sub("", line + " Page 3 of 9") == line


def test_headings_and_table_separators_on_1_mb_lines() -> None:
    spaces = " \t" * (MB // 2)
    assert blocks.heading(f"# a{spaces}b") == (1, f"a{spaces}b")
    assert blocks.heading(f"## Title{spaces}##{spaces}") == (2, "Title")
    assert blocks.heading("#" * MB) is None
    assert not blocks.is_table_separator(f"| --- |{spaces}x")
    assert blocks.is_table_separator("|" + " --- |" * (MB // 6))


def test_normalize_on_1_mb_lines() -> None:
    assert normalize.normalize_markdown("a" + " \u00a0" * (MB // 2) + "b\n") == (
        "a" + " \u00a0" * (MB // 2) + "b\n"
    )
    assert normalize.normalize_markdown("a" + " " * MB + "\nb") == "a\nb\n"
    assert not normalize.has_text("\n" * MB + "<!-- page 1 -->\n" + " \n" * MB)


def test_the_new_matchers_answer_as_the_old_patterns_did() -> None:
    rng = random.Random(7)

    def text(alphabet: list[str], most: int = 12) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, most)))

    for _ in range(20_000):
        line = text(["#", " ", "\t", "a", "##", "x "])
        old = OLD["blocks._HEADING"].match(line)
        assert blocks.heading(line) == (old and (len(old.group(1)), old.group(2))), line
        line = text(["|", " ", "-", "---", ":", "\t", "x", "\u2003"], 10)
        old_sep = OLD["blocks._TABLE_SEPARATOR"].match(line)
        assert blocks.is_table_separator(line) == bool(old_sep), line
        line = text(["page", "Page", " ", "1", "23", "/", "|", "-", "of", "x", "\n"], 10)
        assert layout._PAGE_NUMBER.sub("", line) == OLD["layout._PAGE_NUMBER"].sub("", line)
        line = text([" ", "\t", "\u00a0", "a", "\n"])
        old_trail = OLD["normalize._TRAILING_SPACE"].sub("", line)
        assert normalize._TRAILING_SPACE.sub("", line) == old_trail, line
        line = text(["<!--", " ", "page", "1", "-->", "\n", "x", "\t", " ocr confidence=0.9"])
        old_text = bool(OLD["normalize._PAGE_MARKERS"].sub("", line).strip())
        assert normalize.has_text(line) == old_text, line
