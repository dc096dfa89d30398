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

_NUMBER = r"-?\d+(?:\.\d+)?"


def _gsm8k_extract(text: str) -> str | None:
    text = text.replace(",", "")
    after = re.search(r"The final answer is\s*\$?\s*(" + _NUMBER + ")", text)
    if after:
        return after.group(1)
    numbers = re.findall(_NUMBER, text)
    return numbers[-1] if numbers else None


def _gsm8k_same(pred: str, gold: str) -> bool:
    return float(pred) == float(gold)


def _boolq_extract(text: str) -> str | None:
    found = re.search(r"\b(true|false)\b", text, re.IGNORECASE)
    return found.group(1).lower() if found else None


def _obqa_extract(text: str) -> str | None:
    found = re.search(r"\b([A-D])\b", text)
    return found.group(1) if found else None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    target: Callable[[str], str]  # dataset `answer` field -> training target text
    extract: Callable[[str], str | None]  # generated or target text -> normalised answer
    same: Callable[[str, str], bool]  # (predicted, gold) normalised answers
    max_new_tokens: int  # generation length at evaluation

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
        extract=_gsm8k_extract,
        same=_gsm8k_same,
        max_new_tokens=256,
    ),
    "boolq": TaskSpec(
        "boolq",
        "yes/no questions (CC BY-SA 3.0; this copy has no passages)",
        target=lambda a: a,
        extract=_boolq_extract,
        same=str.__eq__,
        max_new_tokens=8,
    ),
    "obqa": TaskSpec(
        "obqa",
        "OpenBookQA four-way multiple choice (Apache-2.0); answers are a letter A-D",
        target=lambda a: a,
        extract=_obqa_extract,
        same=str.__eq__,
        max_new_tokens=4,
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
