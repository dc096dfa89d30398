"""Config options as command-line flags: every RunConfig field, from its one definition."""

from __future__ import annotations

import argparse
from typing import Any

from star import config as cfg


def add_config_options(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
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
        switch = {"nargs": "?", "const": "true"} if option.type is bool else {}
        parser.add_argument(
            f"--{option.flag}",
            dest=option.path,
            default=argparse.SUPPRESS,
            metavar=option.type.__name__.upper(),
            help=help,
            **switch,  # a yes/no option alone means yes: `--gradient-checkpointing`
        )


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The config options given on the command line, as dotted paths with typed values."""
    known = {o.path: o for o in cfg.options()}
    return {
        path: cfg.coerce(known[path], value, f"--{known[path].flag}")
        for path, value in vars(args).items()
        if path in known
    }
