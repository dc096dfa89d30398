"""Reading data files: JSONL or CSV rows, and items (id, prompt, answer, choices) under named
columns. No torch here: reading a file is quick.

Every defect is a BadInputError naming the file and line (1-based, as an editor shows it),
raised before anything is written, so a bad file never changes a project.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from star.errors import BadInputError

CHOICE_SEPARATOR = "|"  # CSV cells hold choices as "A|B|C"; JSONL holds a list


def raw_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, mapping) for each non-blank row of a .jsonl or .csv file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory, not a data file") from None
    except UnicodeDecodeError as e:
        raise BadInputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if path.suffix.lower() == ".csv":
        yield from _csv_rows(path, text)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInputError(f"{path}:{number}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise BadInputError(f"{path}:{number}: expected a JSON object")
        yield number, row


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""), strict=True)
    try:
        if reader.fieldnames is None:
            return
        for row in reader:
            if None in row:
                raise BadInputError(f"{path}:{reader.line_num}: more cells than header columns")
            if all(not (v or "").strip() for v in row.values()):
                continue
            yield reader.line_num, row
    except csv.Error as e:
        raise BadInputError(f"{path}:{reader.line_num}: invalid CSV ({e})") from None


def has_column(path: Path, key: str) -> bool:
    """Whether any row of the file has the column `key`."""
    return any(key in row for _, row in raw_rows(path))


def read_jsonl(path: Path, required: Sequence[str]) -> list[dict]:
    """Rows of a JSONL file; any defect raises BadInputError naming file and line."""
    rows = []
    for number, row in raw_rows(path):
        for key in required:
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise BadInputError(f"{path}:{number}: missing or empty field {key!r}")
        rows.append(row)
    return rows


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
    line: int = field(default=0, compare=False)  # where it was read (1-based), for messages

    def to_row(self) -> dict:
        row: dict = {"id": self.id, "prompt": self.prompt}
        if self.answer is not None:
            row["answer"] = self.answer
        if self.choices is not None:
            row["choices"] = list(self.choices)
        return row


def _text(
    path: Path, number: int, row: dict, key: str, required: bool, strip: bool = True
) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if not required:
            return None
        if key not in row:  # say what the row has: usually a column named otherwise
            found = ", ".join(repr(k) for k in row) or "none"
            raise BadInputError(
                f"{path}:{number}: no field {key!r} (this row has {found}; name the column "
                "with the matching --*-field option)"
            )
        raise BadInputError(f"{path}:{number}: missing or empty field {key!r}")
    if isinstance(value, bool):  # JSON true/false labels read as the words
        return str(value).lower()
    if not isinstance(value, str | int | float):
        raise BadInputError(f"{path}:{number}: field {key!r} must be text")
    return str(value).strip() if strip else str(value)


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


def read_items(
    path: Path, fields: Fields, need_answer: bool = False, row_ids: str | None = None
) -> list[Item]:
    """Validated items of one file; ids unique within it, answers among the choices.

    row_ids: ids are this prefix and the 0-based row number (files without an id column).
    """
    items: list[Item] = []
    seen: dict[str, int] = {}
    for number, row in raw_rows(path):
        if row_ids is not None:
            id_: str | None = f"{row_ids}{len(items):05d}"
        else:
            id_ = _text(path, number, row, fields.id, required=True)
        prompt = _text(path, number, row, fields.prompt, required=True, strip=False)
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
        items.append(Item(id_, prompt, answer, choices, number))
    if not items:
        raise BadInputError(f"{path}: no rows (an empty file)")
    return items
