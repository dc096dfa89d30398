"""What a strategy may look at, computed only when it asks: the one path by which a simulated
run and a labelling project score their candidates (through `active.step.Learner.choose`).

A strategy reads `Signals.tuned()` / `Signals.base()`; `PoolSignals` answers them with the
forward passes they need and nothing else (`random` costs none), memoised, so a strategy that
reads a signal twice pays once. The base model's signals go through a `SignalCache`, shared by
every run on the machine. Two approximations are options, both off unless asked for:
  - two-stage Monte-Carlo (`mc_top` = M): one deterministic pass over every candidate, the K
    dropout passes only over the M it ranks most uncertain; the others keep their
    deterministic PE/ME and a BALD of 0;
  - candidate subsampling (`loop.max_candidates`, drawn by the step): score a seeded random
    subset of the candidates.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from star.config import UncertaintyConfig
from star.engine import distributed
from star.engine import model as models
from star.engine.batching import Encoded
from star.engine.cache import SignalCache, namespace, weights_fingerprint
from star.engine.options import option_logprobs
from star.engine.scoring import causal_lm, embed, score
from star.errors import ConfigError
from star.method.strategies import Signals
from star.method.uncertainty import SequenceScores, gradient_embedding, same_width

# answer(model, positions, base): the model's answers (token ids) to the candidates at these
# positions; `base` is True when the adapter is switched off for them
Answerer = Callable[[object, list[int], bool], list[list[int]]]
_SCORE_COLUMNS = ("pe", "token_entropy", "bald", "n_tokens")
_PRIOR_COLUMNS = ("prior_pe", "prior_token_entropy")  # the same answers with no prompt


@dataclass(frozen=True)
class SignalSettings:
    target: str  # "gold": the items' own targets; "generated": the model's answers
    length_norm: bool
    mc_passes: int  # K for the tuned model
    mc_top: int | None  # two-stage MC: K passes only over this many (None: all)
    star_measure: str  # the measure that ranks candidates for two-stage MC
    batch_tokens: int
    mc_seed: int  # torch seed of the dropout masks
    merge: bool  # deterministic passes on merged LoRA weights
    answer_kind: str  # what `answer` does, e.g. "greedy:32": part of the base cache key
    start_id: int  # the one token an answer is scored after when it has no prompt (IFD prior)

    @classmethod
    def of(cls, u: UncertaintyConfig, **engine) -> SignalSettings:
        """A run's uncertainty options plus what the engine decides (target may be forced:
        a labelling project always measures on the model's own answers)."""
        return cls(
            **{
                "target": u.target,
                "length_norm": u.length_norm,
                "mc_passes": u.mc_passes,
                "mc_top": u.mc_top,
                "star_measure": u.star_measure,
                **engine,
            }
        )


def _closed(options: Sequence[list[list[int]] | None]) -> None:
    if any(o is None for o in options):
        raise ConfigError(
            "this strategy reads the distribution over a closed label set, and some "
            "examples have free answers: give the task its labels (--labels) or every "
            "item its choices, or choose a strategy for free answers"
        )


def base_cache(
    root, model, dtype: torch.dtype, settings: SignalSettings, kind: str = "scores"
) -> SignalCache:
    """The base-model cache of these settings and `kind` ("scores" or "embeddings"): on disk
    under `root`, or in memory if None."""
    if root is None:
        return SignalCache(None, f"memory-{kind}")
    if kind == "embeddings":  # a prompt's embedding depends on nothing else
        return SignalCache(
            root,
            namespace(kind="base-embeddings", weights=base_fingerprint(model), dtype=str(dtype)),
        )
    space = namespace(
        kind="base-scores+prior",
        start=settings.start_id,
        weights=base_fingerprint(model),
        dtype=str(dtype),
        target=settings.target,
        length_norm=settings.length_norm,
        answer=settings.answer_kind if settings.target == "generated" else None,
    )
    return SignalCache(root, space)


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def base_fingerprint(model) -> str:
    """Once per loaded model: its base weights never change (see `models.merged`)."""
    lm = causal_lm(model)
    if lm not in _FINGERPRINTS:
        _FINGERPRINTS[lm] = weights_fingerprint(model)
    return _FINGERPRINTS[lm]


