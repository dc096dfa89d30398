"""The built-in tasks: the paper's (GSM8K, BoolQ, OpenBookQA), star's `mix`, and four text
classification sets, each a TaskSpec over its shipped files (tasks/data, with SOURCE.md).
The paper tasks' prompts, targets and extraction follow the authors' code (method.md §2)."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from star.errors import ConfigError
from star.tasks.extract import first_match, gsm8k_locate, gsm8k_same
from star.tasks.reading import Fields, Item, read_items
from star.tasks.spec import Example, TaskSpec, classification

INSTRUCTION = (
    "\nAnswer the above question. First think step by step and then answer the final number.\n"
)


def _words(label: str) -> str:
    """banking77's verbaliser: `card_arrival` is written `card arrival` (natural text, and
    about half the tokens)."""
    return label.replace("_", " ")


TREC_LABELS = ("abbreviation", "description", "entity", "human", "location", "numeric")
AG_NEWS_LABELS = ("World", "Sports", "Business", "Sci/Tech")
SST2_LABELS = ("negative", "positive")


def _banking77_labels() -> tuple[str, ...]:
    """The 77 intents, read from the shipped SOURCE.md's label counts (train split)."""
    text = (data_file("banking77", "train").parent / "SOURCE.md").read_text(encoding="utf-8")
    (counts,) = re.findall(r"^- train: (.*)$", text, re.MULTILINE)
    return tuple(sorted(part.rsplit("=", 1)[0] for part in counts.split(", ")))


TASKS: dict[str, TaskSpec] = {
    "gsm8k": TaskSpec(
        "gsm8k",
        "grade-school maths word problems (MIT); answers are worked solutions",
        "{prompt}" + INSTRUCTION,
        target=lambda a: a.replace("####", "The final answer is"),
        locate=gsm8k_locate,
        same=gsm8k_same,
        max_new_tokens=256,
    ),
    "boolq": TaskSpec(
        "boolq",
        "yes/no questions (CC BY-SA 3.0; this copy has no passages)",
        "{prompt}" + INSTRUCTION,
        target=lambda a: a,
        locate=first_match(re.compile(r"\b(true|false)\b", re.IGNORECASE), str.lower),
        same=str.__eq__,
        max_new_tokens=8,
        labels=("true", "false"),
        eval_mode="options",
    ),
    "obqa": TaskSpec(
        "obqa",
        "OpenBookQA four-way multiple choice (Apache-2.0); answers are a letter A-D",
        "{prompt}" + INSTRUCTION,
        target=lambda a: a,
        locate=first_match(re.compile(r"\b([A-D])\b"), str),
        same=str.__eq__,
        max_new_tokens=4,
        labels=("A", "B", "C", "D"),
        eval_mode="options",
    ),
    "mix": TaskSpec(
        "mix",
        "sanity benchmark, not from the paper: five kinds of short questions "
        "(scripts/make_mix.py); the answer is the first word or number generated",
        "{prompt}" + INSTRUCTION,
        target=lambda a: a,
        locate=first_match(re.compile(r"\b([A-Za-z]+|\d+)\b"), str.lower),
        same=str.__eq__,
        max_new_tokens=6,
    ),
    "trec": classification(
        "trec",
        "TREC-6 question types (research release)",
        TREC_LABELS,
        "{prompt}\nAnswer type ({labels}):",
    ),
    "ag_news": classification(
        "ag_news",
        "AG News topics (research, non-commercial)",
        AG_NEWS_LABELS,
        "Article: {prompt}\nTopic (one of: {labels}):",
    ),
    "sst2": classification(
        "sst2",
        "SST-2 movie-review sentence sentiment (research release)",
        SST2_LABELS,
        "Review: {prompt}\nSentiment (negative or positive):",
    ),
}


def data_file(task: str, split: str) -> Path:
    return Path(str(files("star") / "tasks" / "data" / task / f"{split}.jsonl"))


TASKS["banking77"] = classification(
    "banking77",
    "BANKING77 customer-service intents (CC BY 4.0)",
    _banking77_labels(),
    "Customer message: {prompt}\nIntent:",
    _words,
)

# Columns of the shipped files; the paper tasks have none for ids (ids are task-split-row).
_PAPER_FIELDS = Fields(id="", prompt="question", answer="answer")
_TEXT_FIELDS = Fields(id="id", prompt="text", answer="label")
BUILTIN_FIELDS = {
    name: _TEXT_FIELDS if name in ("trec", "ag_news", "sst2", "banking77") else _PAPER_FIELDS
    for name in TASKS
}


def builtin_items(task: str, split: str) -> list[Item]:
    """Every row of a shipped split; ids are the file's own, or `task-split-row` (paper tasks)."""
    fields = BUILTIN_FIELDS[task]
    row_ids = None if fields.id else f"{task}-{split}-"
    return read_items(data_file(task, split), fields, need_answer=True, row_ids=row_ids)


def load_split(task: str, split: str) -> list[Example]:
    """Every row of a shipped split as Examples."""
    spec = TASKS[task]
    return [spec.example(i.id, i.prompt, i.answer, i.choices) for i in builtin_items(task, split)]  # type: ignore[arg-type]


def check_task(name: str) -> None:
    """A built-in task's name or a labelled .jsonl/.csv file, else a one-line error."""
    if name not in TASKS and not name.lower().endswith((".jsonl", ".csv")):
        raise ConfigError(
            f"unknown task {name!r}; choose from: {', '.join(TASKS)}, or give a "
            "labelled .jsonl/.csv file"
        )
