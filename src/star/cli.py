"""`star` command line: thin subcommands over plain functions, one-line errors, no tracebacks."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from star import __version__
from star import config as cfg
from star.errors import StarError

EPILOG = """\
Options given on the command line override --config FILE.yaml, which overrides the defaults.
Re-running on an existing --out resumes after its last finished round; without --config the
saved config is the base, so `star run --out DIR` alone resumes DIR."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    for option in cfg.options():
        help = option.help
        if option.choices:
            help += f" ({'|'.join(option.choices)})"
        default = option.default
        if isinstance(default, tuple):
            default = ",".join(default)
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
    _add_config_options(run)

    sub.add_parser("strategies", help="list the query strategies")
    sub.add_parser("tasks", help="list the built-in tasks")
    return parser


def resolve_config(args: argparse.Namespace) -> cfg.RunConfig:
    """defaults < --config file (or the saved config of --out) < command-line options."""
    from star.state import read_tree

    saved = args.out / "config.yaml"
    if args.config is not None:
        base = read_tree(args.config)
    elif saved.exists():
        base = read_tree(saved)
    else:
        base = None
    known = {o.path: o for o in cfg.options()}
    given = {
        path: cfg.coerce(known[path], value, f"--{known[path].flag}")
        for path, value in vars(args).items()
        if path in known
    }
    return cfg.build(given, base)


def _print_round(row: dict[str, Any]) -> None:
    print(
        f"{row['round']:>5}  {row['n_labeled']:>9}  {row['accuracy']:>8.4f}  {row['ece']:>6.4f}  "
        f"{row['train_loss']:>10.4f}  {row['seconds']:>7.1f}",
        flush=True,
    )


def _run(args: argparse.Namespace) -> int:
    from star.loop import run

    config = resolve_config(args)
    print(
        f"star {__version__}: {config.task}, strategy {config.strategy}, model "
        f"{config.model.name}, {config.loop.rounds} rounds -> {args.out}",
        flush=True,
    )
    print(
        f"{'round':>5}  {'n_labeled':>9}  {'accuracy':>8}  {'ece':>6}  {'train_loss':>10}  "
        f"{'seconds':>7}",
        flush=True,
    )
    run(config, args.out, on_round=_print_round)
    return 0


def _strategies(_: argparse.Namespace) -> int:
    from star.strategies import STRATEGIES

    for s in STRATEGIES.values():
        print(f"{s.name:<12} {s.help}")
    return 0


def _tasks(_: argparse.Namespace) -> int:
    from star.tasks import TASKS

    for t in TASKS.values():
        print(f"{t.name:<8} {t.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    _quiet_libraries()
    commands = {"run": _run, "strategies": _strategies, "tasks": _tasks}
    try:
        return commands[args.command](args)
    except StarError as e:
        print(f"star: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("star: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    """transformers' info chatter and load bars would drown the per-round table."""
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
