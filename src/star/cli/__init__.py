"""`star` command line: thin subcommands over plain functions, one-line errors, no tracebacks.

Each subcommand's parser names its handler (`cli.experiment`, `cli.project`); `main` runs it
and turns a StarError into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import warnings

from star.cli import experiment, project
from star.cli.experiment import resolve_config as resolve_config
from star.errors import StarError
from star.version import __version__


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    experiment.add_run(sub)
    project.add_commands(sub)
    experiment.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    _quiet_libraries()
    try:
        return args.handler(args)
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
