"""Token ids of prompt + answer, and padding-light batches of them for the forward passes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from star.tasks.spec import Example

log = logging.getLogger(__name__)

IGNORE = -100  # label of positions that carry no loss and no score (prompt, padding)


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
    _say_cut(prompts, max_prompt_tokens, "prompt", "the end", "--max-prompt-tokens")
    _say_cut(targets, max_target_tokens, "answer", "the start", "--max-target-tokens")
    return [
        Encoded(p[-max_prompt_tokens:], t[:max_target_tokens])
        for p, t in zip(prompts, targets, strict=True)
    ]


def _say_cut(ids: list[list[int]], limit: int, what: str, kept: str, option: str) -> None:
    """A warning when texts lose tokens: a long document cut to its end can lose what decides
    its label, and nothing else would tell the user."""
    cut = [len(i) for i in ids if len(i) > limit]
    if cut:
        log.warning(
            "%d of %d %ss are longer than %d tokens (longest %d) and keep only %s: "
            "raise %s to read them whole",
            len(cut),
            len(ids),
            what,
            limit,
            max(cut),
            kept,
            option,
        )


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
    lengths: Sequence[int],
    batch_size: int,
    generator: torch.Generator,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """Random batches of similar length (HF's group_by_length idea): shuffle, sort within
    mega-batches of 16 × batch_size rows, chunk, shuffle the chunks. Less padding, still random.

    Chunks hold `batch_size` rows, or with `max_tokens` as many rows as fit that many tokens
    after padding (rows × the longest; a longer row alone): the same memory every step.
    """
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    mega = 16 * batch_size
    batches = []
    for start in range(0, len(perm), mega):
        group = sorted(perm[start : start + mega], key=lambda i: lengths[i])
        if max_tokens is None:
            batches += [group[j : j + batch_size] for j in range(0, len(group), batch_size)]
        else:
            batches += [
                [group[j] for j in b] for b in _fits([lengths[i] for i in group], max_tokens)
            ]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def _fits(ascending: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive positions of ascending lengths, cut where rows × longest would pass budget."""
    out: list[list[int]] = [[]]
    for j, n in enumerate(ascending):
        if out[-1] and (len(out[-1]) + 1) * n > budget:
            out.append([])
        out[-1].append(j)
    return [b for b in out if b]
