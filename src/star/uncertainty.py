"""Uncertainty math as pure tensor functions (no model, tokenizer or I/O).

Answer tokens are kept flat: N tokens of a batch, each with the index of its example (`rows`).
That is the layout the scorer produces (it computes logits only at answer positions), and it
makes padding masks unnecessary: a padded position is never in the list.
"""

from __future__ import annotations

import torch


def token_nll_and_entropy(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token −log p_t(y_t) and H(p_t) = −Σ_v p_v log p_v (method.md §4).

    logits: (N, V) next-token logits at N answer positions, any float dtype (computed in fp32)
    targets: (N,) the answer token at each position
    returns: nll (N,), entropy (N,), both fp32
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
    nll = -logp.gather(-1, targets[:, None]).squeeze(-1)  # (N,)
    entropy = -(logp.exp() * logp).sum(-1)  # (N,)
    return nll, entropy


def sum_by_row(values: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Σ over each example's tokens: PE = Σ_t nll_t, ME = Σ_t H_t (summed as in the paper).

    values: (N,) per-token quantity; rows: (N,) example index in [0, n_rows)
    returns: (n_rows,)
    """
    out = torch.zeros(n_rows, dtype=values.dtype, device=values.device)
    return out.index_add_(0, rows, values)
