"""The experiment commands: run, sweep, report, strategies, tasks."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from star import config as cfg
from star.cli.options import add_config_options, given
from star.errors import ConfigError
from star.version import __version__

EPILOG = """\
Options given on the command line override --config FILE.yaml, which overrides the defaults.
Re-running on an existing --out resumes after its last finished round; without --config the
saved config is the base, so `star run --out DIR` alone resumes DIR."""


def add_run(sub) -> None:
    run = sub.add_parser(
        "run",
        help="run (or resume) a simulated active-learning experiment",
        description="Each round: LoRA-train the base model on all labels so far, evaluate, "
        "score the unlabelled pool with the strategy, label the top --query-size.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--out",
        type=Path,
        required=True,
        help="run directory: config, labels, metrics, adapters (resumable)",
    )
    run.add_argument("--config", type=Path, help="YAML file of options (nested as config.yaml)")
    run.add_argument("-q", "--quiet", action="store_true", help="only the per-round lines")
    run.add_argument(
        "--report-to",
        default="none",
        choices=("none", "tensorboard", "wandb", "mlflow"),
        help="log each round's metrics to this tracker (offline, under OUT/tracking)",
    )
    add_config_options(run)
    run.set_defaults(handler=_run)


def add_commands(sub) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="run every (strategy, seed) pair of an experiment (resumable)",
        description="One `star run` per pair in OUT/STRATEGY-seedN; running the same command "
        "again finishes what is unfinished and skips what is done.",
    )
    sweep.add_argument("--strategies", required=True, help="comma-separated, e.g. random,pe,star")
    sweep.add_argument("--seeds", required=True, help="comma-separated or ranges: 0,1,2 or 0-9")
    sweep.add_argument("--out", type=Path, required=True, help="folder of the runs")
    sweep.add_argument(
        "--jobs",
        type=int,
        help="pairs run at once, cores ÷ jobs threads each; unset: one single-thread run per "
        "core (on CPUs the fastest way through a sweep: docs/performance.md)",
    )
    sweep.add_argument("--threads", type=int, help="threads per run instead of cores ÷ jobs")
    sweep.add_argument("--config", type=Path, help="YAML file of run options for every pair")
    add_config_options(sweep)
    sweep.set_defaults(handler=_sweep)
    report = sub.add_parser("report", help="curves, tables and paired comparisons of runs")
    report.add_argument("runs", type=Path, nargs="+", help="folders holding runs (searched)")
    report.add_argument("--out", type=Path, required=True, help="report folder")
    report.add_argument(
        "--rounds",
        type=int,
        help="only each run's first K rounds (e.g. 1: round 0, where strategies share the "
        "same random labels and differ only in training settings)",
    )
    report.add_argument(
        "--aulc-axis",
        choices=("labels", "log-labels"),
        default="labels",
        help="the area's x: labelled examples, or their log2 (each doubling of the labels "
        "weighs the same; for schedules that double) [default: labels]",
    )
    report.set_defaults(handler=_report)
    estimate = sub.add_parser(
        "estimate",
        help="the memory a run needs, before anything loads",
        description="Weights, LoRA with its gradients and AdamW state, activations at the "
        "longest training batch of the run's own examples, answer logits and inference, from "
        "the model's config.json; nothing is trained and no weight is loaded.",
    )
    estimate.add_argument("--config", type=Path, help="YAML file of run options")
    estimate.add_argument(
        "--for",
        dest="target",
        choices=("cuda", "cpu"),
        help="estimate for this kind of device instead of this machine's (e.g. plan a GPU run "
        "on a laptop: bf16, CUDA's dropout masks, its token budget)",
    )
    add_config_options(estimate)
    estimate.set_defaults(handler=_estimate)
    sub.add_parser("strategies", help="list the query strategies").set_defaults(handler=_strategies)
    sub.add_parser("tasks", help="list the built-in tasks").set_defaults(handler=_tasks)


def _sweep(args: argparse.Namespace) -> int:
    from star.api import make_config
    from star.experiment.sweep import Pair, cost, sweep
    from star.method.strategies import STRATEGIES

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in STRATEGIES:
            raise ConfigError(f"unknown strategy {s!r}; choose from: {', '.join(STRATEGIES)}")
    seeds = _seeds(args.seeds)
    for flag, value in (("jobs", args.jobs), ("threads", args.threads)):
        if value is not None and value < 1:
            raise ConfigError(f"--{flag} must be at least 1, got {value}")
    options = given(args)
    options.pop("strategy", None)
    options.pop("seed", None)
    make_config(options, args.config)  # every pair's options checked before any run starts
    known = {o.path: o for o in cfg.options()}
    run_args = [] if args.config is None else ["--config", str(args.config)]
    for path, value in options.items():
        value = ",".join(map(str, value)) if isinstance(value, tuple) else value
        run_args += [f"--{known[path].flag}", str(value)]
    # Seed-major, so a sweep stopped early still compares every strategy on the same seeds;
    # within a seed the costliest first, so no core idles behind one long last run.
    pairs = [Pair(s, seed) for seed in seeds for s in sorted(strategies, key=cost, reverse=True)]
    jobs = args.jobs or min(len(pairs), os.cpu_count() or 1)
    print(f"{len(pairs)} runs in {args.out}, {jobs} at a time", flush=True)

    def done(pair: Pair, code: int, seconds: float) -> None:
        outcome = "finished" if code == 0 else f"FAILED (exit {code}; see its log in OUT/logs)"
        print(f"{pair.strategy:<16} seed {pair.seed}: {outcome} in {seconds:.0f} s", flush=True)

    codes = sweep(args.out, pairs, run_args, jobs, args.threads, done)
    failed = [p for p, c in codes.items() if c != 0]
    if failed:
        print(f"star: error: {len(failed)} of {len(pairs)} runs failed", file=sys.stderr)
        return 2
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from star.api import make_config
    from star.experiment.estimate import estimate

    for line in estimate(make_config(given(args), args.config), args.target):
        print(line)
    return 0


def _seeds(text: str) -> list[int]:
    """'0,1,2', '0-9' or '0-4,7' -> the seeds, in order, each once."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            low, _, high = part.partition("-")
            seeds += range(int(low), int(high or low) + 1)
    except ValueError:
        raise ConfigError(f"--seeds must be integers or ranges like 0-9, got {text!r}") from None
    if not seeds:
        raise ConfigError(f"--seeds names no seed: {text!r}")
    return list(dict.fromkeys(seeds))


