"""Batched greedy generation that also records what confidence needs, step by step.

Recording happens inside the decoding loop, so confidences cost no second forward pass: per
step, the log-probability of the greedy token and the logits of the task's label tokens.
The loop is ours rather than HF `generate` because finished rows leave the batch (their
KV cache rows are dropped), so short answers never wait for the longest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import torch
from tqdm import tqdm
from transformers import DynamicCache

from star.engine.batching import Encoded, collate, token_budget_batches


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


def answer_length(longest: int | None, cap: int) -> int:
    """New tokens for a label-free answer: the longest known answer (tokens) and half as much
    again, at most `cap`; `cap` while none is known. A class name needs a few tokens, not the
    64 of a base model rambling on; free answers keep a margin over the longest one seen."""
    if longest is None:
        return cap
    return min(cap, longest + 1 + longest // 2)


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: list[Encoded],
    max_new_tokens: int,
    batch_size: int,
    prefill_tokens: int = 2048,
    watched: list[int] | None = None,
    stop_at_eos: bool = True,
    desc: str = "generating",
) -> list[Generated]:
    """Greedy decoding, prompts sorted by length and left-padded; results in input order.

    Sorting keeps padding small. `stop_at_eos=False` always makes `max_new_tokens` steps
    (benchmarks); the EOS cut of each result is the same either way.
    """
    on = next(model.parameters()).device
    watch = torch.tensor(watched or [], dtype=torch.long, device=on)
    eos = tokenizer.eos_token_id if stop_at_eos else None
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
        ).to(on)
        steps = greedy(
            model, batch.input_ids, batch.attention_mask, max_new_tokens, eos, watch, prefill_tokens
        )
        new, chosen, logits = (s.cpu() for s in steps)  # one transfer per batch
        for row, (i, ids) in enumerate(zip(index, new.tolist(), strict=True)):
            results[i] = _unpack(tokenizer, ids, chosen[row], logits[row])
    return results  # type: ignore[return-value]


def greedy(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos: int | None,
    watched: torch.Tensor,
    prefill_tokens: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy decoding with a KV cache that drops each row once it has emitted `eos`, so a
    batch costs what its live rows cost (HF `generate` keeps computing finished rows).

    input_ids, attention_mask: (B, T) left-padded prompts; watched: (W,) token ids.
    returns: tokens (B, S), log p of each greedy token (B, S), watched logits (B, S, W);
    S = max_new_tokens, and a dropped row holds EOS from its end on. The prompts are read in
    length buckets of at most `prefill_tokens` (see `prefill`).
    """
    b, on = len(input_ids), input_ids.device
    fill = -1 if eos is None else eos
    tokens = torch.full((b, max_new_tokens), fill, dtype=torch.long, device=on)  # (B, S)
    chosen = torch.zeros(b, max_new_tokens, device=on)  # (B, S)
    watched_logits = torch.zeros(b, max_new_tokens, len(watched), device=on)  # (B, S, W)
    live = torch.arange(b, device=on)  # rows of the batch still decoding
    positions = (attention_mask.cumsum(-1) - 1).clamp_min(0)  # (B, T)
    logits, cache = prefill(model, input_ids, attention_mask, positions, prefill_tokens)
    position = positions[:, -1]  # (n,) of the live rows
    for step in range(max_new_tokens):
        logp, token = torch.log_softmax(logits.float(), dim=-1).max(-1)  # (n,), (n,)
        tokens[live, step] = token
        chosen[live, step] = logp
        watched_logits[live, step] = logits[:, watched].float()
        if step + 1 == max_new_tokens:
            break
        if eos is not None and (going := token != eos).logical_not().any():
            if not going.any():
                break
            keep = going.nonzero().squeeze(1)  # (n',)
            cache.batch_select_indices(keep)
            live, token, position = live[keep], token[keep], position[keep]
            attention_mask = attention_mask[keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(live), 1)], 1)
        position = position + 1
        logits = model(
            input_ids=token[:, None],
            attention_mask=attention_mask,
            position_ids=position[:, None],
            cache=cache,
            use_cache=True,
        ).logits[:, -1]
    return tokens, chosen, watched_logits


def prefill(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    positions: torch.Tensor,
    budget: int,
) -> tuple[torch.Tensor, DynamicCache]:
    """Read left-padded prompts in buckets of similar length (rows × width ≤ `budget`), then
    join their KV caches, left-padded, into one for decoding.

    One forward over the whole batch pays for every row's padding and runs large matmuls
    slowly on CPUs (their caches overflow); the padded cache entries are masked anyway.
    returns: next-token logits (B, V) and the joined cache, width T.
    """
    b, width = input_ids.shape
    lengths = attention_mask.sum(-1).tolist()
    logits = None
    parts = []
    for rows in token_budget_batches(lengths, budget):
        cut = max(lengths[i] for i in rows)  # the bucket's own width: its rows' left pad dropped
        index = torch.tensor(rows, device=input_ids.device)
        cache = DynamicCache(config=model.config)
        last = model(
            input_ids=input_ids[index, -cut:],
            attention_mask=attention_mask[index, -cut:],
            position_ids=positions[index, -cut:],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,  # prompt positions need no vocabulary projection
        ).logits[:, -1]  # (b_i, V)
        if logits is None:
            logits = last.new_empty(b, last.shape[-1])
        logits[index] = last
        parts.append((index, cache))
    joined = DynamicCache(config=model.config)
    for layer in range(len(parts[0][1].layers)):
        k0, v0 = parts[0][1].layers[layer].keys, parts[0][1].layers[layer].values
        keys = k0.new_zeros(b, k0.shape[1], width, k0.shape[3])  # (B, heads, T, head_dim)
        values = v0.new_zeros(b, v0.shape[1], width, v0.shape[3])
        for index, cache in parts:
            k, v = cache.layers[layer].keys, cache.layers[layer].values  # (b_i, heads, cut, d)
            keys[index, :, width - k.shape[2] :] = k
            values[index, :, width - v.shape[2] :] = v
        joined.update(keys, values, layer)
    return logits, joined


def _unpack(tokenizer, new: list[int], chosen: torch.Tensor, logits: torch.Tensor) -> Generated:
    """One row: cut at the first EOS, decode each token once to know where it sits in the text."""
    eos = tokenizer.eos_token_id
    length = new.index(eos) if eos in new else len(new)
    token_ids = new[:length]
    pieces = tokenizer.batch_decode([[t] for t in token_ids], skip_special_tokens=True)
    offsets = list(accumulate((len(p) for p in pieces[:-1]), initial=0)) if pieces else []
    return Generated(token_ids, "".join(pieces), offsets, chosen[:length], logits[:length])
