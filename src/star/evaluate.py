"""Greedy generation and answer extraction on the evaluation split (method.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from star.data import Encoded, Example
from star.tasks import TaskSpec


@torch.inference_mode()
def generate(
    model, tokenizer, prompts: list[Encoded], max_new_tokens: int, batch_size: int
) -> list[str]:
    """Batched greedy decoding, prompts sorted by length and left-padded, in input order out.

    Sorting keeps padding small; a batch stops as soon as all its rows have emitted EOS.
    """
    on = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].prompt_ids))
    texts: list[str] = [""] * len(prompts)
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc="evaluating", unit="batch", disable=None, leave=False):
        index = order[start : start + batch_size]
        width = max(len(prompts[i].prompt_ids) for i in index)
        ids = torch.full((len(index), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            p = prompts[i].prompt_ids
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        out = model.generate(
            input_ids=ids.to(on),
            attention_mask=mask.to(on),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )  # (b, width + new)
        decoded = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        for i, text in zip(index, decoded, strict=True):
            texts[i] = text
    return texts


@dataclass(frozen=True)
class Prediction:
    id: str
    output: str
    predicted: str | None
    correct: bool
    answer: str


def evaluate(
    model,
    tokenizer,
    spec: TaskSpec,
    examples: list[Example],
    prompts: list[Encoded],
    batch_size: int,
) -> list[Prediction]:
    outputs = generate(model, tokenizer, prompts, spec.max_new_tokens, batch_size)
    return [
        Prediction(e.id, out, *spec.grade(out, e.answer), answer=e.answer)
        for e, out in zip(examples, outputs, strict=True)
    ]


def accuracy(predictions: list[Prediction]) -> float:
    return sum(p.correct for p in predictions) / len(predictions) if predictions else 0.0
