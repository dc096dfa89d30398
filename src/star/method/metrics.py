"""Evaluation metrics as pure functions: accuracy, calibration (ECE, NLL, Brier), reliability bins.

Calibration scores a prediction's confidence as a forecast that it is correct, so the same
functions serve closed label sets and free answers (where no distribution over answers exists).
"""

from __future__ import annotations

import torch


def accuracy(correct: torch.Tensor) -> float:
    """correct: (n,) bool -> fraction correct (0 for n = 0)."""
    return correct.double().mean().item() if len(correct) else 0.0


def reliability_bins(
    confidence: torch.Tensor, correct: torch.Tensor, bins: int = 10
) -> list[dict[str, float]]:
    """Equal-width confidence bins over [0, 1] (a bin holds (lower, upper]; 0 joins the first).

    confidence: (n,) in [0, 1]; correct: (n,) bool
    returns: per bin {lower, upper, count, accuracy, confidence} (means are 0 for empty bins)
    """
    edges = torch.linspace(0, 1, bins + 1)
    which = (torch.bucketize(confidence.float(), edges, right=False) - 1).clamp(0, bins - 1)
    count = torch.bincount(which, minlength=bins).float()  # (bins,)
    hits = torch.zeros(bins).index_add_(0, which, correct.float())
    conf = torch.zeros(bins).index_add_(0, which, confidence.float())
    safe = count.clamp_min(1)
    return [
        {
            "lower": edges[b].item(),
            "upper": edges[b + 1].item(),
            "count": int(count[b]),
            "accuracy": (hits[b] / safe[b]).item(),
            "confidence": (conf[b] / safe[b]).item(),
        }
        for b in range(bins)
    ]


def expected_calibration_error(
    confidence: torch.Tensor, correct: torch.Tensor, bins: int = 10
) -> float:
    """ECE = Σ_b (n_b / N) · |acc_b − conf_b| over equal-width bins (method.md §6).

    confidence: (n,) in [0, 1]; correct: (n,) bool
    """
    if len(confidence) == 0:
        return 0.0
    table = reliability_bins(confidence, correct, bins)
    n = len(confidence)
    return sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in table)


def brier_score(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """Mean (confidence − correct)²: 0 is perfect, 0.25 is always saying 0.5.

    confidence: (n,) in [0, 1]; correct: (n,) bool
    """
    if len(confidence) == 0:
        return 0.0
    return (confidence.double() - correct.double()).pow(2).mean().item()


def negative_log_likelihood(
    confidence: torch.Tensor, correct: torch.Tensor, eps: float = 1e-6
) -> float:
    """Mean −log p(outcome) of the correctness forecast: −log c if correct, −log(1 − c) if not.

    Confidences are clamped to [eps, 1 − eps] so that one certain mistake costs −log eps ≈ 13.8
    instead of infinity. confidence: (n,) in [0, 1]; correct: (n,) bool
    """
    if len(confidence) == 0:
        return 0.0
    c = confidence.double().clamp(eps, 1 - eps)
    return -torch.where(correct, c.log(), (1 - c).log()).mean().item()
