"""Teacher-forced forward passes: the only place that turns logits into uncertainty inputs.

The vocabulary projection (49k × hidden for SmolLM2, ~21 % of a token's FLOPs) runs only at
answer positions, in chunks, so neither prompt positions nor a [batch, seq, vocab] tensor cost
anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from star.data import IGNORE, Batch, Encoded, collate, token_budget_batches
from star.uncertainty import sum_by_row, token_nll_and_entropy

LOGIT_CHUNK = 1024  # answer tokens per log-softmax block: 1024 × 49k fp32 ≈ 200 MB


def causal_lm(model):
    """The transformers model under a PEFT wrapper (its layers carry the LoRA branches)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def answer_hidden(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Final hidden states at the positions that predict answer tokens.

    returns: hidden (N, H), targets (N,), rows (N,) for the N answer tokens of the batch
    """
    hidden = (
        causal_lm(model)
        .get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        .last_hidden_state
    )  # (B, T, H)
    labels = batch.labels[:, 1:]  # (B, T-1): the token each position predicts
    predicts = labels != IGNORE  # (B, T-1)
    rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)
    return hidden[:, :-1][predicts], labels[predicts], rows[predicts]


@dataclass(frozen=True)
class SequenceScores:
    """Per-example uncertainty inputs, in the order of the examples given."""

    pe: torch.Tensor  # (n,) Σ_t −log p(y_t): predictive entropy on the target
    token_entropy: torch.Tensor  # (n,) Σ_t H(p_t): "ME" in the paper
    n_tokens: torch.Tensor  # (n,) answer tokens scored


@torch.inference_mode()
def score(
    model, items: list[Encoded], pad_id: int, batch_tokens: int, desc: str = "scoring"
) -> SequenceScores:
    """One forward per length-bucketed batch; no per-token Python work."""
    on = next(model.parameters()).device
    pe = torch.zeros(len(items))
    entropy = torch.zeros(len(items))
    counts = torch.zeros(len(items), dtype=torch.long)
    head = causal_lm(model).get_output_embeddings()
    batches = token_budget_batches([len(x) for x in items], batch_tokens)
    for index in tqdm(batches, desc=desc, unit="batch", disable=None, leave=False):
        hidden, targets, rows = answer_hidden(
            model, collate([items[i] for i in index], pad_id).to(on)
        )
        nll = torch.empty(len(targets), device=on)
        ent = torch.empty(len(targets), device=on)
        for start in range(0, len(targets), LOGIT_CHUNK):
            part = slice(start, start + LOGIT_CHUNK)
            nll[part], ent[part] = token_nll_and_entropy(head(hidden[part]), targets[part])
        where = torch.tensor(index)
        pe[where] = sum_by_row(nll, rows, len(index)).cpu()
        entropy[where] = sum_by_row(ent, rows, len(index)).cpu()
        counts[where] = torch.bincount(rows, minlength=len(index)).cpu()
    return SequenceScores(pe=pe, token_entropy=entropy, n_tokens=counts)
