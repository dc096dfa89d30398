"""Tasks as data: a labelled file (or a shipped pair of splits), how a row becomes a prompt and a
training target, how an answer is read back, and the closed label set if there is one.

Built-in and user tasks share one path (`resolve`): rows are read by `pool.read_items` with
named columns, turned into Examples by a TaskSpec, split into pool and evaluation rows, and
checked. The paper tasks' prompts, targets and extraction follow the authors' code (method.md
§2); the text-classification tasks and user files use a prompt template and a label set.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from star.config import RunConfig
from star.data import Example
from star.errors import BadInputError, ConfigError
from star.pool import Fields, Item, read_items

INSTRUCTION = (
    "\nAnswer the above question. First think step by step and then answer the final number.\n"
)
# The evaluation subset is the same for every run seed, so seeds differ only in what they label.
EVAL_SAMPLE_SEED = 0
# A task file's answers form a closed label set when they take at most this many distinct
# values, and at most a third as many values as there are rows (so free answers never do).
MAX_DETECTED_LABELS = 100
# A task file's labels are listed in its default prompt when there are at most this many.
MAX_LISTED_LABELS = 20
FILE_SUFFIXES = (".jsonl", ".csv")

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
    return _first(pattern, lambda s: canonical[key(s)])


def _first_line(text: str) -> Found | None:
    """A free answer: the first non-blank line, whitespace collapsed."""
    match = re.search(r"\S[^\n]*", text)
    if match is None:
        return None
    return Found(" ".join(match.group().split()), match.start(), match.end())


def _same_free(pred: str, gold: str) -> bool:
    return pred.casefold() == gold.casefold()


def _space(answer: str) -> str:
    """Labels follow an 'Answer:'-style cue after a space, as in running text."""
    return " " + answer


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    template: str  # prompt: the row's text as {prompt}, the label set as {labels}
    target: Callable[[str], str]  # dataset answer -> training target text
    locate: Callable[[str], Found | None]  # generated or target text -> normalised answer
    same: Callable[[str, str], bool]  # (predicted, gold) normalised answers
    max_new_tokens: int  # generation length at evaluation
    labels: tuple[str, ...] = ()  # a closed label set: confidence renormalises over it
    eval_mode: str = "generate"  # default evaluation: "options" (label likelihood) or "generate"

    def prompt(self, text: str) -> str:
        shown = (self.target(label).strip() for label in self.labels)
        return self.template.format(prompt=text, labels=", ".join(shown))

    def extract(self, text: str, choices: tuple[str, ...] | None = None) -> str | None:
        found = (label_locator(choices) if choices else self.locate)(text)
        return found.answer if found else None

    def example(
        self, id: str, question: str, answer: str, choices: tuple[str, ...] | None = None
    ) -> Example:
        target = self.target(answer)
        gold = self.extract(target, choices)
        if gold is None:
            raise ConfigError(f"{self.name}: no answer can be extracted from target {target!r}")
        return Example(id, self.prompt(question), target, gold, choices)

    def grade(
        self, generated: str, gold: str, choices: tuple[str, ...] | None = None
    ) -> tuple[str | None, bool]:
        """(extracted answer or None, whether it matches the gold answer)."""
        pred = self.extract(generated, choices)
        return pred, pred is not None and self.same(pred, gold)


def _words(label: str) -> str:
    """banking77's verbaliser: `card_arrival` is written `card arrival` (natural text, and
    about half the tokens)."""
    return label.replace("_", " ")


def classification(
    name: str,
    description: str,
    labels: tuple[str, ...],
    template: str | None = None,
    verbalise: Callable[[str], str] | None = None,
) -> TaskSpec:
    """A closed-label task (or, with no labels, a free-answer one) over a labelled file: the
    target is the label (as `verbalise` writes it) after a space, evaluated by option
    likelihood by default."""
    if template is None:
        listed = labels and len(labels) <= MAX_LISTED_LABELS
        template = (
            "{prompt}\nAnswer with one of: {labels}.\nAnswer:" if listed else ("{prompt}\nAnswer:")
        )
    if not labels:
        return TaskSpec(name, description, template, _space, _first_line, _same_free, 64)
    if verbalise is None:
        return TaskSpec(
            name,
            description,
            template,
            _space,
            label_locator(labels),
            str.__eq__,
            32,
            labels,
            "options",
        )
    spoken = {label: verbalise(label) for label in labels}
    return TaskSpec(
        name,
        description,
        template,
        lambda answer: _space(spoken.get(answer, answer)),
        label_locator(labels, tuple(spoken.values())),
        str.__eq__,
        32,  # generation stops at end-of-sequence; the longest label fits
        labels,
        "options",
    )


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
        locate=_gsm8k_locate,
        same=_gsm8k_same,
        max_new_tokens=256,
    ),
    "boolq": TaskSpec(
        "boolq",
        "yes/no questions (CC BY-SA 3.0; this copy has no passages)",
        "{prompt}" + INSTRUCTION,
        target=lambda a: a,
        locate=_first(re.compile(r"\b(true|false)\b", re.IGNORECASE), str.lower),
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
        locate=_first(re.compile(r"\b([A-D])\b"), str),
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
        locate=_first(re.compile(r"\b([A-Za-z]+|\d+)\b"), str.lower),
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
    return Path(str(files("star") / "data" / task / f"{split}.jsonl"))


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


def _read(path: Path, fields: Fields, row_ids: str | None = None) -> list[Item]:
    return read_items(path, fields, need_answer=True, row_ids=row_ids)


def _examples(spec: TaskSpec, items: list[Item]) -> list[Example]:
    return [spec.example(i.id, i.prompt, i.answer, i.choices) for i in items]  # type: ignore[arg-type]


def _builtin_items(task: str, split: str) -> list[Item]:
    fields = BUILTIN_FIELDS[task]
    row_ids = None if fields.id else f"{task}-{split}-"
    return _read(data_file(task, split), fields, row_ids)


def load_split(task: str, split: str) -> list[Example]:
    """Every row of a shipped split; ids are the file's own, or `task-split-row` (paper tasks)."""
    return _examples(TASKS[task], _builtin_items(task, split))


