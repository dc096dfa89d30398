"""A user's own data: pool, seed and evaluation files in JSONL or CSV, with named fields.

Every defect is a BadInputError naming the file and line (1-based, as an editor shows it),
raised before anything is written, so a bad file never changes a project.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from star.data import raw_rows
from star.errors import BadInputError

CHOICE_SEPARATOR = "|"  # CSV cells hold choices as "A|B|C"; JSONL holds a list


@dataclass(frozen=True)
class Fields:
    """Column names in the user's files."""

    id: str = "id"
    prompt: str = "prompt"
    answer: str = "answer"
    choices: str = "choices"


@dataclass(frozen=True)
class Item:
    id: str
    prompt: str
    answer: str | None  # a label, if the file has one
    choices: tuple[str, ...] | None  # the allowed labels of a multiple-choice item

    def to_row(self) -> dict:
        row: dict = {"id": self.id, "prompt": self.prompt}
        if self.answer is not None:
            row["answer"] = self.answer
        if self.choices is not None:
            row["choices"] = list(self.choices)
        return row


def _text(path: Path, number: int, row: dict, key: str, required: bool) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise BadInputError(f"{path}:{number}: missing or empty field {key!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadInputError(f"{path}:{number}: field {key!r} must be text")
    return str(value).strip() if key != "prompt" else str(value)


def _choices(path: Path, number: int, row: dict, key: str) -> tuple[str, ...] | None:
    value = row.get(key)
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = value.split(CHOICE_SEPARATOR)
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        raise BadInputError(f"{path}:{number}: field {key!r} must be a list of non-empty texts")
    choices = tuple(c.strip() for c in value)
    if len(set(choices)) != len(choices) or len(choices) < 2:
        raise BadInputError(f"{path}:{number}: field {key!r} needs two or more distinct choices")
    return choices


def read_items(path: Path, fields: Fields, need_answer: bool = False) -> list[Item]:
    """Validated items of one file; ids unique within it, answers among the choices."""
    items: list[Item] = []
    seen: dict[str, int] = {}
    for number, row in raw_rows(path):
        id_ = _text(path, number, row, fields.id, required=True)
        prompt = _text(path, number, row, fields.prompt, required=True)
        answer = _text(path, number, row, fields.answer, required=need_answer)
        choices = _choices(path, number, row, fields.choices)
        assert id_ is not None and prompt is not None
        if id_ in seen:
            raise BadInputError(
                f"{path}:{number}: duplicate id {id_!r} (first on line {seen[id_]})"
            )
        if answer is not None and choices is not None and answer not in choices:
            raise BadInputError(
                f"{path}:{number}: answer {answer!r} is not one of the choices {list(choices)}"
            )
        seen[id_] = number
        items.append(Item(id_, prompt, answer, choices))
    if not items:
        raise BadInputError(f"{path}: no rows (an empty file)")
    return items
