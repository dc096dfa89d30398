"""Uncertainty math as pure tensor functions (no model, tokenizer or I/O).

Answer tokens are kept flat: N tokens of a batch, each with the index of its example (`rows`).
That is the layout the scorer produces (it computes logits only at answer positions), and it
makes padding masks unnecessary: a padded position never enters the list. `flatten_masked`
turns a padded (B, T, ...) tensor and its mask into that layout.

Measures (method.md §4, Zhang et al. 2024), for an answer y₁…y_T and p_t = p(· | x, y_<t):
    PE   = Σ_t −log p_t(y_t)                       predictive entropy of the answer
    ME   = Σ_t H(p_t),  H(p) = −Σ_v p_v log p_v     token ("maximum") entropy
    BALD = Σ_t [ H(mean_k p_t^k) − mean_k H(p_t^k) ] mutual information over K MC passes
Sums follow the paper; `reduce_by_row(..., mean=True)` gives the length-normalised variant.

Closed label sets (a task's labels, an item's choices) have a distribution p over the labels,
p(label | prompt) renormalised over the set (option likelihood, as evaluation reads it); the
classic classification measures read it (Schröder et al. 2022, arXiv 2107.05687; Settles 2009):
    least confidence  1 − p₍₁₎
    margin            p₍₁₎ − p₍₂₎ (breaking ties: the smallest first)
    label entropy     −Σ_l p_l log p_l
    label BALD        H(mean_k p^k) − mean_k H(p^k) over K MC-dropout passes
Rows of items with fewer labels than the widest are padded with probability 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def flatten_masked(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, ...) values and a (B, T) bool mask -> (N, ...) kept values and their (N,) rows."""
    rows = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)  # (B, T)
    return values[mask], rows[mask]


