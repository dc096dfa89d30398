"""Query strategies: a registry of scoring rules × selectors.

A strategy maps the pool's signals to one score per candidate (higher = label sooner), and a
selector (`method.selection`) turns scores into a batch. It asks for signals through `Signals`,
whose callables the engine memoises, so a strategy costs exactly the forward passes it uses.
Variants compose: a measure (PE, token entropy) × a mode (plain, subtract, dynamic, the
authors' dynamic) × a selector (top-k, cluster-stratified, weighted k-means++), method.md §5.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from star.config import RunConfig, with_defaults
from star.errors import ConfigError, EmptyPoolError
from star.method import selection
from star.method.uncertainty import (
    SequenceScores,
    contrastive_divergence,
    dynamic_mix,
    dynamic_mix_authors,
    dynamic_weight,
    instruction_difficulty,
    label_bald,
    label_entropy,
    least_confidence,
    margin,
    same_width,
    subtract,
)


def _no_embeddings() -> torch.Tensor:
    raise ValueError("this source of signals has no embeddings")


def _no_prior() -> SequenceScores:
    raise ValueError("this source of signals has no prompt-free base scores")


def _no_labels() -> torch.Tensor:
    raise ValueError("this source of signals has no label distributions")


def _no_pair() -> tuple[torch.Tensor, torch.Tensor]:
    raise ValueError("this source of signals has no such embeddings")


EMBEDDINGS = ("prompt", "answer", "gradient")  # what the spreading selectors can measure


@dataclass(frozen=True)
class Signals:
    """What a strategy may look at, for the n candidates in a fixed order."""

    size: int
    round: int  # index of the round whose adapter was just trained
    generator: torch.Generator  # seeded per (run seed, round)
    tuned: Callable[[], SequenceScores]  # this round's adapter (MC-averaged when K > 1)
    base: Callable[[], SequenceScores]  # the base model, no adapter (cached for the run)
    base_prior: Callable[[], SequenceScores] = _no_prior  # base's answers with no prompt
    embeddings: Callable[[], torch.Tensor] = _no_embeddings  # (n, H) base model, prompts
    labeled_embeddings: Callable[[], torch.Tensor] = _no_embeddings  # (m, H) the labelled set
    # (K, n, L) p(label | prompt) of the tuned model over each candidate's closed label set,
    # K Monte-Carlo passes (1 without), rows padded with 0 (uncertainty.py, closed label sets)
    labels: Callable[[], torch.Tensor] = _no_labels
    labeled_labels: Callable[[], torch.Tensor] = _no_labels  # (m, L) the same of the labelled
    # ((n, H), (m, H)) the tuned model's state where the answer starts, candidates and labelled
    answer_embeddings: Callable[[], tuple[torch.Tensor, torch.Tensor]] = _no_pair
    # ((n, L·H), (m, L·H)) BADGE's gradient embeddings (uncertainty.gradient_embedding)
    gradient_embeddings: Callable[[], tuple[torch.Tensor, torch.Tensor]] = _no_pair
    embedding: str = "prompt"  # what the spreading selectors measure (one of EMBEDDINGS)
    dynamic_w0: float = 0.1
    dynamic_step: float = 0.1
    star_measure: str = "pe"

    def vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, d) candidates and (m, d) labelled examples in the chosen embedding."""
        if self.embedding == "prompt":
            return self.embeddings(), self.labeled_embeddings()
        if self.embedding == "answer":
            return self.answer_embeddings()
        return self.gradient_embeddings()


@dataclass(frozen=True)
class Strategy:
    name: str
    help: str
    score: Callable[[Signals], torch.Tensor]  # Signals -> (n,) scores
    defaults: Mapping[str, Any] = field(default_factory=dict)  # config paths it sets if unset
    reads_model: bool = True  # False: needs no forward pass (candidate subsampling skips it)
    selector: str = "top"  # a key of SELECTORS
    min_passes: int = 1  # Monte-Carlo passes it needs to mean anything (BALD: 2)
    closed_labels: bool = False  # reads label distributions: every candidate needs a label set

    def choose(self, signals: Signals, ids: Sequence[str], size: int) -> list[Selected]:
        """Up to `size` of the candidates `ids` (in the signals' order), labelled-first order."""
        scores = self.score(signals)  # (n,)
        _check(ids, scores)
        return _selected(ids, scores, SELECTORS[self.selector](signals, scores, size, ids))


# selector(signals, scores (n,), k, ids (n,)) -> up to k candidate positions, in pick order
Selector = Callable[[Signals, torch.Tensor, int, Sequence[str]], list[int]]


