"""When to stop labelling: rules over the model's predictions on a fixed stop set.

After every trained round the model predicts on the same S unlabelled examples (the stop
set); a rule reads the rounds so far and says stop or go on, with the figure it decided on.
Pure functions of those predictions (no model, no files), so a simulated run and a labelling
project decide alike.

  - `kappa`: stabilising predictions (Bloodgood & Vijay-Shanker 2009, CoNLL): Cohen's κ between
    consecutive rounds' answers, averaged over the last `window` pairs; stop when the mean is
    at least `threshold` (the paper's 0.99 over 3 pairs; small-text's KappaAverage).
  - `uncertainty`: overall uncertainty (Zhu, Wang & Hovy 2008): the mean uncertainty of the
    latest round's predictions on the stop set; stop when it is at most `threshold`. A
    prediction's uncertainty is in [0, 1]: the option distribution's entropy over log(C) for
    a closed label set (small-text's OverallUncertainty, threshold 0.05), 1 − p(answer) for a
    generated one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RoundPredictions:
    """One trained round's predictions on the stop set, in the stop set's fixed order."""

    answers: Sequence[Hashable]  # (S,) the model's answer to each stop example
    uncertainty: Sequence[float]  # (S,) each answer's uncertainty in [0, 1]


@dataclass(frozen=True)
class Decision:
    rule: str
    stop: bool
    figure: float | None  # what the rule compared with its threshold (None: not yet measurable)
    threshold: float
    detail: str  # one line for `star status`

    def line(self) -> str:
        return f"stop: {'yes' if self.stop else 'no'} ({self.rule}: {self.detail})"


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's κ between two raters' categorical answers to the same S items.

    κ = (p_o − p_e) / (1 − p_e), p_o the share of equal answers, p_e = Σ_c p_a(c)·p_b(c) the
    agreement expected by chance. When p_e = 1 (both raters give one and the same answer
    throughout) the formula is 0/0; agreement is then perfect and κ = 1, as small-text has it.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"kappa needs two equal, non-empty answer lists ({len(a)}, {len(b)})")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    if expected >= 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)


def normalised_entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p) / log C of option distributions, in [0, 1]; 0 for a single option.

    probs: (..., C) rows summing to 1. returns: (...)
    """
    c = probs.shape[-1]
    if c < 2:
        return torch.zeros(probs.shape[:-1])
    logp = torch.log(probs.clamp_min(1e-30))
    return (-(probs * logp).sum(-1) / math.log(c)).clamp(0.0, 1.0)


def kappa_rule(
    history: Sequence[RoundPredictions], threshold: float = 0.99, window: int = 3
) -> Decision:
    """Stop when the mean κ of the last `window` consecutive-round pairs is ≥ threshold."""
    kappas = [
        cohen_kappa(history[i - 1].answers, history[i].answers) for i in range(1, len(history))
    ]
    last = kappas[-window:]
    if not last:
        return Decision("kappa", False, None, threshold, "needs two trained rounds")
    mean = sum(last) / len(last)
    full = len(last) == window
    detail = f"mean κ {mean:.3f} over the last {len(last)} of {window} round pairs"
    detail += f", stop at ≥ {threshold}" if full else f" (window not full), stop at ≥ {threshold}"
    return Decision("kappa", full and mean >= threshold, mean, threshold, detail)


def uncertainty_rule(history: Sequence[RoundPredictions], threshold: float = 0.05) -> Decision:
    """Stop when the latest round's mean uncertainty on the stop set is ≤ threshold."""
    if not history:
        return Decision("uncertainty", False, None, threshold, "needs a trained round")
    u = history[-1].uncertainty
    mean = sum(u) / len(u) if len(u) else 1.0
    detail = f"mean uncertainty {mean:.3f} on {len(u)} stop examples, stop at ≤ {threshold}"
    return Decision("uncertainty", mean <= threshold, mean, threshold, detail)


RULES: dict[str, Callable[[Sequence[RoundPredictions]], Decision]] = {
    "kappa": kappa_rule,
    "uncertainty": uncertainty_rule,
}


def decide(history: Sequence[RoundPredictions], rule: str, threshold: float | None) -> Decision:
    """The rule's decision over the rounds so far (threshold None: the rule's default)."""
    if rule not in RULES:
        raise ValueError(f"unknown stopping rule {rule!r}; choose from {', '.join(RULES)}")
    return RULES[rule](history) if threshold is None else RULES[rule](history, threshold)


def decisions(
    history: Sequence[RoundPredictions], rule: str | None = None, threshold: float | None = None
) -> list[Decision]:
    """Every rule's decision, `rule` with `threshold` and the others with their defaults."""
    return [decide(history, name, threshold if name == rule else None) for name in RULES]


def to_rows(ids: Sequence[str], predictions: RoundPredictions) -> list[dict]:
    return [
        {"id": i, "answer": a, "uncertainty": u}
        for i, a, u in zip(ids, predictions.answers, predictions.uncertainty, strict=True)
    ]


def from_rows(rows: Sequence[dict]) -> RoundPredictions:
    return RoundPredictions([r["answer"] for r in rows], [float(r["uncertainty"]) for r in rows])
