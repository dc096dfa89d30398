"""Examples: reading JSONL/CSV safely, tokenising prompt + answer, and padding-light batching."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from star.errors import BadInputError

IGNORE = -100  # label of positions that carry no loss and no score (prompt, padding)


@dataclass(frozen=True)
class Example:
    id: str
    prompt: str
    target: str  # the text a labeller gives and training teaches
    answer: str  # the gold answer as the task's extractor normalises it
    choices: tuple[str, ...] | None = None  # this row's own label set (multiple choice)


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
class Encoded:
    prompt_ids: list[int]
    target_ids: list[int]

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.target_ids)


def encode(
    examples: Iterable[Example], tokenizer, max_prompt_tokens: int, max_target_tokens: int
) -> list[Encoded]:
    """Prompt and answer tokenised apart, so the answer positions are known exactly.

    Prompts are cut from the left: the tasks put their answer cue ("The correct answer is")
    at the end.
    """
    examples = list(examples)
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    targets = tokenizer([e.target for e in examples], add_special_tokens=False)["input_ids"]
    return [
        Encoded(p[-max_prompt_tokens:], t[:max_target_tokens])
        for p, t in zip(prompts, targets, strict=True)
    ]


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # (B, T) right-padded prompt + answer
    attention_mask: torch.Tensor  # (B, T) 1 on real tokens
    labels: torch.Tensor  # (B, T) answer token ids, IGNORE elsewhere

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels)))


def collate(items: Sequence[Encoded], pad_id: int, padding_side: str = "right") -> Batch:
    """Pad to the longest row. Right padding is the default (causal attention never sees the
    pads); left padding gives the same scores because positions come from the mask."""
    width = max(len(x) for x in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for row, x in enumerate(items):
        n = len(x)
        start = width - n if padding_side == "left" else 0
        real = slice(start, start + n)
        input_ids[row, real] = torch.tensor(x.prompt_ids + x.target_ids)
        attention[row, real] = 1
        labels[row, start + len(x.prompt_ids) : start + n] = torch.tensor(x.target_ids)
    return Batch(input_ids, attention, labels)


def token_budget_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices grouped by length, rows × longest row ≤ budget: little padding, bounded memory.

    A row longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """Random batches of similar length (HF's group_by_length idea): shuffle, sort within
    mega-batches of 16 batches, chunk, shuffle the chunks. Less padding, still random."""
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    mega = 16 * batch_size
    batches = []
    for start in range(0, len(perm), mega):
        group = sorted(perm[start : start + mega], key=lambda i: lengths[i])
        batches += [group[j : j + batch_size] for j in range(0, len(group), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]