def sample(examples: list[Example], size: int | None, seed: int) -> list[Example]:
    """A seeded subset (all when size is None), kept in file order."""
    if size is None or size >= len(examples):
        return list(examples)
    keep = set(random.Random(seed).sample(range(len(examples)), size))
    return [e for i, e in enumerate(examples) if i in keep]


@dataclass(frozen=True)
class Task:
    """A task ready to run: its spec, the rows a pool is drawn from, and the evaluation rows."""

    spec: TaskSpec
    train: list[Example]
    eval: list[Example]


def normalised_text(text: str) -> str:
    """Whitespace collapsed, case folded: what counts as the same text (an evaluation row
    against the pool, a generated answer against a label)."""
    return " ".join(text.split()).casefold()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def detect_labels(items: list[Item]) -> tuple[str, ...]:
    """The closed label set of a task file's answers, or () for free answers (see
    MAX_DETECTED_LABELS); sorted, so the order never depends on the file's."""
    values = {i.answer for i in items}
    if len(values) > MAX_DETECTED_LABELS or 3 * len(values) > len(items):
        return ()
    return tuple(sorted(values))  # type: ignore[arg-type]


def holdout_split(
    items: list[Item], fraction: float, seed: int = EVAL_SAMPLE_SEED
) -> tuple[list[Item], list[Item]]:
    """(pool, evaluation): a seeded `fraction` of the distinct prompt texts is held out, with
    every row of each, so no evaluation text is also in the pool. File order is kept."""
    texts = sorted({normalised_text(i.prompt) for i in items})
    n = min(len(texts) - 1, max(1, round(fraction * len(texts))))
    held = set(random.Random(seed).sample(texts, n)) if n > 0 else set()
    return (
        [i for i in items if normalised_text(i.prompt) not in held],
        [i for i in items if normalised_text(i.prompt) in held],
    )


def _check_disjoint(pool: list[Item], pool_file: Path, test: list[Item], test_file: Path) -> None:
    ids = {i.id: i.line for i in pool}
    texts = {normalised_text(i.prompt): i.line for i in pool}
    for item in test:
        if item.id in ids:
            raise BadInputError(
                f"{test_file}:{item.line}: id {item.id!r} is also in {pool_file} "
                f"(line {ids[item.id]})"
            )
        line = texts.get(normalised_text(item.prompt))
        if line is not None:
            raise BadInputError(
                f"{test_file}:{item.line}: this text is also in {pool_file} (line {line}); "
                "evaluation rows must be held out"
            )