def _spread(select) -> Selector:
    return lambda s, scores, k, _: select(*s.vectors(), scores, k, s.generator)


SELECTORS: dict[str, Selector] = {
    "top": lambda _, scores, k, ids: selection.top_k(scores, k, ties=ids),
    "cluster": _spread(selection.cluster_stratified),
    "kmeanspp": _spread(selection.weighted_kmeanspp),
    "badge": lambda s, _, k, __: selection.badge(s.vectors()[0], k, s.generator),
}
_SELECTOR_NAMES = {
    "cluster": "spread over k-means clusters of the prompts, uncovered clusters first",
    "kmeanspp": "k-means++ sampling weighted by the score (BADGE-style)",
}


STRATEGIES: dict[str, Strategy] = {}


def register(
    name: str,
    help: str,
    defaults: Mapping[str, Any] | None = None,
    reads_model: bool = True,
    selector: str = "top",
    min_passes: int = 1,
    closed_labels: bool = False,
):
    """Register `fn(signals) -> (n,) scores` under `name` (user strategies too)."""

    def wrap(fn: Callable[[Signals], torch.Tensor]) -> Callable[[Signals], torch.Tensor]:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is already registered")
        if selector not in SELECTORS:
            raise ValueError(f"unknown selector {selector!r}; choose from {', '.join(SELECTORS)}")
        STRATEGIES[name] = Strategy(
            name, help, fn, dict(defaults or {}), reads_model, selector, min_passes, closed_labels
        )
        return fn

    return wrap


MEASURES: dict[str, Callable[[SequenceScores], torch.Tensor]] = {
    "pe": lambda s: s.pe,
    "entropy": lambda s: s.token_entropy,
}
_MEASURE_NAMES = {"pe": "predictive entropy (PE)", "entropy": "token entropy (ME)"}


def plain(measure: str) -> Callable[[Signals], torch.Tensor]:
    return lambda s: MEASURES[measure](s.tuned())


def subtracted(measure: str) -> Callable[[Signals], torch.Tensor]:
    return lambda s: subtract(MEASURES[measure](s.tuned()), MEASURES[measure](s.base()))


def dynamic(measure: str | None, mix=dynamic_mix) -> Callable[[Signals], torch.Tensor]:
    """λ_k-weighted mix of tuned and base; measure None = the run's `star_measure`."""

    def score(s: Signals) -> torch.Tensor:
        m = MEASURES[measure or s.star_measure]
        weight = dynamic_weight(s.round, s.dynamic_w0, s.dynamic_step)
        return mix(m(s.tuned()), m(s.base()), weight)

    return score


def dynamic_ifd(s: Signals) -> torch.Tensor:
    """STAR's dynamic mix with the base term as instruction-following difficulty: the base
    model's measure of the answer given the prompt minus without it (method.md §5)."""
    m = MEASURES[s.star_measure]
    weight = dynamic_weight(s.round, s.dynamic_w0, s.dynamic_step)
    base = instruction_difficulty(m(s.base()), m(s.base_prior()))
    return dynamic_mix(m(s.tuned()), base, weight)


register(
    "random", "uniform random sampling: the baseline every strategy must beat", reads_model=False
)(lambda s: torch.rand(s.size, generator=s.generator))
for _m, _name in _MEASURE_NAMES.items():
    register(_m, f"{_name} of the tuned model")(plain(_m))
    register(f"{_m}-subtract", f"{_name}: normalised tuned minus normalised base model")(
        subtracted(_m)
    )
    register(f"{_m}-dynamic", f"{_name}: λ·tuned + (1−λ)·base, λ growing each round")(dynamic(_m))
register(
    "bald",
    "mutual information (BALD) over Monte-Carlo dropout passes of the tuned model",
    defaults={"uncertainty.mc_passes": 3},
    min_passes=2,
)(lambda s: s.tuned().bald)
register(
    "star",
    "STAR: dynamic PE (or ME) + Monte-Carlo dropout + hybrid regularisation on lora_B",
    defaults={"uncertainty.mc_passes": 3, "train.b_decay": 0.5},
)(dynamic(None))
register(
    "star-authors",
    "STAR as the authors' code computes it: only the base term normalised, so the raw tuned "
    "term dominates",
    defaults={"uncertainty.mc_passes": 3, "train.b_decay": 0.5},
)(dynamic(None, dynamic_mix_authors))
register(
    "star-ifd",
    "STAR with the base term as IFD: base PE of the answer given the prompt minus without it, "
    "so the answer's own form cancels",
    defaults={"uncertainty.mc_passes": 3, "train.b_decay": 0.5},
)(dynamic_ifd)
register(
    "typical",
    "no uncertainty: the most typical prompt of each k-means cluster the labels do not cover "
    "(TypiClust-style); label-free, no pass of the tuned model",
    selector="cluster",
    defaults={"loop.init_by": "strategy"},
)(lambda s: torch.zeros(s.size))
# label-free by default: a labelling user has no gold answers to measure uncertainty on
LABEL_FREE = {
    "uncertainty.target": "generated",
    "uncertainty.length_norm": True,
    "loop.init_by": "strategy",
}
for _base in ("pe", "entropy", "star", "star-ifd"):
    for _selector, _what in _SELECTOR_NAMES.items():
        _s = STRATEGIES[_base]
        register(
            f"{_base}-{_selector}",
            f"{_base}, {_what}; label-free",
            {**_s.defaults, **LABEL_FREE},
            selector=_selector,
        )(_s.score)

