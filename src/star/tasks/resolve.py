"""A run's task ready to use (`resolve`): built-in and user tasks share one path. Rows are
read with named columns (`reading.read_items`), turned into Examples by a TaskSpec, split into
pool and evaluation rows, and checked; the config gets what the task decides filled in."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from star.config import RunConfig
from star.errors import BadInputError, ConfigError
from star.tasks.extract import normalised_text
from star.tasks.reading import Fields, Item, has_column, read_items
from star.tasks.registry import BUILTIN_FIELDS, TASKS, builtin_items
from star.tasks.spec import Example, TaskSpec, classification

log = logging.getLogger(__name__)

# The evaluation subset is the same for every run seed, so seeds differ only in what they label.
EVAL_SAMPLE_SEED = 0
# A task file's answers form a closed label set when they take at most this many distinct
# values, and at most a third as many values as there are rows (so free answers never do).
MAX_DETECTED_LABELS = 100
FILE_SUFFIXES = (".jsonl", ".csv")


def _read(path: Path, fields: Fields, row_ids: str | None = None) -> list[Item]:
    return read_items(path, fields, need_answer=True, row_ids=row_ids)


def _row_ids(path: Path, id_field: str | None, prefix: str) -> str | None:
    """The prefix of row-numbered ids for a labelled file with no `id` column (a data set
    exported as text and label has none), unless the user named an id column."""
    return None if id_field or has_column(path, "id") else prefix


def _examples(spec: TaskSpec, items: list[Item]) -> list[Example]:
    return [spec.example(i.id, i.prompt, i.answer, i.choices) for i in items]  # type: ignore[arg-type]


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
        train = _examples(spec, builtin_items(config.task, "train"))
        test = _examples(spec, builtin_items(config.task, "test"))
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
        row_ids = _row_ids(path, d.id_field, f"{path.stem}-")
        rows = _read(path, fields, row_ids)
        test_path = _task_file(d.test) if d.test else None
        test_ids = _row_ids(test_path, d.id_field, f"{path.stem}-test-") if test_path else None
        test_rows = _read(test_path, fields, test_ids) if test_path else []
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
        resolved |= fitted_sizes(d.pool_size, d.eval_size, len(train), len(test), path.name)
        if row_ids or test_ids:  # saved unset, so a resumed run numbers the rows again
            resolved["id_field"] = None
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


def fitted_sizes(
    pool_size: int | None, eval_size: int | None, train: int, test: int, name: str
) -> dict[str, int | None]:
    """A task file's pool and evaluation sizes as caps: a file with fewer rows than a setting
    asks for (the room study's config on a small data set) uses all it has, says so, and the
    config records the sizes used. Built-in tasks keep their sizes exact (`load_splits`)."""
    sizes = {"pool_size": pool_size, "eval_size": eval_size}
    cut = []
    for key, have, kind in (("pool_size", train, "training"), ("eval_size", test, "evaluation")):
        asked = sizes[key]
        if asked is not None and asked > have:
            cut.append(f"data.{key} {asked} is more than its {have} {kind} rows")
            sizes[key] = have
    if cut:
        log.warning("%s: %s: all are used", name, "; ".join(cut))
    return sizes


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
