"""`star` command line: thin subcommands over plain functions, one-line errors, no tracebacks."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from star import __version__
from star import config as cfg
from star.errors import ConfigError, StarError

EPILOG = """\
Options given on the command line override --config FILE.yaml, which overrides the defaults.
Re-running on an existing --out resumes after its last finished round; without --config the
saved config is the base, so `star run --out DIR` alone resumes DIR."""


FIELD_NAMES = ("id", "prompt", "answer", "choices")  # columns of a user's file


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    for option in cfg.options():
        if not option.cli or option.path in skip:
            continue
        help = option.help
        if option.choices:
            help += f" ({'|'.join(option.choices)})"
        default = option.default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        help += f" [default: {default}]"
        parser.add_argument(
            f"--{option.flag}",
            dest=option.path,
            default=argparse.SUPPRESS,
            metavar=option.type.__name__.upper(),
            help=help,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="star",
        description=(
            "Active learning for LoRA fine-tuning of LLMs: which examples should be labelled next? "
            "STAR (Zhang et al., ACL Findings 2024) and baselines."
        ),
    )
    parser.add_argument("--version", action="version", version=f"star {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    _add_config_options(run)

    _add_project_commands(sub)
    _add_experiment_commands(sub)
    sub.add_parser("strategies", help="list the query strategies")
    sub.add_parser("tasks", help="list the built-in tasks")
    return parser


def _add_project_commands(sub) -> None:
    """Labelling your own data: init, next, label, train, status, export-adapter."""
    init = sub.add_parser(
        "init",
        help="start a labelling project on your own pool (JSONL or CSV)",
        description="Copies and checks the pool (and optional seed labels and eval file) into "
        "a new project directory. Items with `choices` are multiple choice.",
    )
    init.add_argument("dir", type=Path, help="new project directory")
    init.add_argument("--pool", type=Path, required=True, help="unlabelled items, .jsonl or .csv")
    init.add_argument("--seed-labels", type=Path, help="already labelled items (need an answer)")
    init.add_argument("--eval", type=Path, help="evaluation items with answers")
    for name in FIELD_NAMES:
        init.add_argument(f"--{name}-field", default=name, help=f"column of the {name}")
    init.add_argument("--max-new-tokens", type=int, default=64, help="answer length to generate")
    init.add_argument("--config", type=Path, help="YAML file of run options")
    _add_config_options(init, skip=tuple(f"data.{n}_field" for n in FIELD_NAMES))

    nxt = sub.add_parser("next", help="select the next items to label and write them to a file")
    nxt.add_argument("dir", type=Path)
    nxt.add_argument("--k", type=int, required=True, help="how many items")
    nxt.add_argument("--format", choices=("jsonl", "csv", "label-studio"), default="jsonl")
    nxt.add_argument("--out", type=Path, help="file to write (default: DIR/exports/batch-NNN.*)")

    label = sub.add_parser("label", help="import labels from a filled-in batch file")
    label.add_argument("dir", type=Path)
    label.add_argument(
        "file",
        type=Path,
        help=".jsonl/.csv with id and label, or Label Studio's JSON export (.json)",
    )
    label.add_argument("--relabel", action="store_true", help="replace labels that differ")
    label.add_argument(
        "--allow-unexported",
        action="store_true",
        help="accept labels for items `star next` never exported",
    )

    push = sub.add_parser("push", help="send a batch to a running Label Studio (SDK)")
    push.add_argument("dir", type=Path)
    push.add_argument("--batch", type=int, help="batch number (default: the last)")
    pull = sub.add_parser("pull", help="import the annotations made in Label Studio (SDK)")
    pull.add_argument("dir", type=Path)
    pull.add_argument("--relabel", action="store_true", help="replace labels that differ")
    for p in (push, pull):
        p.add_argument("--ls-url", help="Label Studio URL (default: $LABEL_STUDIO_URL)")
        p.add_argument("--ls-api-key", help="API token (default: $LABEL_STUDIO_API_KEY)")
        p.add_argument(
            "--ls-timeout",
            type=float,
            help="seconds to wait for each answer of the server (default: "
            "$LABEL_STUDIO_TIMEOUT, else 30); 5xx answers are retried twice first",
        )
        p.add_argument(
            "--ls-project",
            type=int,
            help="Label Studio project id (default: the one star created on the first push)",
        )

    train = sub.add_parser("train", help="train a fresh adapter on all labels, then evaluate")
    train.add_argument("dir", type=Path)
    status = sub.add_parser("status", help="counts, rounds and metrics of a project")
    status.add_argument("dir", type=Path)
    export = sub.add_parser("export-adapter", help="copy a round's PEFT adapter out")
    export.add_argument("dir", type=Path)
    export.add_argument("out", type=Path, help="new folder for PeftModel.from_pretrained")
    export.add_argument("--round", type=int, help="default: the last round")


def _add_experiment_commands(sub) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="run every (strategy, seed) pair of an experiment (resumable)",
        description="One `star run` per pair in OUT/STRATEGY-seedN; running the same command "
        "again finishes what is unfinished and skips what is done.",
    )
    sweep.add_argument("--strategies", required=True, help="comma-separated, e.g. random,pe,star")
    sweep.add_argument("--seeds", required=True, help="comma-separated, e.g. 0,1,2")
    sweep.add_argument("--out", type=Path, required=True, help="folder of the runs")
    sweep.add_argument(
        "--jobs",
        type=int,
        help="pairs run at once, cores ÷ jobs threads each; unset: one single-thread run per "
        "core (a sweep 1.34× faster than one run on both cores of a 2-core CPU: "
        "docs/performance.md)",
    )
    sweep.add_argument("--threads", type=int, help="threads per run instead of cores ÷ jobs")
    sweep.add_argument("--config", type=Path, help="YAML file of run options for every pair")
    _add_config_options(sweep)
    report = sub.add_parser("report", help="curves, tables and paired comparisons of runs")
    report.add_argument("runs", type=Path, nargs="+", help="folders holding runs (searched)")
    report.add_argument("--out", type=Path, required=True, help="report folder")
    report.add_argument(
        "--rounds",
        type=int,
        help="only each run's first K rounds (e.g. 1: round 0, where strategies share the "
        "same random labels and differ only in training settings)",
    )


def _sweep(args: argparse.Namespace) -> int:
    from star.config import read_tree
    from star.experiment.sweep import Pair, cost, sweep
    from star.method.strategies import STRATEGIES, configure

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in STRATEGIES:
            raise ConfigError(f"unknown strategy {s!r}; choose from: {', '.join(STRATEGIES)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be integers, got {args.seeds!r}") from None
    for flag, value in (("jobs", args.jobs), ("threads", args.threads)):
        if value is not None and value < 1:
            raise ConfigError(f"--{flag} must be at least 1, got {value}")
    given = _given(args)
    given.pop("strategy", None)
    given.pop("seed", None)
    configure(cfg.build(given, None if args.config is None else read_tree(args.config)))
    known = {o.path: o for o in cfg.options()}
    run_args = [] if args.config is None else ["--config", str(args.config)]
    for path, value in given.items():
        value = ",".join(map(str, value)) if isinstance(value, tuple) else value
        run_args += [f"--{known[path].flag}", str(value)]
    # Seed-major, so a sweep stopped early still compares every strategy on the same seeds;
    # within a seed the costliest first, so no core idles behind one long last run.
    pairs = [Pair(s, seed) for seed in seeds for s in sorted(strategies, key=cost, reverse=True)]
    jobs = args.jobs or min(len(pairs), os.cpu_count() or 1)
    print(f"{len(pairs)} runs in {args.out}, {jobs} at a time", flush=True)

    def done(pair: Pair, code: int, seconds: float) -> None:
        state = "finished" if code == 0 else f"FAILED (exit {code}; see its log in OUT/logs)"
        print(f"{pair.strategy:<16} seed {pair.seed}: {state} in {seconds:.0f} s", flush=True)

    codes = sweep(args.out, pairs, run_args, jobs, args.threads, done)
    failed = [p for p, c in codes.items() if c != 0]
    if failed:
        print(f"star: error: {len(failed)} of {len(pairs)} runs failed", file=sys.stderr)
        return 2
    return 0


def _report(args: argparse.Namespace) -> int:
    from star.experiment.report import write_report

    for path in write_report(args.runs, args.out, args.rounds):
        print(path)
    return 0


def _given(args: argparse.Namespace) -> dict[str, Any]:
    known = {o.path: o for o in cfg.options()}
    return {
        path: cfg.coerce(known[path], value, f"--{known[path].flag}")
        for path, value in vars(args).items()
        if path in known
    }


def _init(args: argparse.Namespace) -> int:
    from star import api

    if args.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    fields = api.Fields(args.id_field, args.prompt_field, args.answer_field, args.choices_field)
    config = api.make_config(_given(args), args.config)
    api.init_project(
        args.dir, args.pool, config, args.seed_labels, args.eval, fields, args.max_new_tokens
    )
    with api.open_project(args.dir) as project:
        _print_status(project.status())
    return 0


def _next(args: argparse.Namespace) -> int:
    from star import api

    if args.k < 1:
        raise ConfigError(f"--k must be at least 1, got {args.k}")
    with api.open_project(args.dir) as project:
        out, n, left = project.next(args.k, args.format, args.out)
    if n < args.k:
        print(f"only {left} unlabelled item(s) were left; all of them are in this batch")
    print(f"wrote {n} item(s) to label to {out}")
    return 0


def _label(args: argparse.Namespace) -> int:
    from star.labelling.project import Project

    with Project.open(args.dir) as project:
        counts = project.import_labels(args.file, args.relabel, args.allow_unexported)
        print(
            f"imported {counts['imported']} label(s), {counts['unchanged']} already recorded; "
            f"{len(project.labels())} labelled in all"
        )
    return 0


def _push(args: argparse.Namespace) -> int:
    from star.labelling.labelstudio import Server, push
    from star.labelling.project import Project

    server = Server.from_options(args.ls_url, args.ls_api_key, args.ls_timeout)
    with Project.open(args.dir) as project:
        batch = project.batch(args.batch)
        if not batch["file"].endswith(".json"):
            raise ConfigError(
                f"batch {batch['batch']} was written as {batch['file']}; push needs one written "
                "with `star next --format label-studio`"
            )
        linked = args.ls_project or project.label_studio_project(server.url)
        pid = push(server, Path(batch["file"]), linked, f"star: {project.path.name}")
        project.link_label_studio(server.url, pid)
    print(
        f"pushed batch {batch['batch']} ({len(batch['ids'])} tasks) to {server.url}/projects/{pid}"
    )
    return 0


def _pull(args: argparse.Namespace) -> int:
    from star.labelling.labelstudio import Server, pull
    from star.labelling.project import Project

    server = Server.from_options(args.ls_url, args.ls_api_key, args.ls_timeout)
    with Project.open(args.dir) as project:
        pid = args.ls_project or project.label_studio_project(server.url)
        if pid is None:
            raise ConfigError("no Label Studio project: push a batch first or pass --ls-project")
        saved = pull(server, pid, project.path / "imports" / f"label-studio-{pid}.json")
        counts = project.import_labels(saved, args.relabel)
        print(
            f"pulled {saved}: imported {counts['imported']} label(s), {counts['unchanged']} "
            f"already recorded; {len(project.labels())} labelled in all"
        )
    return 0


def _train(args: argparse.Namespace) -> int:
    from star import api

    with api.open_project(args.dir) as project:
        _print_project_round(project.train())
    return 0


def _status(args: argparse.Namespace) -> int:
    from star.labelling.project import Project

    with Project.open(args.dir) as project:
        _print_status(project.status())
    return 0


def _print_status(status: dict) -> None:
    print(
        f"pool {status['pool']}: {status['labelled']} labelled, {status['waiting']} waiting "
        f"for labels in {status['batches']} batch(es), {status['unlabelled']} unlabelled"
    )
    for row in status["rounds"]:
        _print_project_round(row)
    for line in status["stop"]:
        print(line)


def _print_project_round(row: dict) -> None:
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float))
    print(f"round {row['round']}: {row['n_labeled']} labels; {metrics}")


def _export_adapter(args: argparse.Namespace) -> int:
    from star.labelling.project import Project

    with Project.open(args.dir) as project:
        out = project.export_adapter(args.out, args.round)
    print(f"adapter written to {out} (load with PeftModel.from_pretrained(base, '{out}'))")
    return 0


def resolve_config(args: argparse.Namespace) -> cfg.RunConfig:
    """defaults < --config file (or the saved config of --out) < command-line options."""
    from star.api import make_config

    saved = args.out / "config.yaml"
    if args.config is not None:
        return make_config(_given(args), args.config)
    return make_config(_given(args), saved if saved.exists() else None)


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    _quiet_libraries()
    commands = {
        "run": _run,
        "strategies": _strategies,
        "tasks": _tasks,
        "init": _init,
        "next": _next,
        "label": _label,
        "train": _train,
        "status": _status,
        "export-adapter": _export_adapter,
        "push": _push,
        "sweep": _sweep,
        "report": _report,
        "pull": _pull,
    }
    try:
        return commands[args.command](args)
    except StarError as e:
        print(f"star: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("star: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # every write is a temp file renamed into place or one journal append whose cut line
        # is ignored, so what was there before is intact
        where = f" writing {e.filename}" if e.filename else ""
        print(
            f"star: error: no space left on the device{where}; nothing was recorded: free "
            "some space and run the same command again",
            file=sys.stderr,
        )
        return 1


def _quiet_libraries() -> None:
    """transformers' info chatter and load bars would drown the per-round table. Said through
    the environment, read when transformers is first imported, so that a command that needs
    no model (status, label) does not import it."""
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (star used as a library): tell it
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
