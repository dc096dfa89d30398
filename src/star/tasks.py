"""The paper's tasks as data: prompt, target, answer extraction, and their shipped splits.

Prompts, targets and extraction follow the authors' code (method.md §2).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from star.data import Example, read_jsonl
from star.errors import ConfigError

INSTRUCTION = (
    "\nAnswer the above question. First think step by step and then answer the final number.\n"
)
# The evaluation subset is the same for every run seed, so seeds differ only in what they label.
EVAL_SAMPLE_SEED = 0

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_FINAL = re.compile(r"The final answer is\s*\$?\s*")


@dataclass(frozen=True)
class Found:
    """An extracted answer and where it sits in the text (for its tokens' confidence)."""

    answer: str
    start: int
    end: int


def _gsm8k_locate(text: str) -> Found | None:
    """The first number after "The final answer is", else the last number; commas dropped."""
    final = _FINAL.search(text)
    match = _NUMBER.match(text, final.end()) if final else None
    if match is None:
        numbers = list(_NUMBER.finditer(text))
        match = numbers[-1] if numbers else None
    if match is None:
        return None
    return Found(match.group().replace(",", ""), match.start(), match.end())


def _gsm8k_same(pred: str, gold: str) -> bool:
    try:
        return float(pred) == float(gold)
    except ValueError:
        return False


def _first(pattern: re.Pattern, normalise: Callable[[str], str]) -> Callable[[str], Found | None]:
    """Locator of the first match of the pattern's group 1."""

    def locate(text: str) -> Found | None:
        match = pattern.search(text)
        return Found(normalise(match.group(1)), *match.span(1)) if match else None

    return locate


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    target: Callable[[str], str]  # dataset `answer` field -> training target text
    locate: Callable[[str], Found | None]  # generated or target text -> normalised answer
    same: Callable[[str, str], bool]  # (predicted, gold) normalised answers
    max_new_tokens: int  # generation length at evaluation
    labels: tuple[str, ...] = ()  # a closed label set: confidence renormalises over it

    def extract(self, text: str) -> str | None:
        found = self.locate(text)
        return found.answer if found else None

    def example(self, id: str, question: str, answer: str) -> Example:
        target = self.target(answer)
        gold = self.extract(target)
        if gold is None:
            raise ConfigError(f"{self.name}: no answer can be extracted from target {target!r}")
        return Example(id=id, prompt=question + INSTRUCTION, target=target, answer=gold)

    def grade(self, generated: str, gold: str) -> tuple[str | None, bool]:
        """(extracted answer or None, whether it matches the gold answer)."""
        pred = self.extract(generated)
        return pred, pred is not None and self.same(pred, gold)


TASKS: dict[str, TaskSpec] = {
    "gsm8k": TaskSpec(
        "gsm8k",
        "grade-school maths word problems (MIT); answers are worked solutions",
        target=lambda a: a.replace("####", "The final answer is"),
        locate=_gsm8k_locate,
        same=_gsm8k_same,
        max_new_tokens=256,
    ),
    "boolq": TaskSpec(
        "boolq",
        "yes/no questions (CC BY-SA 3.0; this copy has no passages)",
        target=lambda a: a,
        locate=_first(re.compile(r"\b(true|false)\b", re.IGNORECASE), str.lower),
        same=str.__eq__,
        max_new_tokens=8,
        labels=("true", "false"),
    ),
    "obqa": TaskSpec(
        "obqa",
        "OpenBookQA four-way multiple choice (Apache-2.0); answers are a letter A-D",
        target=lambda a: a,
        locate=_first(re.compile(r"\b([A-D])\b"), str),
        same=str.__eq__,
        max_new_tokens=4,
        labels=("A", "B", "C", "D"),
    ),
    "mix": TaskSpec(
        "mix",
        "sanity benchmark, not from the paper: five kinds of short questions "
        "(scripts/make_mix.py); the answer is the first word or number generated",
        target=lambda a: a,
        locate=_first(re.compile(r"\b([A-Za-z]+|\d+)\b"), str.lower),
        same=str.__eq__,
        max_new_tokens=6,
    ),
}


def data_file(task: str, split: str) -> Path:
    return Path(str(files("star") / "data" / task / f"{split}.jsonl"))


def load_split(task: str, split: str) -> list[Example]:
    """Every row of a shipped split; ids are `task-split-line` and never change."""
    spec = TASKS[task]
    path = data_file(task, split)
    rows = read_jsonl(path, required=("question", "answer"))
    return [
        spec.example(f"{task}-{split}-{n:05d}", row["question"], row["answer"])
        for n, row in enumerate(rows)
    ]


def sample(examples: list[Example], size: int | None, seed: int) -> list[Example]:
    """A seeded subset (all when size is None), kept in file order."""
    if size is None or size >= len(examples):
        return list(examples)
    keep = set(random.Random(seed).sample(range(len(examples)), size))
    return [e for i, e in enumerate(examples) if i in keep]
