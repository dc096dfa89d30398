"""Batched greedy generation that also records what confidence needs, step by step.

Recording happens inside generation (a logits processor), so confidences cost no second
forward pass: per step, the log-probability of the greedy token and the logits of the task's
label tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import torch
from tqdm import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from star.data import Encoded, collate


@dataclass(frozen=True)
class Generated:
    token_ids: list[int]  # new tokens, up to and excluding EOS
    text: str  # their decoded text (special tokens skipped)
    offsets: list[int]  # character offset in `text` where each token starts
    chosen_logp: torch.Tensor  # (T,) log p of each generated (greedy) token
    watched_logits: torch.Tensor  # (T, W) logits of the watched token ids at each step

    def tokens_at(self, start: int, end: int) -> list[int]:
        """Indices of the tokens overlapping text[start:end]."""
        bounds = self.offsets[1:] + [len(self.text)]
        return [
            i
            for i, (a, b) in enumerate(zip(self.offsets, bounds, strict=True))
            if a < end and b > start
        ]


class _Recorder(LogitsProcessor):
    def __init__(self, watched: torch.Tensor):
        self.watched = watched  # (W,)
        self.chosen: list[torch.Tensor] = []  # per step (B,)
        self.logits: list[torch.Tensor] = []  # per step (B, W)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(scores.float(), dim=-1)  # (B, V)
        self.chosen.append(logp.max(-1).values)  # greedy picks the arg-max
        self.logits.append(scores[:, self.watched].float())
        return scores


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: list[Encoded],
    max_new_tokens: int,
    batch_size: int,
    watched: list[int] | None = None,
    desc: str = "generating",
) -> list[Generated]:
    """Greedy decoding, prompts sorted by length and left-padded; results in input order.

    Sorting keeps padding small; a batch stops as soon as all its rows have emitted EOS.
    """
    on = next(model.parameters()).device
    watch = torch.tensor(watched or [], dtype=torch.long, device=on)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].prompt_ids))
    results: list[Generated | None] = [None] * len(prompts)
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=None, leave=False):
        index = order[start : start + batch_size]
        # left padding so every row's next token is at the last position; collate does it
        batch = collate(
            [Encoded(prompts[i].prompt_ids, []) for i in index],
            tokenizer.pad_token_id,
            padding_side="left",
        )
        width = batch.input_ids.shape[1]
        recorder = _Recorder(watch)
        out = model.generate(
            input_ids=batch.input_ids.to(on),
            attention_mask=batch.attention_mask.to(on),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            logits_processor=LogitsProcessorList([recorder]),
        )[:, width:].cpu()  # (b, steps)
        chosen = torch.stack(recorder.chosen, 1).cpu()  # (b, steps)
        logits = torch.stack(recorder.logits, 1).cpu()  # (b, steps, W)
        for row, i in enumerate(index):
            results[i] = _unpack(tokenizer, out[row], chosen[row], logits[row])
    return results  # type: ignore[return-value]


def _unpack(tokenizer, new: torch.Tensor, chosen: torch.Tensor, logits: torch.Tensor) -> Generated:
    """One row: cut at the first EOS, decode each token once to know where it sits in the text."""
    ended = (new == tokenizer.eos_token_id).nonzero()
    length = int(ended[0]) if len(ended) else len(new)
    token_ids = new[:length].tolist()
    pieces = tokenizer.batch_decode([[t] for t in token_ids], skip_special_tokens=True)
    offsets = list(accumulate((len(p) for p in pieces[:-1]), initial=0)) if pieces else []
    return Generated(token_ids, "".join(pieces), offsets, chosen[:length], logits[:length])
