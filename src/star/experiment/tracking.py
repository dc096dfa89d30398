"""Each round's metrics into the tracker a team already runs, through accelerate's trackers.

`star run --report-to tensorboard|wandb|mlflow` logs every new round (accuracy, ECE, training
loss, labels, phase timings, the stopping rules' figures) at step = round, and the run's config
as hyperparameters. Offline by default: TensorBoard and MLflow write under OUT/tracking, and
W&B runs in offline mode unless WANDB_MODE says otherwise (`wandb sync` uploads later).
"""

from __future__ import annotations

import os
from pathlib import Path

from star import config as cfg
from star.engine import distributed
from star.errors import ConfigError

KINDS = ("none", "tensorboard", "wandb", "mlflow")
_PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check(kind: str) -> None:
    """Refuse, before anything runs, a tracker that is unknown or not installed."""
    if kind not in KINDS:
        raise ConfigError(f"--report-to must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "none":
        return
    from accelerate import utils

    available = {
        "tensorboard": utils.is_tensorboard_available,
        "wandb": utils.is_wandb_available,
        "mlflow": utils.is_mlflow_available,
    }[kind]
    if not available():
        raise ConfigError(
            f"--report-to {kind}: the {_PACKAGE[kind]} package is not installed "
            f"(pip install {_PACKAGE[kind]})"
        )


def scalars(row: dict) -> dict[str, float]:
    """A metrics row's numbers, nested ones as `section/name` (None and text left out)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key == "round":
            continue
        if isinstance(value, dict):
            for name, v in value.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out[f"{key}/{name}"] = float(v)
        elif isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float):
            out[key] = float(value)
    return out


class Tracker:
    """One run's tracker (the main process logs; the others do nothing)."""

    def __init__(self, kind: str, out: Path, config: cfg.RunConfig):
        check(kind)
        self.accelerator = None
        if kind == "none" or not distributed.is_main():
            return
        from accelerate import Accelerator

        folder = (out / "tracking").resolve()
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(folder))
        os.environ.setdefault("MLFLOW_TRACKING_URI", folder.joinpath("mlruns").as_uri())
        folder.mkdir(parents=True, exist_ok=True)
        import torch

        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(), log_with=kind, project_dir=folder
        )
        hparams = {
            k: v if isinstance(v, int | float | str | bool) else str(v)
            for k, v in cfg.flat_items(config)
        }
        self.accelerator.init_trackers(out.name or "star", config=hparams)

    def log(self, row: dict) -> None:
        if self.accelerator is not None:
            self.accelerator.log(scalars(row), step=row["round"])

    def close(self) -> None:
        if self.accelerator is not None:
            self.accelerator.end_training()
            self.accelerator = None
