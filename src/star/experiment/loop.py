"""A simulated active-learning run (method.md §1): train → evaluate → score → select → label.

Labels come from the dataset (an oracle annotator); each round is the step a labelling project
takes (`active.step.Learner`): a fresh adapter from the base model, as the paper does, and every
random draw seeded from (seed, round), so a resumed run makes exactly the choices an
uninterrupted one makes. Under several processes (`torchrun`), evaluation and scoring are
sharded and gathered (engine.distributed) and every process selects the same examples from the
same gathered scores.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from star.active.step import Learner
from star.config import RunConfig
from star.engine import distributed
from star.engine import model as models
from star.engine.evaluate import evaluate, evaluate_options, summarise
from star.errors import ConfigError
from star.experiment.rundir import RunDir
from star.experiment.tracking import Tracker
from star.experiment.tracking import check as check_tracker
from star.method import stopping
from star.method.strategies import configure
from star.seeds import stop_set
from star.tasks.reading import read_jsonl
from star.tasks.resolve import EVAL_SAMPLE_SEED, Task, resolve, sample
from star.tasks.spec import Example

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Splits:
    pool: list[Example]
    eval: list[Example]


def load_splits(config: RunConfig, task: Task) -> Splits:
    """Pool from the train rows (seeded sample), evaluation rows from the test rows (fixed)."""
    train, test = task.train, task.eval
    short = [
        (name, size, len(rows), kind)
        for name, size, rows, kind in (
            ("pool_size", config.data.pool_size, train, "training"),
            ("eval_size", config.data.eval_size, test, "evaluation"),  # a task file's: held out
        )
        if size is not None and size > len(rows)
    ]
    if short:  # both at once: a user fixes the command once
        said = "; ".join(
            f"data.{n} is {size} but it has {have} {kind} rows" for n, size, have, kind in short
        )
        options = " ".join(f"--{n.replace('_', '-')} {have}" for n, _, have, _ in short)
        raise ConfigError(f"{config.task}: {said}: pass {options} (or fewer) to use them all")
    pool = sample(train, config.data.pool_size, config.seed)
    budget = config.loop.sizes()[-1]
    if budget > len(pool):
        raise ConfigError(
            f"the labelling budget (the last round's labelled set, {budget}) "
            f"exceeds the pool of {len(pool)} examples: pass a --schedule (or --rounds) "
            f"that ends at {len(pool)} or fewer"
        )
    return Splits(pool, sample(test, config.data.eval_size, EVAL_SAMPLE_SEED))


class Run:
    """A run in progress: its examples, the learner (model loaded once) and its directory."""

    def __init__(self, config: RunConfig, out: Path):
        config, task = resolve(configure(config))  # checks every file before writing anything
        self.config = config
        self.spec = task.spec
        self.splits = load_splits(config, task)
        # tokenised once, up front, and checked to fit before the weights load
        self.learner = Learner(config, task.spec, examples=self.splits.pool + self.splits.eval)
        self.learner.check_strategy(self.splits.pool)  # before the directory exists
        by_id = {e.id: e for e in self.splits.pool}
        self.stop_set = [
            by_id[i] for i in stop_set(list(by_id), config.loop.stop_examples(), config.seed)
        ]
        self._init_seconds: float | None = None  # choosing round 0's labels, when it took any
        self.dir = RunDir.open(out, config)  # last: a config that cannot run leaves no directory

    def run(
        self, on_round: Callable[[dict], None] | None = None, report_to: str = "none"
    ) -> list[dict]:
        """Do every round not yet finished; returns the metrics of all rounds. Each new round
        also goes to the `report_to` tracker (experiment.tracking)."""
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
            chosen = self.choose(self.learner.base, -1, labeled, self.config.loop.init_size)
            labeled = {s.id: 0 for s in chosen}
            self.dir.write_labeled(labeled)
            if self.learner.chooses_first_batch():
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
        train_set = self.labelled(labeled)
        model, loss, key, source = self.train(k, train_set)
        try:
            self.dir.save_adapter(model, k, key, loss)
            seconds["train"] = time.perf_counter() - clock

            clock = time.perf_counter()
            predictions = distributed.map_shards(
                self.splits.eval, lambda part: self.evaluate(model, part), distributed.concat
            )
            self.dir.write_rows(
                self.dir.round_dir(k) / "eval.jsonl", (dataclasses.asdict(p) for p in predictions)
            )
            seconds["eval"] = time.perf_counter() - clock

            stop_row: dict = {}
            if self.stop_set:
                clock = time.perf_counter()
                stop_row = self.stop_check(model, k, train_set)
                seconds["stop"] = time.perf_counter() - clock
            if k + 1 < self.config.loop.rounds and not stop_row.get("stopped"):
                clock = time.perf_counter()
                self.select(model, k, labeled)
                seconds["score"] = time.perf_counter() - clock
        finally:
            self.learner.release(model)
        return {
            "round": k,
            "n_labeled": len(train_set),
            **summarise(predictions),
            "train_loss": loss,
            "seconds": round(sum(seconds.values()), 2),
            "seconds_per_phase": {name: round(s, 2) for name, s in seconds.items()},
            **({"trained_in": str(source)} if source else {}),
            **stop_row,
        }

    def train(self, k: int, train_set: list[Example]) -> tuple[object, float, str, Path | None]:
        """Round k's adapter: loaded where a round with the same training key already trained
        it (`inference.reuse_training`), else trained. Returns (model, loss, key, the run it
        was loaded from or None)."""
        key = self.learner.training_key(k, train_set)
        found = self.dir.trained(k, key) if self.config.inference.reuse_training else None
        if found is not None:
            adapter, loss = found
            try:
                model = self.learner.load_adapter(adapter)
            except (OSError, ValueError) as e:  # replaced while read: train it here
                log.warning("round %d: could not load %s (%s); training instead", k, adapter, e)
            else:
                source = adapter.parents[2]
                log.info(
                    "round %d: the same training already ran in %s; its adapter is used", k, source
                )
                return model, loss, key, source
        model, loss = self.learner.train(k, train_set)
        return model, loss, key, None

    def labelled(self, labeled: dict[str, int]) -> list[Example]:
        """The labelled pool examples, in pool order (the order training reads them in)."""
        return [e for e in self.splits.pool if e.id in labeled]

    def stop_check(self, model, k: int, train_set: list[Example]) -> dict:
        """Round k's answers to the stop set (rounds/k/stop.jsonl) and every rule's figure on
        the rounds so far; `stopped` when the run's rule (`loop.stop`) says stop."""
        rows = self.learner.stop_rows(model, self.stop_set, train_set)
        self.dir.write_rows(self.dir.round_dir(k) / "stop.jsonl", rows)
        history = [
            stopping.from_rows(read_jsonl(self.dir.round_dir(j) / "stop.jsonl", ("id",)))
            for j in range(k)
        ] + [stopping.from_rows(rows)]
        loop = self.config.loop
        found = stopping.decisions(history, loop.stop, loop.stop_threshold)
        row: dict = {"stop": {d.rule: d.figure for d in found}}
        if loop.stop:
            chosen = next(d for d in found if d.rule == loop.stop)
            row["stopped"] = chosen.stop
            if chosen.stop:
                log.info("round %d: %s", k, chosen.line())
        return row

    def evaluate(self, model, examples: list[Example]) -> list:
        """Predictions on the evaluation examples, graded by the task."""
        learner, inference = self.learner, self.config.inference
        prompts = learner.encode(examples)
        with models.merged(model, learner.merge):
            if inference.eval_mode == "options":
                return evaluate_options(
                    model, learner.tokenizer, self.spec, examples, prompts, learner.batch_tokens
                )
            return evaluate(
                model,
                learner.tokenizer,
                self.spec,
                examples,
                prompts,
                inference.eval_batch_size,
                learner.batch_tokens,
            )

    def choose(self, model, after_round: int, labeled: dict[str, int], want: int) -> list:
        """The learner's `want` picks among the unlabelled pool (see `Learner.choose`)."""
        unlabelled = [e for e in self.splits.pool if e.id not in labeled]
        choice = self.learner.choose(model, after_round, unlabelled, self.labelled(labeled), want)
        return choice.selected

    def select(self, model, k: int, labeled: dict[str, int]) -> None:
        sizes = self.config.loop.sizes()
        want = sizes[k + 1] - sizes[k]
        chosen = self.choose(model, k, labeled, want)
        if len(chosen) < want:
            log.warning("only %d unlabelled examples were left to select", len(chosen))
        by_id = {e.id: e for e in self.splits.pool}
        encoded = self.learner.encode([by_id[s.id] for s in chosen])
        self.dir.write_rows(
            self.dir.round_dir(k) / "selected.jsonl",
            (
                {**dataclasses.asdict(s), "answer_tokens": len(x.target_ids)}
                for s, x in zip(chosen, encoded, strict=True)
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
