"""One active-learning step, the same for a simulated run and a labelling project.

A round trains a fresh LoRA adapter on every label so far (as the paper retrains each round),
answers the stop set, and chooses what to label next. `experiment.loop` (labels from the
dataset) and `labelling.project` (labels from people) both do it through `Learner`, so a
simulated run with an oracle annotator is, by construction, what a project does: the same
encoding, training order, seeds, answers, signals and strategy call.

Rounds are numbered from 0; a choice is made *after* round r (r = -1: before any training, on
the base model). Every draw comes from (seed, round, stream) (`star.seeds`), so resuming or
re-running a step makes the same choice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from star.config import RunConfig
from star.engine import distributed, memory
from star.engine import model as models
from star.engine.answers import Answer, label_free_answers
from star.engine.batching import Encoded, encode
from star.engine.cache import SignalCache, signal_root
from star.engine.generate import answer_length
from star.engine.options import option_ids
from star.engine.signals import PoolSignals, SignalSettings, base_cache, base_fingerprint
from star.engine.train import train_adapter
from star.errors import ConfigError
from star.method import stopping
from star.method.strategies import STRATEGIES, Selected
from star.seeds import (
    INIT,
    INIT_SELECT,
    INIT_SUBSAMPLE,
    LORA,
    MC,
    SELECT,
    SUBSAMPLE,
    TRAIN,
    derived_seed,
    generator,
    subset,
)
from star.tasks.spec import Example, TaskSpec
from star.version import __version__

Options = tuple[tuple[str, ...], list[list[int]]]  # a label set and each label's token ids
TRAINING_KEY_VERSION = 1  # bump when training changes what the same inputs produce


def memory_need(config: RunConfig, encoded: Sequence[Encoded], on) -> memory.Need:
    """What `config` needs on device `on` for these examples, from the model's config.json
    (no weights); memory.NotEstimated for a model that is not a Llama-style decoder."""
    lengths = [(len(x.prompt_ids), len(x.target_ids)) for x in encoded]
    model_config = models.read_config(config.model.name)
    return memory.need(config, model_config, lengths, on, *models.resolved(config, on))


@dataclass(frozen=True)
class Choice:
    """What a step chose: up to `want` ids in pick order, and the tuned model's answers it
    already computed on the way (a project shows them as pre-annotations)."""

    selected: list[Selected]
    answered: dict[str, Answer]
    candidates: int  # how many unlabelled examples it chose among (after any subsampling)


class Learner:
    """The base model and what a round does with it.

    config: the run options (strategy, seed, LoRA, training, uncertainty, inference)
    spec: how examples read (`target` of a label, the task's label set, answer length cap)
    target: what uncertainty is measured on, if not the config's: a project has no gold
      answers and always measures on the model's own ("generated")
    """

    def __init__(
        self,
        config: RunConfig,
        spec: TaskSpec,
        target: str | None = None,
        examples: Sequence[Example] = (),
    ):
        self.config, self.spec = config, spec
        self.target = target or config.uncertainty.target
        self._encoded: dict[Example, Encoded] = {}
        on = models.device()
        models.check_runtime(config.model, on)
        self.tokenizer = models.load_tokenizer(config.model)
        self._check_memory(examples, on)  # before the weights load
        self.base = models.load_weights(config.model)
        self.batch_tokens = models.batch_tokens(config.inference.batch_tokens, on)
        self.merge = models.merge_pays(
            config.inference.merge_lora, on, config.model.quantize != "none"
        )
        self.dtype = next(self.base.parameters()).dtype
        self._option_ids: dict[tuple[str, ...], list[list[int]]] = {}
        self._base_caches: dict[str, SignalCache] = {}

    def _check_memory(self, examples: Sequence[Example], on) -> None:
        """Refuse a configuration whose longest batch cannot fit on the device (`examples`:
        those the run will train on or score, tokenised here once). Models that are not
        Llama-style decoders are not estimated."""
        try:
            need = memory_need(self.config, self.encode(examples), on)
        except memory.NotEstimated:
            return
        memory.check_fits(need, on)

    # ------------------------------------------------------------------ reading examples
    def encode(self, examples: Sequence[Example]) -> list[Encoded]:
        """Prompt and target token ids, tokenised once per example."""
        new = [e for e in dict.fromkeys(examples) if e not in self._encoded]
        if new:
            d = self.config.data
            done = encode(new, self.tokenizer, d.max_prompt_tokens, d.max_target_tokens)
            self._encoded.update(zip(new, done, strict=True))
        return [self._encoded[e] for e in examples]

    def labels_of(self, example: Example) -> tuple[str, ...]:
        """The example's closed label set (its own choices, else the task's), or ()."""
        return example.choices or self.spec.labels or ()

    def options(self, example: Example) -> Options | None:
        """The example's label set and each label's token ids as training spells them
        (tokenised once per label set); None for a free answer."""
        labels = self.labels_of(example)
        if not labels:
            return None
        if labels not in self._option_ids:
            self._option_ids[labels] = option_ids(self.tokenizer, self.spec, labels)
        return labels, self._option_ids[labels]

    def answer_length(self, labelled: Sequence[Example]) -> int:
        """New tokens for a free answer: from the longest labelled target
        (`generate.answer_length`), capped by the task's generation length."""
        longest = max((len(x.target_ids) for x in self.encode(labelled)), default=None)
        return answer_length(longest, self.spec.max_new_tokens)

    # ------------------------------------------------------------------ a round
    def train(self, round: int, labelled: Sequence[Example]) -> tuple[object, float]:
        """A fresh adapter (seeded by the round) trained on `labelled`, in the given order;
        returns (the PEFT model, the last epoch's mean token loss). `release` takes it off."""
        seed = self.config.seed
        model = models.attach_lora(self.base, self.config.lora, derived_seed(seed, round, LORA))
        eos = [self.tokenizer.eos_token_id]  # the tuned model learns to stop
        items = [Encoded(x.prompt_ids, x.target_ids + eos) for x in self.encode(labelled)]
        loss = train_adapter(
            model,
            items,
            self.tokenizer.pad_token_id,
            self.config.train,
            derived_seed(seed, round, TRAIN),
        )
        return model, loss

    def training_key(self, round: int, labelled: Sequence[Example]) -> str:
        """sha256 of everything `train` reads: two rounds with the same key train the same
        adapter (a sweep's strategies share round 0: the same random labels and seeds)."""
        items = [[x.prompt_ids, x.target_ids] for x in self.encode(labelled)]
        seed = self.config.seed
        text = json.dumps(
            {
                "version": [TRAINING_KEY_VERSION, __version__],
                "weights": base_fingerprint(self.base),
                "dtype": str(self.dtype),
                "quantize": self.config.model.quantize,
                "device": models.device().type,
                "processes": distributed.world_size(),
                "lora": dataclasses.asdict(self.config.lora),
                "train": dataclasses.asdict(self.config.train),
                "seeds": [derived_seed(seed, round, LORA), derived_seed(seed, round, TRAIN)],
                "eos": self.tokenizer.eos_token_id,
                "pad": self.tokenizer.pad_token_id,
                "items": items,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def load_adapter(self, folder: Path):
        """The base model with a saved round's adapter (a project's later commands)."""
        from peft import PeftModel

        return PeftModel.from_pretrained(self.base, folder).eval()

    def release(self, model) -> None:
        """Take the adapter off: the next round starts from the base model again."""
        self.base = model.unload()

    def answers(self, model, examples: Sequence[Example], length: int) -> list[Answer]:
        """Every example's label-free answer (`answers.label_free_answers`), shared over the
        processes in rank order."""
        return distributed.map_shards(
            list(examples),
            lambda part: label_free_answers(
                model,
                self.tokenizer,
                self.encode(part),
                [self.options(e) for e in part],
                length,
                self.config.inference.eval_batch_size,
                self.batch_tokens,
            ),
            distributed.concat,
        )

    def stop_rows(
        self, model, stop_set: Sequence[Example], labelled: Sequence[Example]
    ) -> list[dict]:
        """The tuned model's answers to the stop set, as rows for rounds/NNN/stop.jsonl."""
        with models.merged(model, self.merge):
            said = self.answers(model, stop_set, self.answer_length(labelled))
        now = stopping.RoundPredictions([a.text for a in said], [a.uncertainty for a in said])
        return stopping.to_rows([e.id for e in stop_set], now)

    # ------------------------------------------------------------------ choosing
    def check_strategy(self, examples: Sequence[Example]) -> None:
        """Refuse, before any work, a strategy that reads label distributions (or gradient
        embeddings) on examples of which some have a free answer."""
        strategy = STRATEGIES[self.config.strategy]
        reads = strategy.closed_labels or self.config.uncertainty.embedding == "gradient"
        free = sum(not self.labels_of(e) for e in examples)
        if reads and free:
            raise ConfigError(
                f"strategy {strategy.name} (embedding {self.config.uncertainty.embedding}) reads "
                f"the distribution over a closed label set, and {free} of {len(examples)} "
                "examples have free answers: give the task its labels (--labels) or every item "
                "its choices, or choose a strategy for free answers"
            )

    def chooses_first_batch(self) -> bool:
        """Whether the strategy, not a seeded random draw, picks before any training."""
        return self.config.loop.init_by == "strategy" and self.config.strategy != "random"

    def choose(
        self,
        model,
        after_round: int,
        unlabelled: Sequence[Example],
        covered: Sequence[Example],
        want: int,
    ) -> Choice:
        """The strategy's `want` picks among `unlabelled` after round `after_round` (-1: before
        any training; `model` is then the base model).

        covered: the examples already labelled (or waiting for a label): a spreading selector
        avoids their neighbourhoods, and free answers are as long as their targets need.
        """
        self.check_strategy(unlabelled)
        seed = self.config.seed
        if after_round < 0 and not self.chooses_first_batch():  # the paper's random start
            picks = subset(len(unlabelled), want, generator(seed, 0, INIT))
            return Choice(
                [Selected(unlabelled[i].id, 0.0, r) for r, i in enumerate(picks)],
                {},
                len(unlabelled),
            )
        before, round = after_round < 0, max(after_round, 0)  # round 0's choice: own streams
        strategy = STRATEGIES[self.config.strategy]
        keep = subset(
            len(unlabelled),
            self.config.loop.max_candidates if strategy.reads_model else None,
            generator(seed, round, INIT_SUBSAMPLE if before else SUBSAMPLE),
        )
        candidates = [unlabelled[i] for i in keep]
        length = self.answer_length([e for e in covered if e.target])
        settings = self.signal_settings(round, self.answer_kind(candidates, length))
        answered: dict[str, Answer] = {}

        def answer(m, positions: list[int], of_base: bool) -> list[list[int]]:
            said = self.answers(m, [candidates[i] for i in positions], length)
            if not of_base:
                answered.update((candidates[i].id, a) for i, a in zip(positions, said, strict=True))
            return [a.token_ids for a in said]

        source = PoolSignals(
            model,
            self.encode(candidates),
            self.tokenizer.pad_token_id,
            settings,
            answer,
            lambda kind: self.base_cache(kind, settings),
            answer_keys=[self._options_key(e) for e in candidates],
            labeled=[x.prompt_ids for x in self.encode(covered)],
            options=[self._option_ids_of(e) for e in candidates],
            labeled_options=[self._option_ids_of(e) for e in covered],
        )
        u = self.config.uncertainty
        signals = source.signals(
            round,
            generator(seed, round, INIT_SELECT if before else SELECT),
            dynamic_w0=u.dynamic_w0,
            dynamic_step=u.dynamic_step,
            star_measure=u.star_measure,
            embedding=u.embedding,
        )
        chosen = strategy.choose(signals, [e.id for e in candidates], want)
        return Choice(chosen, answered, len(candidates))

    def _option_ids_of(self, example: Example) -> list[list[int]] | None:
        found = self.options(example)
        return found[1] if found else None

    def _options_key(self, example: Example) -> list[int]:
        """What besides the prompt decides a label-free answer: the label set (a cache key)."""
        labels = self.labels_of(example)
        if not labels:
            return []
        return self.tokenizer("\x1f".join(labels), add_special_tokens=False)["input_ids"]

    def answer_kind(self, candidates: Sequence[Example], length: int) -> str:
        """How the candidates' label-free answers are made, as base-cache keys name it."""
        free = any(not self.labels_of(e) for e in candidates)
        return f"options+greedy:{length}" if free else "options"

    def signal_settings(self, round: int, answer_kind: str) -> SignalSettings:
        """The uncertainty options and the engine's settings of round `round`'s signals."""
        return SignalSettings.of(
            self.config.uncertainty,
            target=self.target,
            batch_tokens=self.batch_tokens,
            mc_seed=derived_seed(self.config.seed, round, MC),
            merge=self.merge,
            answer_kind=answer_kind,
            start_id=models.start_id(self.tokenizer),
        )

    def base_cache(self, kind: str, settings: SignalSettings) -> SignalCache:
        """One per kind and answer rule: on disk under $STAR_CACHE/signals, or in memory when
        the cache is off (the first need fills it)."""
        key = f"{kind}|{settings.answer_kind}"
        if key not in self._base_caches:
            root = signal_root(models.cache_dir()) if self.config.inference.signal_cache else None
            self._base_caches[key] = base_cache(root, self.base, self.dtype, settings, kind)
        return self._base_caches[key]