# Closed label sets: the tuned model's distribution over the labels (option likelihood)
LABEL_MEASURES: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "least-confidence": (
        "least confidence 1 − p₁ of the label distribution",
        lambda p: least_confidence(p.mean(0)),
    ),
    "margin": (
        "margin (breaking ties): the smallest gap p₁ − p₂ between the two likeliest labels first",
        lambda p: -margin(p.mean(0)),
    ),
    "label-entropy": ("entropy of the label distribution", lambda p: label_entropy(p.mean(0))),
    "label-bald": ("BALD over Monte-Carlo dropout passes of the label distribution", label_bald),
}


def on_labels(measure: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Signals], torch.Tensor]:
    return lambda s: measure(s.labels())


for _m, (_what, _measure) in LABEL_MEASURES.items():
    _passes = {"uncertainty.mc_passes": 3} if _m == "label-bald" else {}
    _least = 2 if _m == "label-bald" else 1
    register(_m, f"{_what}; closed label sets", _passes, min_passes=_least, closed_labels=True)(
        on_labels(_measure)
    )
    for _selector, _how in _SELECTOR_NAMES.items():
        register(
            f"{_m}-{_selector}",
            f"{_m}, {_how}; closed label sets",
            {**_passes, "loop.init_by": "strategy"},
            selector=_selector,
            min_passes=_least,
            closed_labels=True,
        )(on_labels(_measure))


def _contrastive(s: Signals) -> torch.Tensor:
    """CAL's score on the label distributions and the tuned model's answer states."""
    mine, theirs = same_width(s.labels().mean(0), s.labeled_labels())
    return contrastive_divergence(mine, theirs, *s.answer_embeddings())


register(
    "cal",
    "CAL (Margatina et al. 2021): mean KL from the 10 nearest labelled examples' predictions "
    "to the candidate's, in the tuned model's answer states; closed label sets",
    closed_labels=True,
)(_contrastive)
register(
    "badge",
    "BADGE (Ash et al. 2020): k-means++ seeding on gradient embeddings of the label loss, "
    "uncertain and diverse at once; closed label sets",
    {"uncertainty.embedding": "gradient"},
    selector="badge",
    closed_labels=True,
)(lambda s: torch.zeros(s.size))


def configure(config: RunConfig) -> RunConfig:
    """A config ready to run: its strategy checked and the options it leaves unset filled in
    from the strategy's defaults (config itself knows no strategies)."""
    if config.strategy not in STRATEGIES:
        raise ConfigError(
            f"unknown strategy {config.strategy!r}; choose from: {', '.join(STRATEGIES)}"
        )
    config = with_defaults(config, STRATEGIES[config.strategy].defaults)
    least = STRATEGIES[config.strategy].min_passes
    if config.uncertainty.mc_passes < least:
        raise ConfigError(
            f"strategy {config.strategy} needs uncertainty.mc_passes of at least {least}"
        )
    return config


@dataclass(frozen=True)
class Selected:
    id: str
    score: float
    rank: int  # 0 = labelled first


def _check(ids: Sequence[str], scores: torch.Tensor) -> None:
    if len(ids) != len(scores):
        raise ValueError(f"{len(ids)} ids but {len(scores)} scores")
    if not ids:
        raise EmptyPoolError("no unlabelled examples left to select from")


def _selected(ids: Sequence[str], scores: torch.Tensor, picks: list[int]) -> list[Selected]:
    """Picks as records; a NaN score is recorded as −inf, the rank it was given."""
    values = torch.nan_to_num(scores.double(), nan=float("-inf")).tolist()
    return [Selected(ids[i], values[i], rank) for rank, i in enumerate(picks)]