def _check_labels(items: list[Item], path: Path, labels: tuple[str, ...]) -> None:
    for item in items:
        allowed = item.choices or labels
        if allowed and item.answer not in allowed:
            raise BadInputError(
                f"{path}:{item.line}: answer {item.answer!r} is not one of the labels "
                f"{list(allowed)}"
            )


def _task_file(value: str) -> Path:
    path = Path(value).expanduser()
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise ConfigError(
            f"unknown task {value!r}; choose a built-in task ({', '.join(TASKS)}) or a labelled "
            ".jsonl/.csv file"
        )
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    return path.resolve()


def _checked_sha(path: Path, saved: str | None) -> str:
    now = sha256(path)
    if saved is not None and saved != now:
        raise BadInputError(
            f"{path}: changed since this run started (sha256 {saved[:12]}…, now {now[:12]}…); "
            "restore it or start a new --out"
        )
    return now


def resolve(config: RunConfig) -> tuple[RunConfig, Task]:
    """Read and check the task's rows; returns the config with everything the task decides
    filled in (columns, labels, evaluation mode, file paths and checksums) and the task.

    Any defect of a file is a BadInputError naming file and line, before anything is written.
    """
    d = config.data
    if config.task in TASKS:
        spec, fields = TASKS[config.task], BUILTIN_FIELDS[config.task]
        for name, value in (("test", d.test), ("labels", d.labels)):
            if value:
                raise ConfigError(f"data.{name} is for a task file, not built-in {config.task}")
        for name in ("id", "prompt", "answer", "choices"):
            given = getattr(d, f"{name}_field")
            if given is not None and given != (getattr(fields, name) or None):
                raise ConfigError(
                    f"data.{name}_field is {given!r}, but built-in {config.task} has its own "
                    "columns; it is for a task file"
                )
        if d.template is not None:
            spec = dataclasses.replace(spec, template=d.template)
        _check_template(spec)
        train = _examples(spec, _builtin_items(config.task, "train"))
        test = _examples(spec, _builtin_items(config.task, "test"))
        resolved: dict = {f"{n}_field": getattr(fields, n) or None for n in ("id", "prompt")}
        resolved |= {"answer_field": fields.answer, "choices_field": None}
        sums: dict = {}
    else:
        path = _task_file(config.task)
        fields = Fields(
            d.id_field or "id",
            d.prompt_field or "prompt",
            d.answer_field or "answer",
            d.choices_field or "choices",
        )
        rows = _read(path, fields)
        test_path = _task_file(d.test) if d.test else None
        test_rows = _read(test_path, fields) if test_path else []
        labels = d.labels or detect_labels(rows + test_rows)
        _check_labels(rows, path, labels)
        _check_labels(test_rows, test_path or path, labels)
        if test_path:
            _check_disjoint(rows, path, test_rows, test_path)
        else:
            rows, test_rows = holdout_split(rows, d.holdout)
        spec = classification(path.name, f"labelled file {path}", labels, d.template)
        _check_template(spec)
        train, test = _examples(spec, rows), _examples(spec, test_rows)
        resolved = {f"{n}_field": getattr(fields, n) for n in ("id", "prompt", "answer", "choices")}
        resolved |= {"labels": labels}
        sums = {"task_sha256": _checked_sha(path, d.task_sha256)}
        if test_path:
            sums |= {"test": str(test_path), "test_sha256": _checked_sha(test_path, d.test_sha256)}
        config = dataclasses.replace(config, task=str(path))
    has_options = bool(spec.labels) or any(e.choices for e in train + test)
    mode = config.inference.eval_mode or ("options" if has_options else "generate")
    if mode == "options" and not has_options:
        raise ConfigError(
            f"eval_mode options needs a closed label set, and {spec.name} has free answers: "
            "give --labels (task files) or use --eval-mode generate"
        )
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(d, template=spec.template, **resolved, **sums),
        inference=dataclasses.replace(config.inference, eval_mode=mode),
    )
    return config, Task(spec, train, test)


def _check_template(spec: TaskSpec) -> None:
    try:
        spec.prompt("text")
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"data.template {spec.template!r} is not a valid template: use {{prompt}} for the "
            f"row's text and {{labels}} for the label set ({e})"
        ) from None
    if "{prompt}" not in spec.template:
        raise ConfigError(f"data.template {spec.template!r} must contain {{prompt}}")
