"""Teacher-forced forward passes: the only place that turns logits into uncertainty inputs.

The vocabulary projection (49k × hidden for SmolLM2, ~21 % of a token's FLOPs) runs only at
answer positions, in chunks, so neither prompt positions nor a [batch, seq, vocab] tensor cost
anything.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from star.crash import crash_point
from star.engine.batching import IGNORE, Batch, Encoded, collate, token_budget_batches
from star.method.uncertainty import (
    SequenceScores,
    flatten_masked,
    reduce_by_row,
    token_mutual_information,
    token_nll_and_entropy,
)

LOGIT_BLOCK = 256  # (passes × answer tokens) per log-softmax block: 256 × 49k fp32 ≈ 50 MB


def causal_lm(model):
    """The transformers model under a PEFT wrapper (its layers carry the LoRA branches)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def final_states(model, batch: Batch) -> torch.Tensor:
    """(B, T, H) last-layer states of the decoder body (no vocabulary projection); positions
    come from the attention mask, so left and right padding give the same states."""
    positions = (batch.attention_mask.cumsum(-1) - 1).clamp_min(0)  # (B, T)
    return (
        causal_lm(model)
        .get_decoder()(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=positions,
            use_cache=False,  # a teacher-forced pass needs no KV cache
        )
        .last_hidden_state
    )


def answer_hidden(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Final hidden states at the positions that predict answer tokens.

    Positions come from the attention mask, so left and right padding give the same result.
    returns: hidden (N, H), targets (N,), rows (N,) for the N answer tokens of the batch
    """
    hidden = final_states(model, batch)  # (B, T, H)
    labels = batch.labels[:, 1:]  # (B, T-1): the token each position predicts
    predicts = labels != IGNORE  # (B, T-1)
    hidden, rows = flatten_masked(hidden[:, :-1], predicts)  # (N, H), (N,)
    return hidden, labels[predicts], rows


@torch.inference_mode()
def score(
    model,
    items: list[Encoded],
    pad_id: int,
    batch_tokens: int,
    passes: int = 1,
    length_norm: bool = False,
    padding_side: str = "right",
    desc: str = "scoring",
) -> SequenceScores:
    """One forward per length-bucketed batch and pass; no per-token Python work.

    With `passes` > 1 the caller has made the model stochastic (`model.mc_dropout`): every pass
    is a full forward, an independent dropout sample, and PE/ME are averaged over passes.
    """
    on = next(model.parameters()).device
    head = causal_lm(model).get_output_embeddings()
    out = {k: torch.zeros(len(items)) for k in ("pe", "entropy", "bald")}
    counts = torch.zeros(len(items), dtype=torch.long)
    block = max(1, LOGIT_BLOCK // passes)
    batches = token_budget_batches([len(x) for x in items], batch_tokens)
    for index in tqdm(batches, desc=desc, unit="batch", disable=None, leave=False):
        batch = collate([items[i] for i in index], pad_id, padding_side).to(on)
        runs = [answer_hidden(model, batch) for _ in range(passes)]
        hidden = torch.stack([h for h, _, _ in runs])  # (K, N, H)
        _, targets, rows = runs[0]  # (N,), (N,)
        nll = torch.empty(passes, len(targets), device=on)  # (K, N)
        ent = torch.empty(passes, len(targets), device=on)  # (K, N)
        mi = torch.zeros(len(targets), device=on)  # (N,)
        for start in range(0, len(targets), block):
            part = slice(start, start + block)
            logits = head(hidden[:, part])  # (K, c, V)
            nll[:, part], ent[:, part] = token_nll_and_entropy(
                logits, targets[part].expand(passes, -1)
            )
            if passes > 1:
                mi[part] = token_mutual_information(logits)
        where = torch.tensor(index)
        out["pe"][where] = reduce_by_row(nll, rows, len(index), length_norm).mean(0).cpu()
        out["entropy"][where] = reduce_by_row(ent, rows, len(index), length_norm).mean(0).cpu()
        out["bald"][where] = reduce_by_row(mi, rows, len(index), length_norm).cpu()
        counts[where] = torch.bincount(rows, minlength=len(index)).cpu()
        crash_point("score batch")
    return SequenceScores(out["pe"], out["entropy"], out["bald"], counts)


@torch.inference_mode()
def embed(
    model,
    prompts: list[list[int]],
    pad_id: int,
    batch_tokens: int,
    desc: str = "embedding",
    last: bool = False,
) -> torch.Tensor:
    """Each prompt's final hidden state, mean-pooled over its tokens (what the selectors cluster
    prompts on), or with `last` the state at its last token, where the answer starts (what the
    head reads to predict the answer: class-aware, for a tuned model).

    prompts: n token-id lists; returns (n, H) fp32. Right padding; the mask keeps pads out, so
    a prompt's embedding does not depend on its batch.
    """
    on = next(model.parameters()).device
    hidden_size = causal_lm(model).config.hidden_size
    out = torch.zeros(len(prompts), hidden_size)
    batches = token_budget_batches([len(p) for p in prompts], batch_tokens)
    for index in tqdm(batches, desc=desc, unit="batch", disable=None, leave=False):
        batch = collate([Encoded(prompts[i], []) for i in index], pad_id).to(on)
        hidden = final_states(model, batch).float()  # (B, T, H)
        if last:
            end = batch.attention_mask.sum(1) - 1  # (B,) each row's last real position
            pooled = hidden[torch.arange(len(index), device=on), end]  # (B, H)
        else:
            mask = batch.attention_mask[..., None].float()  # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (B, H)
        out[torch.tensor(index)] = pooled.cpu()
        crash_point("embed batch")
    return out
