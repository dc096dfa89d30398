"""Query strategies: a registry of scoring rules, and top-k selection kept apart from scoring.

A strategy maps the pool's signals to one score per candidate (higher = label sooner). It asks
for signals through `Signals`, whose callables the loop memoises, so a strategy costs exactly
the forward passes it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from star.errors import EmptyPoolError
from star.scoring import SequenceScores


@dataclass(frozen=True)
class Signals:
    """What a strategy may look at, for the n candidates in a fixed order."""

    size: int
    generator: torch.Generator  # seeded per (run seed, round)
    tuned: Callable[[], SequenceScores]  # this round's adapter, teacher-forced on the target


@dataclass(frozen=True)
class Strategy:
    name: str
    help: str
    score: Callable[[Signals], torch.Tensor]  # Signals -> (n,) scores


STRATEGIES: dict[str, Strategy] = {}


def register(name: str, help: str):
    """Register `fn(signals) -> (n,) scores` under `name` (user strategies too)."""

    def wrap(fn: Callable[[Signals], torch.Tensor]) -> Callable[[Signals], torch.Tensor]:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is already registered")
        STRATEGIES[name] = Strategy(name, help, fn)
        return fn

    return wrap


@register("random", "uniform random sampling: the baseline every strategy must beat")
def _random(signals: Signals) -> torch.Tensor:
    return torch.rand(signals.size, generator=signals.generator)


@register("pe", "predictive entropy: summed −log p of the answer under the tuned model")
def _pe(signals: Signals) -> torch.Tensor:
    return signals.tuned().pe


@register("entropy", "token entropy (ME): summed per-token entropy under the tuned model")
def _entropy(signals: Signals) -> torch.Tensor:
    return signals.tuned().token_entropy


@dataclass(frozen=True)
class Selected:
    id: str
    score: float
    rank: int  # 0 = labelled first


def select_top_k(ids: Sequence[str], scores: torch.Tensor, k: int) -> list[Selected]:
    """The k highest scores; equal scores go to the smaller id so runs are deterministic.

    ids: n candidate ids; scores: (n,). Asking for more than n returns all n.
    """
    if len(ids) != len(scores):
        raise ValueError(f"{len(ids)} ids but {len(scores)} scores")
    if not ids:
        raise EmptyPoolError("no unlabelled examples left to select from")
    values = scores.tolist()
    order = sorted(range(len(ids)), key=lambda i: (-values[i], ids[i]))[:k]
    return [Selected(ids[i], values[i], rank) for rank, i in enumerate(order)]