def _report(args: argparse.Namespace) -> int:
    from star.experiment.report import write_report

    for path in write_report(args.runs, args.out, args.rounds, args.aulc_axis):
        print(path)
    return 0


def resolve_config(args: argparse.Namespace) -> cfg.RunConfig:
    """defaults < --config file (or the saved config of --out) < command-line options."""
    from star.api import make_config

    saved = args.out / "config.yaml"
    if args.config is not None:
        return make_config(given(args), args.config)
    return make_config(given(args), saved if saved.exists() else None)


def _print_round(row: dict[str, Any]) -> None:
    print(
        f"{row['round']:>5}  {row['n_labeled']:>9}  {row['accuracy']:>8.4f}  {row['ece']:>6.4f}  "
        f"{row['train_loss']:>10.4f}  {row['seconds']:>7.1f}",
        flush=True,
    )


def _run(args: argparse.Namespace) -> int:
    from star.api import run
    from star.engine import distributed

    config = resolve_config(args)
    if not distributed.is_main():  # under torchrun: one process reports
        logging.getLogger().setLevel(logging.WARNING)
        run(config, args.out, report_to=args.report_to)
        return 0
    processes = distributed.world_size()
    print(
        f"star {__version__}: {config.task}, strategy {config.strategy}, model "
        f"{config.model.name}, {config.loop.rounds} rounds -> {args.out}"
        + (f" ({processes} processes)" if processes > 1 else ""),
        flush=True,
    )
    print(
        f"{'round':>5}  {'n_labeled':>9}  {'accuracy':>8}  {'ece':>6}  {'train_loss':>10}  "
        f"{'seconds':>7}",
        flush=True,
    )
    metrics = run(config, args.out, on_round=_print_round, report_to=args.report_to)
    if metrics and metrics[-1].get("stopped"):
        last, rule = metrics[-1], config.loop.stop
        print(
            f"stopped after round {last['round']} by the {rule} rule "
            f"({last['stop'][rule]:.4f}): {last['n_labeled']} of the "
            f"{config.loop.sizes()[-1]} labels budgeted"
        )
    return 0


def _strategies(_: argparse.Namespace) -> int:
    from star.method.strategies import STRATEGIES

    default = cfg.RunConfig().strategy  # what `star run` and `star init` use unless told
    width = max(len(name) for name in STRATEGIES) + len(" (default)")
    for s in STRATEGIES.values():
        name = f"{s.name} (default)" if s.name == default else s.name
        print(f"{name:<{width}} {s.help}")
    return 0


def _tasks(_: argparse.Namespace) -> int:
    from star.tasks.registry import TASKS, load_split

    for t in TASKS.values():
        sizes = f"{len(load_split(t.name, 'train'))} train / {len(load_split(t.name, 'test'))} test"
        if t.labels:
            shown = ", ".join(t.labels[:8]) + (", …" if len(t.labels) > 8 else "")
            labels = f"{len(t.labels)} labels: {shown}"
        else:
            labels = "free answers"
        print(f"{t.name:<10} {sizes:<22} eval {t.eval_mode:<8} {labels}")
        print(f"{'':<10} {t.description}")
    print("or any labelled .jsonl/.csv file: star run --task FILE [--test FILE] (see --help)")
    return 0