def token_nll_and_entropy(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token −log p_t(y_t) and H(p_t).

    logits: (..., V) next-token logits at answer positions, any float dtype (computed in fp32)
    targets: (...) the answer token at each position
    returns: nll (...), entropy (...), both fp32
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # (..., V)
    nll = -logp.gather(-1, targets[..., None]).squeeze(-1)  # (...)
    entropy = -(logp.exp() * logp).sum(-1)  # (...)
    return nll, entropy


def token_mutual_information(logits: torch.Tensor) -> torch.Tensor:
    """BALD per token: H(mean_k p^k) − mean_k H(p^k), ≥ 0, 0 when all K passes agree.

    logits: (K, N, V) logits of K stochastic passes at the same N positions
    returns: (N,) fp32
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # (K, N, V)
    p = logp.exp()
    mean_entropy = -(p * logp).sum(-1).mean(0)  # (N,)
    p_mean = p.mean(0)  # (N, V)
    entropy_of_mean = -(p_mean * torch.log(p_mean.clamp_min(1e-30))).sum(-1)  # (N,)
    return (entropy_of_mean - mean_entropy).clamp_min(0.0)


def reduce_by_row(
    values: torch.Tensor, rows: torch.Tensor, n_rows: int, mean: bool = False
) -> torch.Tensor:
    """Σ (or mean, for length normalisation) over each example's tokens.

    values: (..., N) per-token quantity, e.g. (K, N) for K passes; rows: (N,) example index
    returns: (..., n_rows); an example without tokens gets 0
    """
    total = torch.zeros(*values.shape[:-1], n_rows, dtype=values.dtype, device=values.device)
    total.index_add_(-1, rows, values)
    if not mean:
        return total
    return total / torch.bincount(rows, minlength=n_rows).clamp_min(1)


def normalise(u: torch.Tensor) -> torch.Tensor:
    """Min–max over the candidates being ranked: (u − min) / (max − min); all zeros if constant.

    u: (n,) -> (n,) in [0, 1]
    """
    low, high = u.min(), u.max()
    if high == low:
        return torch.zeros_like(u)
    return (u - low) / (high - low)


def subtract(tuned: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """N(U_tuned) − N(U_base): high where tuning made the model *less* sure than the base.

    tuned, base: (n,) -> (n,) in [−1, 1]
    """
    return normalise(tuned) - normalise(base)


def dynamic_weight(round: int, w0: float, step: float) -> float:
    """λ_k = min(1, w₀ + Δ·k): trust the tuned model more as it sees more labels."""
    return min(1.0, w0 + step * round)


def dynamic_mix(tuned: torch.Tensor, base: torch.Tensor, weight: float) -> torch.Tensor:
    """λ·N(U_tuned) + (1 − λ)·N(U_base), both normalised on the pool (STAR's dynamic uncertainty).

    The authors normalised only the base term, so the raw tuned term (often ≫ 1) dominated
    from the first round; star normalises both.
    tuned, base: (n,) -> (n,) in [0, 1]
    """
    return weight * normalise(tuned) + (1.0 - weight) * normalise(base)


def dynamic_mix_authors(tuned: torch.Tensor, base: torch.Tensor, weight: float) -> torch.Tensor:
    """λ·U_tuned + (1 − λ)·N(U_base): the STAR authors' code, only the base term normalised.

    Kept to reproduce the paper as published (`star-authors`); a summed PE of several nats
    outweighs the base term's [0, 1], so λ barely matters. tuned, base: (n,) -> (n,)
    """
    return weight * tuned + (1.0 - weight) * normalise(base)


def same_width(*probs: torch.Tensor) -> list[torch.Tensor]:
    """Label distributions of label sets of different sizes, each padded with probability 0 to
    the widest. probs: (n_i, L_i) each -> (n_i, max L_i) each"""
    width = max(p.shape[-1] for p in probs)
    return [torch.nn.functional.pad(p, (0, width - p.shape[-1])) for p in probs]


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """1 − p₍₁₎: how far the most likely label is from certain. probs: (n, L) -> (n,)"""
    return 1.0 - probs.max(-1).values


def margin(probs: torch.Tensor) -> torch.Tensor:
    """p₍₁₎ − p₍₂₎, the gap between the two most likely labels (small = a near tie).
    probs: (n, L), L ≥ 2 (padded rows count a missing label as 0) -> (n,)"""
    if probs.shape[-1] < 2:  # one label: nothing to tie with
        return probs[:, 0]
    top = probs.topk(2, dim=-1).values  # (n, 2)
    return top[:, 0] - top[:, 1]


def label_entropy(probs: torch.Tensor) -> torch.Tensor:
    """−Σ_l p_l log p_l with 0·log 0 = 0. probs: (..., L) -> (...)"""
    return -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)


def label_bald(probs: torch.Tensor) -> torch.Tensor:
    """Mutual information between the label and the dropout mask: H(mean_k p^k) − mean_k H(p^k),
    ≥ 0, 0 when all K passes agree (Houlsby et al. 2011). probs: (K, n, L) -> (n,)"""
    return (label_entropy(probs.mean(0)) - label_entropy(probs).mean(0)).clamp_min(0.0)


def gradient_embedding(probs: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """BADGE's gradient embedding (Ash et al. 2020) for a head over the labels: the gradient of
    the label loss with the model's own prediction ŷ as the target, with respect to the head's
    weights, (p − onehot(ŷ)) ⊗ h. Its norm grows with uncertainty, its direction with the
    predicted class and the example's representation.

    probs: (n, L) label distributions; hidden: (n, H) states where the answer starts
    returns: (n, L·H) fp32
    """
    probs, hidden = probs.float(), hidden.float()
    residual = probs - torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).float()
    return (residual[:, :, None] * hidden[:, None, :]).flatten(1)  # (n, L, H) -> (n, L·H)


def contrastive_divergence(
    probs: torch.Tensor,
    labeled_probs: torch.Tensor,
    x: torch.Tensor,
    labeled_x: torch.Tensor,
    neighbours: int = 10,
) -> torch.Tensor:
    """CAL (Margatina et al. 2021): how much a candidate's prediction differs from those of
    its nearest labelled examples, mean_j KL(p_j ‖ p_i) over its `neighbours` nearest labelled
    j in the model's feature space: examples that look like labelled ones but are predicted
    otherwise (contrastive examples) come first.

    probs: (n, L), labeled_probs: (m, L) label distributions; x: (n, d), labeled_x: (m, d)
    features. returns: (n,) ≥ 0; zeros when nothing is labelled yet.
    """
    n, m = probs.shape[0], labeled_probs.shape[0]
    if m == 0:
        return torch.zeros(n)
    near = torch.cdist(x.float(), labeled_x.float()).topk(min(neighbours, m), largest=False)
    q = labeled_probs.float()[near.indices]  # (n, k, L) the neighbours' distributions
    p = probs.float()[:, None, :]  # (n, 1, L)
    kl = (q * (torch.log(q.clamp_min(1e-30)) - torch.log(p.clamp_min(1e-30)))).sum(-1)  # (n, k)
    return kl.mean(1)


@dataclass(frozen=True)
class SequenceScores:
    """Per-example uncertainty inputs, in the order of the examples given."""

    pe: torch.Tensor  # (n,) PE: Σ_t −log p(y_t), mean over passes
    token_entropy: torch.Tensor  # (n,) ME: Σ_t H(p_t), mean over passes
    bald: torch.Tensor  # (n,) Σ_t mutual information over passes (0 for one pass)
    n_tokens: torch.Tensor  # (n,) answer tokens scored

    @classmethod
    def cat(cls, parts: list[SequenceScores]) -> SequenceScores:
        """The parts' examples one after another (shards gathered from several processes)."""
        return cls(
            *(
                torch.cat([getattr(p, f) for p in parts])
                for f in ("pe", "token_entropy", "bald", "n_tokens")
            )
        )

    def take(self, index: torch.Tensor) -> SequenceScores:
        """The examples at `index` (repeats allowed), in its order."""
        return SequenceScores(
            *(t[index] for t in (self.pe, self.token_entropy, self.bald, self.n_tokens))
        )


def instruction_difficulty(conditional: torch.Tensor, unconditional: torch.Tensor) -> torch.Tensor:
    """IFD in log space (Li et al. 2024, "From Quantity to Quality", NAACL): the ratio of an
    answer's perplexity with and without its prompt, here conditional − unconditional.

    conditional, unconditional: (n,) the same measure (PE or ME) of the same answers after the
    prompt and after no prompt. With length-normalised PE it is log(PPL(y | x) / PPL(y));
    summed, it is −PMI(x; y). What the answer's own form costs (its length, a number or a
    word) cancels; what is left is how little the prompt helps. returns: (n,)
    """
    return conditional - unconditional
