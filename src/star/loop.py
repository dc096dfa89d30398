"""The active-learning rounds (method.md §1): train → evaluate → score → select → label.

Labels come from the dataset (a simulated annotator). Every round starts from the base model
with a fresh adapter, as the paper does; every random draw is seeded from (seed, round), so a
resumed run makes exactly the choices an uninterrupted one makes. Under several processes
(`torchrun`), evaluation and scoring are sharded and gathered (star.distributed) and every
process selects the same examples from the same gathered scores.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from star import distributed, stopping
from star import model as models
from star.cache import SignalCache, signal_root
from star.config import RunConfig
from star.data import Encoded, Example, encode, read_jsonl
from star.errors import ConfigError
from star.evaluate import (
    Answer,
    evaluate,
    evaluate_options,
    label_free_answers,
    option_ids,
    summarise,
)
from star.generate import answer_length
from star.signals import PoolSignals, SignalSettings, base_cache, subsample
from star.state import RunDir
from star.strategies import STRATEGIES, configure
from star.streams import (
    INIT,
    INIT_SELECT,
    INIT_SUBSAMPLE,
    LORA,
    MC,
    SELECT,
    SUBSAMPLE,
    TRAIN,
    derived_seed,
    stop_set,
)
from star.tasks import EVAL_SAMPLE_SEED, Task, resolve, sample
from star.tracking import Tracker
from star.tracking import check as check_tracker
from star.train import train_adapter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    pool: list[Example]
    eval: list[Example]


def load_splits(config: RunConfig, task: Task) -> Splits:
    """Pool from the train rows (seeded sample), evaluation rows from the test rows (fixed)."""
    train, test = task.train, task.eval
    for name, size, rows in (
        ("pool_size", config.data.pool_size, train),
        ("eval_size", config.data.eval_size, test),
    ):
        if size is not None and size > len(rows):
            raise ConfigError(f"data.{name} is {size} but {config.task} has {len(rows)} rows")
    pool = sample(train, config.data.pool_size, config.seed)
    budget = config.loop.sizes()[-1]
    if budget > len(pool):
        raise ConfigError(
            f"the labelling budget (the last round's labelled set, {budget}) "
            f"exceeds the pool of {len(pool)} examples"
        )
    return Splits(pool, sample(test, config.data.eval_size, EVAL_SAMPLE_SEED))


def initial_labels(pool: list[Example], size: int, seed: int) -> dict[str, int]:
    generator = torch.Generator().manual_seed(derived_seed(seed, 0, INIT))
    picks = torch.randperm(len(pool), generator=generator)[:size].tolist()
    return {pool[i].id: 0 for i in sorted(picks)}


class Run:
    """A run in progress: the model and data, loaded once, and its directory."""

    def __init__(self, config: RunConfig, out: Path):
        config, task = resolve(configure(config))  # checks every file before writing anything
        self.config = config
        self.spec = task.spec
        self.splits = load_splits(config, task)
        self.base, self.tokenizer = models.load(config.model)
        self.pad_id = self.tokenizer.pad_token_id
        on = models.device()
        self.batch_tokens = models.batch_tokens(config.inference.batch_tokens, on)
        self.dtype = next(self.base.parameters()).dtype
        self.merge = models.merge_pays(config.inference.merge_lora, on)
        self._base_caches: dict[str, SignalCache] = {}
        self._option_ids: dict[tuple[str, ...], list[list[int]]] = {}
        self._init_seconds: float | None = None  # choosing round 0's labels, when it took any
        d = config.data
        pool_items = encode(
            self.splits.pool, self.tokenizer, d.max_prompt_tokens, d.max_target_tokens
        )
        self.gold = {e.id: x for e, x in zip(self.splits.pool, pool_items, strict=True)}
        self.eval_prompts = encode(
            self.splits.eval, self.tokenizer, d.max_prompt_tokens, d.max_target_tokens
        )
        by_id = {e.id: e for e in self.splits.pool}
        self.stop_set = [
            by_id[i] for i in stop_set(list(by_id), config.loop.stop_examples(), config.seed)
        ]
        self.dir = RunDir.open(out, config)  # last: a config that cannot run leaves no directory

    def run(
        self, on_round: Callable[[dict], None] | None = None, report_to: str = "none"
    ) -> list[dict]:
        """Do every round not yet finished; returns the metrics of all rounds. Each new round
        also goes to the `report_to` tracker (star.tracking)."""
        tracker = Tracker(report_to, self.dir.path, self.config)
        try:
            return self._rounds(on_round, tracker.log)
        finally:
            tracker.close()
            self.dir.close()

    def _rounds(
        self, on_round: Callable[[dict], None] | None, on_new: Callable[[dict], None]
    ) -> list[dict]:
        metrics = self.dir.metrics()
        labeled = self.dir.labeled(up_to_round=len(metrics))
        if not labeled:
            clock = time.perf_counter()
            labeled = self.initial_labels()
            self.dir.write_labeled(labeled)
            if self._strategy_chooses_init():
                self._init_seconds = time.perf_counter() - clock
        for row in metrics:
            if on_round:
                on_round(row)
        for k in range(len(metrics), self.config.loop.rounds):
            if metrics and metrics[-1].get("stopped"):
                break  # the stopping rule ended the run (resumed: nothing left to do)
            row = self.round(k, labeled)
            metrics.append(row)
            self.dir.write_metrics(metrics)  # commits round k
            on_new(row)
            if on_round:
                on_round(row)
        return metrics

    def round(self, k: int, labeled: dict[str, int]) -> dict:
        """Round k; adds the examples it selects to `labeled` (as round k + 1)."""
        seconds: dict[str, float] = {}
        if k == 0 and self._init_seconds is not None:  # round 0's labels chosen by the strategy
            seconds["init"] = self._init_seconds
        clock = time.perf_counter()
        seed = self.config.seed
        model = models.attach_lora(self.base, self.config.lora, derived_seed(seed, k, LORA))
        try:
            train_set = [e for e in self.splits.pool if e.id in labeled]
            eos = [self.tokenizer.eos_token_id]  # the tuned model learns to stop
            items = [
                Encoded(x.prompt_ids, x.target_ids + eos)
                for x in (self.gold[e.id] for e in train_set)
            ]
            loss = train_adapter(
                model, items, self.pad_id, self.config.train, derived_seed(seed, k, TRAIN)
            )
            self.dir.save_adapter(model, k)
            seconds["train"] = time.perf_counter() - clock

            clock = time.perf_counter()
            predictions = distributed.map_shards(
                list(zip(self.splits.eval, self.eval_prompts, strict=True)),
                lambda part: self.evaluate(model, [e for e, _ in part], [x for _, x in part]),
                distributed.concat,
            )
            self.dir.write_rows(
                self.dir.round_dir(k) / "eval.jsonl", (dataclasses.asdict(p) for p in predictions)
            )
            seconds["eval"] = time.perf_counter() - clock

            stop_row: dict = {}
            if self.stop_set:
                clock = time.perf_counter()
                stop_row = self.stop_check(model, k, labeled)
                seconds["stop"] = time.perf_counter() - clock
            if k + 1 < self.config.loop.rounds and not stop_row.get("stopped"):
                clock = time.perf_counter()
                self.select(model, k, labeled)
                seconds["score"] = time.perf_counter() - clock
        finally:
            self.base = model.unload()  # take the adapter off: next round starts fresh
        return {
            "round": k,
            "n_labeled": len(train_set),
            **summarise(predictions),
            "train_loss": loss,
            "seconds": round(sum(seconds.values()), 2),
            "seconds_per_phase": {name: round(s, 2) for name, s in seconds.items()},
            **stop_row,
        }

    def stop_check(self, model, k: int, labeled: dict[str, int]) -> dict:
        """Round k's answers to the stop set (rounds/k/stop.jsonl) and every rule's figure on
        the rounds so far; `stopped` when the run's rule (`loop.stop`) says stop."""
        ids = [e.id for e in self.stop_set]
        length, _ = self.answer_settings(self.stop_set, labeled)
        with models.merged(model, self.merge):
            said = self.answers(model, self.stop_set, length)
        now = stopping.RoundPredictions([a.text for a in said], [a.uncertainty for a in said])
        self.dir.write_rows(self.dir.round_dir(k) / "stop.jsonl", stopping.to_rows(ids, now))
        history = [
            stopping.from_rows(read_jsonl(self.dir.round_dir(j) / "stop.jsonl", ("id",)))
            for j in range(k)
        ] + [now]
        loop = self.config.loop
        found = stopping.decisions(history, loop.stop, loop.stop_threshold)
        row: dict = {"stop": {d.rule: d.figure for d in found}}
        if loop.stop:
            chosen = next(d for d in found if d.rule == loop.stop)
            row["stopped"] = chosen.stop
            if chosen.stop:
                log.info("round %d: %s", k, chosen.line())
        return row

    def answer_options(self, example: Example) -> tuple[tuple[str, ...], list[list[int]]] | None:
        """The example's label set and each label's token ids; None for a free answer."""
        labels = self.options_of(example)
        return (labels, self.option_ids(labels)) if labels else None

    def option_ids(self, labels: tuple[str, ...]) -> list[list[int]]:
        """Each label's token ids as training spells them, tokenised once per label set."""
        if labels not in self._option_ids:
            self._option_ids[labels] = option_ids(self.tokenizer, self.spec, labels)
        return self._option_ids[labels]

    def initial_labels(self) -> dict[str, int]:
        """Round 0's labels: random (the paper), or chosen by the strategy from the base model
        (`loop.init_by strategy`), as a labelling project's first `star next` chooses them."""
        size = self.config.loop.init_size
        if not self._strategy_chooses_init():
            return initial_labels(self.splits.pool, size, self.config.seed)
        return {s.id: 0 for s in self.choose(self.base, -1, {}, size)}

    def _strategy_chooses_init(self) -> bool:
        return self.config.loop.init_by == "strategy" and self.config.strategy != "random"

    def evaluate(self, model, examples: list[Example], prompts: list[Encoded]) -> list:
        with models.merged(model, self.merge):
            return self._evaluate(model, examples, prompts)

    def _evaluate(self, model, examples: list[Example], prompts: list[Encoded]) -> list:
        if self.config.inference.eval_mode == "options":
            return evaluate_options(
                model, self.tokenizer, self.spec, examples, prompts, self.batch_tokens
            )
        return evaluate(
            model,
            self.tokenizer,
            self.spec,
            examples,
            prompts,
            self.config.inference.eval_batch_size,
            self.batch_tokens,
        )

    def answer(self, model, examples: list[Example], length: int) -> list[list[int]]:
        """The model's answers, which label-free uncertainty is measured on, as a labelling
        project's `next` answers them (`evaluate.label_free_answers`)."""
        return [a.token_ids for a in self.answers(model, examples, length)]

    def answers(self, model, examples: list[Example], length: int) -> list[Answer]:
        """Every example's label-free answer, shared over the processes in rank order."""
        return distributed.map_shards(
            examples,
            lambda part: label_free_answers(
                model,
                self.tokenizer,
                [self.gold[e.id] for e in part],
                [self.answer_options(e) for e in part],
                length,
                self.config.inference.eval_batch_size,
                self.batch_tokens,
            ),
            distributed.concat,
        )

    def options_of(self, example: Example) -> tuple[str, ...]:
        """The example's closed label set (its own choices, else the task's), or ()."""
        return example.choices or self.spec.labels or ()

    def options_key(self, example: Example) -> list[int]:
        """What besides the prompt decides a label-free answer: the label set (a cache key)."""
        labels = self.options_of(example)
        return (
            self.tokenizer("\x1f".join(labels), add_special_tokens=False)["input_ids"]
            if labels
            else []
        )

    def answer_settings(
        self, candidates: list[Example], labeled: dict[str, int]
    ) -> tuple[int, str]:
        """(length, kind) of the candidates' label-free answers: the length for free answers from
        the labelled ones (`generate.answer_length`); the kind names the rule in cache keys."""
        longest = max((len(self.gold[i].target_ids) for i in labeled), default=None)
        length = answer_length(longest, self.spec.max_new_tokens)
        free = any(not self.options_of(e) for e in candidates)
        return length, f"options+greedy:{length}" if free else "options"

    def base_cache(self, kind: str, settings: SignalSettings) -> SignalCache:
        """One per run, kind and answer rule: in memory when the cache is off (the first need
        fills it)."""
        key = f"{kind}|{settings.answer_kind}"
        if key not in self._base_caches:
            root = signal_root(models.cache_dir()) if self.config.inference.signal_cache else None
            self._base_caches[key] = base_cache(root, self.base, self.dtype, settings, kind)
        return self._base_caches[key]

    def signal_settings(self, k: int, answer_kind: str) -> SignalSettings:
        return SignalSettings.of(
            self.config.uncertainty,
            batch_tokens=self.batch_tokens,
            mc_seed=derived_seed(self.config.seed, k, MC),
            merge=self.merge,
            answer_kind=answer_kind,
            start_id=models.start_id(self.tokenizer),
        )

    def _subsample(self) -> int | None:
        """Candidate subsampling saves scoring; a strategy that scores nothing keeps all."""
        strategy = STRATEGIES[self.config.strategy]
        return self.config.loop.max_candidates if strategy.reads_model else None

    def choose(self, model, k: int, labeled: dict[str, int], want: int) -> list:
        """The strategy's `want` picks among the unlabelled pool after round k (k = −1: before
        any training, on the base model). The one selection path with `Project.next`."""
        unlabeled = [e for e in self.splits.pool if e.id not in labeled]
        seed, before = self.config.seed, k < 0  # round 0's choice has streams of its own
        subset = torch.Generator().manual_seed(
            derived_seed(seed, max(k, 0), INIT_SUBSAMPLE if before else SUBSAMPLE)
        )
        keep = subsample(len(unlabeled), self._subsample(), subset)
        candidates = [unlabeled[i] for i in keep]
        u = self.config.uncertainty
        items = [self.gold[e.id] for e in candidates]
        length, answer_kind = self.answer_settings(candidates, labeled)
        settings = self.signal_settings(max(k, 0), answer_kind)
        source = PoolSignals(
            model,
            items,
            self.pad_id,
            settings,
            lambda m, positions, _: self.answer(m, [candidates[i] for i in positions], length),
            lambda kind: self.base_cache(kind, settings),
            answer_keys=[self.options_key(e) for e in candidates],
            labeled=[self.gold[e.id].prompt_ids for e in self.splits.pool if e.id in labeled],
        )
        signals = source.signals(
            max(k, 0),
            torch.Generator().manual_seed(
                derived_seed(seed, max(k, 0), INIT_SELECT if before else SELECT)
            ),
            dynamic_w0=u.dynamic_w0,
            dynamic_step=u.dynamic_step,
            star_measure=u.star_measure,
        )
        return STRATEGIES[self.config.strategy].choose(signals, [e.id for e in candidates], want)

    def select(self, model, k: int, labeled: dict[str, int]) -> None:
        sizes = self.config.loop.sizes()
        want = sizes[k + 1] - sizes[k]
        chosen = self.choose(model, k, labeled, want)
        if len(chosen) < want:
            log.warning("only %d unlabelled examples were left to select", len(chosen))
        self.dir.write_rows(
            self.dir.round_dir(k) / "selected.jsonl",
            (
                {**dataclasses.asdict(s), "answer_tokens": len(self.gold[s.id].target_ids)}
                for s in chosen
            ),
        )
        labeled.update({s.id: k + 1 for s in chosen})
        self.dir.write_labeled(labeled)


def run(
    config: RunConfig,
    out: Path,
    on_round: Callable[[dict], None] | None = None,
    report_to: str = "none",
) -> list[dict]:
    """Start or resume the run in `out`; returns one metrics row per finished round."""
    check_tracker(report_to)  # before loading anything
    return Run(config, out).run(on_round, report_to)