class PoolSignals:
    """Signals of n candidates for one selection.

    model: the tuned model (a PEFT model) or, before any training, the base model itself
    items: (n,) prompts with gold targets (target "gold") or any targets (ignored otherwise)
    answer: how the model answers (target "generated"); answer_keys: (n,) extra tokens that
      make an answer's cache key (a row's own choices), or None
    cache(kind): the base model's cache of "scores" or "embeddings", asked for only when a
      strategy reads `base()` or `embeddings()`
    labeled: the labelled examples' prompts (token ids), for `labeled_embeddings()`
    options: (n,) each candidate's labels as token ids (`options.option_ids`), or None where it
      has no closed label set, for `labels()`; labeled_options: the same of the labelled
      examples, for their gradient embeddings
    """

    def __init__(
        self,
        model,
        items: list[Encoded],
        pad_id: int,
        settings: SignalSettings,
        answer: Answerer,
        cache: Callable[[str], SignalCache],
        answer_keys: Sequence[list[int]] | None = None,
        labeled: Sequence[list[int]] = (),
        options: Sequence[list[list[int]] | None] | None = None,
        labeled_options: Sequence[list[list[int]] | None] | None = None,
    ):
        self.model, self.items, self.pad_id, self.s = model, items, pad_id, settings
        self.answer, self.cache = answer, cache
        self.answer_keys = answer_keys or [[] for _ in items]
        self.labeled = list(labeled)
        self.options = list(options) if options is not None else [None] * len(items)
        self.labeled_options = (
            list(labeled_options) if labeled_options is not None else [None] * len(self.labeled)
        )
        self.adapted = hasattr(model, "disable_adapter")
        self.tuned = functools.cache(self._tuned)
        self.base = functools.cache(self._base)
        self.base_prior = functools.cache(self._base_prior)
        self._base_rows = functools.cache(self._fetch_base_rows)
        self.tuned_answers = functools.cache(self._tuned_answers)
        self._embedded = functools.cache(self._embed_all)
        self.labels = functools.cache(self._labels)
        self._fixed_labels = functools.cache(self._deterministic_labels)
        self.labeled_labels = functools.cache(self._labeled_labels)
        self.answer_embeddings = functools.cache(self._answer_states)
        self.gradient_embeddings = functools.cache(self._gradients)

    def signals(self, round: int, generator: torch.Generator, **mix) -> Signals:
        return Signals(
            size=len(self.items),
            round=round,
            generator=generator,
            tuned=self.tuned,
            base=self.base,
            base_prior=self.base_prior,
            embeddings=lambda: self._embedded()[: len(self.items)],
            labeled_embeddings=lambda: self._embedded()[len(self.items) :],
            labels=self.labels,
            labeled_labels=self.labeled_labels,
            answer_embeddings=self.answer_embeddings,
            gradient_embeddings=self.gradient_embeddings,
            **mix,
        )

    # ------------------------------------------------------------------ tuned model
    def _tuned_answers(self) -> list[list[int]]:
        with models.merged(self.model, self.s.merge and self.adapted):
            return self.answer(self.model, list(range(len(self.items))), False)

    def _targets(self) -> list[Encoded]:
        if self.s.target == "gold":
            return self.items
        answers = self.tuned_answers()
        return [Encoded(x.prompt_ids, a) for x, a in zip(self.items, answers, strict=True)]

    def _tuned(self) -> SequenceScores:
        items = self._targets()
        passes = self.s.mc_passes if self.adapted else 1  # no dropout before any training
        if passes == 1:
            with models.merged(self.model, self.s.merge and self.adapted):
                return self._score(items, 1, "scoring (tuned)")
        top = self.s.mc_top
        if top is None or top >= len(items):
            return self._mc(items, "scoring (tuned, MC)")
        with models.merged(self.model, self.s.merge):
            first = self._score(items, 1, "scoring (tuned, stage 1)")
        measure = first.pe if self.s.star_measure == "pe" else first.token_entropy
        order = sorted(range(len(items)), key=lambda i: (-float(measure[i]), i))[:top]
        index = torch.tensor(sorted(order), dtype=torch.long)
        mc = self._mc([items[i] for i in index.tolist()], "scoring (tuned, MC top)")
        pe, ent, bald = first.pe.clone(), first.token_entropy.clone(), torch.zeros(len(items))
        pe[index], ent[index], bald[index] = mc.pe, mc.token_entropy, mc.bald
        return SequenceScores(pe, ent, bald, first.n_tokens)

    def _mc(self, items: list[Encoded], desc: str) -> SequenceScores:
        torch.manual_seed(self.s.mc_seed)  # the dropout masks
        with models.mc_dropout(self.model):
            return self._score(items, self.s.mc_passes, desc)

    def _score(self, items: list[Encoded], passes: int, desc: str) -> SequenceScores:
        return distributed.map_shards(
            items,
            lambda part: score(
                self.model,
                part,
                self.pad_id,
                self.s.batch_tokens,
                passes=passes,
                length_norm=self.s.length_norm,
                desc=desc,
            ),
            SequenceScores.cat,
        )

    def _labels(self) -> torch.Tensor:
        """(K, n, L) p(label | prompt) of the tuned model, renormalised over each candidate's
        labels (what `evaluate_options` reads), K Monte-Carlo passes when the adapter has
        dropout and K > 1; rows padded with 0 to the widest label set."""
        passes = self.s.mc_passes if self.adapted else 1  # no dropout before any training
        if passes == 1:
            return self._fixed_labels()[None]
        _closed(self.options)
        torch.manual_seed(self.s.mc_seed)  # the dropout masks
        with models.mc_dropout(self.model):
            return torch.stack([self._label_pass(self.items, self.options) for _ in range(passes)])

    def _deterministic_labels(self) -> torch.Tensor:
        """(n, L) the candidates' label distributions from one deterministic pass."""
        _closed(self.options)
        with models.merged(self.model, self.s.merge and self.adapted):
            return self._label_pass(self.items, self.options)

    def _label_pass(
        self, items: Sequence[Encoded], options: Sequence[list[list[int]] | None]
    ) -> torch.Tensor:
        """(n, L) one pass's label distributions of `items` over their `options`."""
        pairs = list(zip(items, options, strict=True))
        logp = distributed.map_shards(
            pairs,
            lambda part: option_logprobs(
                self.model,
                [Encoded(x.prompt_ids, []) for x, _ in part],
                [o for _, o in part],
                self.pad_id,
                self.s.batch_tokens,
            ),
            distributed.concat,
        )
        out = torch.zeros(len(logp), max((len(o) for o in options), default=0))  # (n, L)
        for row, values in zip(out, logp, strict=True):
            row[: len(values)] = torch.softmax(values, -1)
        return out

    def _labeled_labels(self) -> torch.Tensor:
        """(m, L') the labelled examples' label distributions, one deterministic pass."""
        _closed(self.labeled_options)
        with models.merged(self.model, self.s.merge and self.adapted):
            return self._label_pass([Encoded(p, []) for p in self.labeled], self.labeled_options)

    def _answer_states(self) -> tuple[torch.Tensor, torch.Tensor]:
        """((n, H), (m, H)): the tuned model's state at the last prompt token, where the answer
        starts, of the candidates and the labelled examples."""
        prompts = [x.prompt_ids for x in self.items] + self.labeled
        with models.merged(self.model, self.s.merge and self.adapted):
            states = distributed.map_shards(
                prompts,
                lambda part: embed(
                    self.model, part, self.pad_id, self.s.batch_tokens, "answer states", True
                ),
                torch.cat,
            )
        return states[: len(self.items)], states[len(self.items) :]

    def _gradients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """((n, L·H), (m, L·H)) BADGE's gradient embeddings of candidates and labelled examples:
        each with its own label distribution and the model's prediction as the target."""
        candidates, labelled = self.answer_embeddings()
        mine, known = same_width(self._fixed_labels(), self.labeled_labels())  # (n|m, L)
        return gradient_embedding(mine, candidates), gradient_embedding(known, labelled)

    # ------------------------------------------------------------------ base model
    def _base(self) -> SequenceScores:
        """Never changes for an example: looked up in the cache, computed for what is missing."""
        if not self.adapted:  # before the first round the tuned model is the base model
            return self.tuned()
        rows = self._base_rows()
        return SequenceScores(*(torch.stack([r[c] for r in rows]) for c in _SCORE_COLUMNS))

    def _base_prior(self) -> SequenceScores:
        """The base model's scores of the answers `base()` measures, with no prompt before them
        (only `start_id`): what the answer's own form costs, whatever the question."""
        if not self.adapted:
            return self._prior(self._targets())
        rows = self._base_rows()
        pe, entropy = (torch.stack([r[c] for r in rows]) for c in _PRIOR_COLUMNS)
        n_tokens = torch.stack([r["n_tokens"] for r in rows])
        return SequenceScores(pe, entropy, torch.zeros_like(pe), n_tokens)

    def _fetch_base_rows(self) -> list[dict[str, torch.Tensor]]:
        gold = self.s.target == "gold"
        cache = self.cache("scores")
        keys = [
            cache.key(x.prompt_ids, x.target_ids if gold else extra)
            for x, extra in zip(self.items, self.answer_keys, strict=True)
        ]
        return cache.fetch(keys, self._base_columns)

    def _base_columns(self, missing: list[int]) -> dict[str, torch.Tensor]:
        items = [self.items[i] for i in missing]
        with self.model.disable_adapter():
            if self.s.target == "generated":
                answers = self.answer(self.model, missing, True)
                items = [Encoded(x.prompt_ids, a) for x, a in zip(items, answers, strict=True)]
            scores = self._score(items, 1, "scoring (base)")
            prior = self._prior(items)
        return {
            **{c: getattr(scores, c) for c in _SCORE_COLUMNS},
            "prior_pe": prior.pe,
            "prior_token_entropy": prior.token_entropy,
        }

    def _prior(self, items: list[Encoded]) -> SequenceScores:
        """Scores of the items' answers after `start_id` alone; an answer is scored once however
        many items give it (a closed label set has few)."""
        answers = list(dict.fromkeys(tuple(x.target_ids) for x in items))
        scores = self._score(
            [Encoded([self.s.start_id], list(a)) for a in answers], 1, "scoring (base, no prompt)"
        )
        at = {a: i for i, a in enumerate(answers)}
        return scores.take(torch.tensor([at[tuple(x.target_ids)] for x in items]))

    def _embed_all(self) -> torch.Tensor:
        """(n + m, H) base-model prompt embeddings, candidates then labelled, through the cache."""
        prompts = [x.prompt_ids for x in self.items] + self.labeled
        cache = self.cache("embeddings")
        rows = cache.fetch([cache.key(p, []) for p in prompts], self._embedding_column(prompts))
        return torch.stack([r["embedding"] for r in rows])

    def _embedding_column(self, prompts: list[list[int]]):
        def compute(missing: list[int]) -> dict[str, torch.Tensor]:
            context = self.model.disable_adapter() if self.adapted else contextlib.nullcontext()
            with context:
                return {
                    "embedding": distributed.map_shards(
                        [prompts[i] for i in missing],
                        lambda part: embed(self.model, part, self.pad_id, self.s.batch_tokens),
                        torch.cat,
                    )
                }

        return compute
