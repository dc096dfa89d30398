"""Closed label sets scored by likelihood (lm-evaluation-harness's multiple choice): each
option's token ids as training spells it, and log p(option | prompt) for every option of every
item, each prompt read once."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from star.engine.batching import IGNORE, Encoded, collate, token_budget_batches
from star.engine.generate import prefill
from star.engine.scoring import causal_lm
from star.tasks.spec import TaskSpec


def option_ids(tokenizer, spec: TaskSpec, options: tuple[str, ...]) -> list[list[int]]:
    """Token ids of each option as the training target spells it (see `end_if_prefix`)."""
    ids = [tokenizer(spec.target(o), add_special_tokens=False)["input_ids"] for o in options]
    return end_if_prefix(ids, tokenizer.eos_token_id)


def end_if_prefix(ids: list[list[int]], eos: int) -> list[list[int]]:
    """The options' token ids, each ending with EOS if one option's ids are a prefix of
    another's: scored without it the longer one could never win ("yes" vs "yes sir"), and a
    tuned model, trained on target + EOS, learns to stop after the shorter one."""
    prefix = any(a != b and b[: len(a)] == a for a in ids for b in ids)
    return [i + [eos] for i in ids] if prefix else ids


def option_probabilities(
    model, prompts: list[Encoded], options: list[list[list[int]]], pad_id: int, batch_tokens: int
) -> list[torch.Tensor]:
    """p(option | prompt) renormalised over each item's options; per item (n_options_i,)."""
    logp = option_logprobs(model, prompts, options, pad_id, batch_tokens)
    return [torch.softmax(part, -1) for part in logp]


@torch.inference_mode()
def option_logprobs(
    model, prompts: list[Encoded], options: list[list[list[int]]], pad_id: int, budget: int
) -> list[torch.Tensor]:
    """log p(option | prompt) = Σ_t log p(o_t | prompt, o_<t) for every option of every item,
    reading each prompt once: prompts are prefilled in length buckets (≤ `budget` tokens), and
    each option continues from a copy of its prompt's KV cache.

    options[i]: the token ids of item i's options. returns: per item, (n_options_i,) log-probs.
    """
    on = next(model.parameters()).device
    head = causal_lm(model).get_output_embeddings()
    out = [torch.zeros(len(o)) for o in options]
    for rows in token_budget_batches([len(p.prompt_ids) for p in prompts], budget):
        batch = collate([Encoded(prompts[i].prompt_ids, []) for i in rows], pad_id, "left").to(on)
        positions = (batch.attention_mask.cumsum(-1) - 1).clamp_min(0)  # (b, W)
        logits, cache = prefill(model, batch.input_ids, batch.attention_mask, positions, budget)
        first = torch.log_softmax(logits.float(), -1)  # (b, V): predicts each option's 1st token
        pairs = [(r, k) for r, i in enumerate(rows) for k in range(len(options[i]))]
        at = torch.tensor([r for r, _ in pairs], device=on)  # (P,) prompt row of each pair
        token = torch.tensor([options[rows[r]][k][0] for r, k in pairs], device=on)  # (P,)
        for (r, k), value in zip(pairs, first[at, token].tolist(), strict=True):
            out[rows[r]][k] = value
        longer = [(r, k) for r, k in pairs if len(options[rows[r]][k]) > 1]
        steps = [len(options[rows[r]][k]) - 1 for r, k in longer]  # tokens after the first
        cap = max(1, 8 * budget // batch.input_ids.shape[1])  # cache rows copied per forward
        for group in token_budget_batches(steps, budget):  # similar lengths: little padding
            for start in range(0, len(group), cap):
                chunk = [longer[j] for j in group[start : start + cap]]
                follow = _continue(
                    model,
                    head,
                    cache,
                    batch.attention_mask,
                    positions[:, -1],
                    [(r, options[rows[r]][k]) for r, k in chunk],
                    pad_id,
                )  # (c,)
                for (r, k), value in zip(chunk, follow.tolist(), strict=True):
                    out[rows[r]][k] += value
    return out


def _continue(
    model,
    head,
    cache,
    prompt_mask: torch.Tensor,
    last: torch.Tensor,
    items: list[tuple[int, list[int]]],
    pad_id: int,
) -> torch.Tensor:
    """Σ log p of each option's tokens after its first, teacher-forced from a copy of its
    prompt's cache. items: (prompt row, option ids); returns (c,)."""
    on = prompt_mask.device
    index = torch.tensor([r for r, _ in items], device=on)  # (c,)
    length = max(len(o) for _, o in items) - 1
    inputs = torch.full((len(items), length), pad_id, dtype=torch.long)  # (c, L-1)
    targets = torch.full((len(items), length), IGNORE, dtype=torch.long)  # (c, L-1)
    for row, (_, o) in enumerate(items):  # filled on the host, copied to the device once
        inputs[row, : len(o) - 1] = torch.tensor(o[:-1])
        targets[row, : len(o) - 1] = torch.tensor(o[1:])
    inputs, targets = inputs.to(on), targets.to(on)
    real = targets != IGNORE  # (c, L-1)
    mask = torch.cat([prompt_mask[index], real.long()], 1)  # (c, W + L-1)
    positions = last[index, None] + 1 + torch.arange(length, device=on)  # (c, L-1)
    hidden = (
        causal_lm(model)
        .get_decoder()(
            input_ids=inputs,
            attention_mask=mask,
            position_ids=positions,
            cache=select_rows(cache, index),
            use_cache=True,
        )
        .last_hidden_state
    )  # (c, L-1, H)
    logp = torch.log_softmax(head(hidden[real]).float(), -1)  # (n, V)
    token = logp.gather(-1, targets[real][:, None]).squeeze(-1)  # (n,)
    rows = real.nonzero()[:, 0]  # (n,)
    return torch.zeros(len(items), device=on).index_add_(0, rows, token).cpu()


def select_rows(cache: DynamicCache, index: torch.Tensor) -> DynamicCache:
    """A new cache holding the given rows (repeats allowed) of `cache`, which stays as it is."""
    copy = DynamicCache()
    for layer, entry in enumerate(cache.layers):
        copy.update(entry.keys[index], entry.values[index], layer)
    return copy
