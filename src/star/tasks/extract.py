"""Reading an answer back out of text: a task's locator finds the answer (and where it sits,
for its tokens' confidence), normalised as the task compares answers."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_FINAL = re.compile(r"The final answer is\s*\$?\s*")


@dataclass(frozen=True)
class Found:
    """An extracted answer and where it sits in the text (for its tokens' confidence)."""

    answer: str
    start: int
    end: int


def gsm8k_locate(text: str) -> Found | None:
    """The first number after "The final answer is", else the last number; commas dropped."""
    final = _FINAL.search(text)
    match = _NUMBER.match(text, final.end()) if final else None
    if match is None:
        numbers = list(_NUMBER.finditer(text))
        match = numbers[-1] if numbers else None
    if match is None:
        return None
    return Found(match.group().replace(",", ""), match.start(), match.end())


def gsm8k_same(pred: str, gold: str) -> bool:
    try:
        return float(pred) == float(gold)
    except ValueError:
        return False


def first_match(
    pattern: re.Pattern, normalise: Callable[[str], str]
) -> Callable[[str], Found | None]:
    """Locator of the first match of the pattern's group 1."""

    def locate(text: str) -> Found | None:
        match = pattern.search(text)
        return Found(normalise(match.group(1)), *match.span(1)) if match else None

    return locate


@functools.cache
def label_locator(
    labels: tuple[str, ...], shown: tuple[str, ...] | None = None
) -> Callable[[str], Found | None]:
    """The first label standing alone in the text (not inside a longer word), longest label
    first at one position, case-insensitive unless two labels differ only in case; returned
    in the label set's own spelling. shown: how each label is written in model text (its
    verbaliser), if not as itself."""
    shown = shown or labels
    exact = len({x.casefold() for x in shown}) < len(shown)
    key = (lambda x: x) if exact else str.casefold
    canonical = {key(x): label for x, label in zip(shown, labels, strict=True)}
    alternatives = "|".join(re.escape(x) for x in sorted(shown, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)({alternatives})(?!\w)", 0 if exact else re.IGNORECASE)
    return first_match(pattern, lambda s: canonical[key(s)])


def first_line(text: str) -> Found | None:
    """A free answer: the first non-blank line, whitespace collapsed."""
    match = re.search(r"\S[^\n]*", text)
    if match is None:
        return None
    return Found(" ".join(match.group().split()), match.start(), match.end())


def same_free(pred: str, gold: str) -> bool:
    return pred.casefold() == gold.casefold()


def normalised_text(text: str) -> str:
    """Whitespace collapsed, case folded: what counts as the same text (an evaluation row
    against the pool, a generated answer against a label)."""
    return " ".join(text.split()).casefold()
