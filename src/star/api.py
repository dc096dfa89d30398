"""star as a library: the public surface the command line itself calls (docs/api.md).

    import star
    config = star.make_config({"task": "trec", "strategy": "typical", "loop.schedule": [16, 32]})
    rows = star.run(config, "runs/trec-typical")      # runs or resumes; one dict per round
    star.init_project("reviews", "pool.jsonl", config)
    with star.open_project("reviews") as project:
        batch_file, n, left = project.next(size=8)  # write the next batch to label
        project.import_labels(Path("filled.jsonl"))
        project.train()                              # a fresh adapter on every label
        print(project.status()["stop"])              # the stopping rules' lines

Everything else in the package is private and may change between versions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from star import _API
from star import config as cfg
from star.config import RunConfig as RunConfig
from star.config import read_tree
from star.errors import RunDirError
from star.labelling.project import Project as Project
from star.labelling.project import Settings
from star.method.strategies import STRATEGIES, configure
from star.method.strategies import Signals as Signals
from star.method.strategies import register as register
from star.method.uncertainty import SequenceScores as SequenceScores
from star.tasks.reading import Fields as Fields
from star.tasks.reading import read_jsonl
from star.tasks.registry import check_task

__all__ = list(_API)  # the names `star` re-exports (star/__init__.py)


def make_config(
    options: Mapping[str, Any] | None = None, file: str | Path | None = None
) -> RunConfig:
    """A checked, frozen run config: defaults < a YAML `file` < `options`.

    options: dotted paths as in config.yaml, e.g. {"task": "sst2", "loop.schedule": [16, 32],
    "train.lr": 5e-4}; options the strategy leaves unset take its defaults. Raises ConfigError
    (one line) on an unknown key or a bad value.
    """
    base = read_tree(Path(file)) if file is not None else None
    config = configure(cfg.build(dict(options or {}), base))
    check_task(config.task)
    return config


def run(
    config: RunConfig,
    out: str | Path,
    on_round: Callable[[dict], None] | None = None,
    report_to: str = "none",
) -> list[dict]:
    """Start, or resume, the simulated active-learning run in `out`; returns one metrics dict
    per finished round (round, n_labeled, accuracy, ece, …), as metrics.jsonl holds them.
    `on_round(row)` is called after each round, finished earlier ones included; each new
    round is also logged to `report_to` ("tensorboard", "wandb", "mlflow" or "none")."""
    from star.experiment.loop import run as run_loop

    return run_loop(config, Path(out), on_round, report_to)


def read_metrics(out: str | Path) -> list[dict]:
    """The finished rounds of a run directory, without loading a model."""
    path = Path(out) / "metrics.jsonl"
    if not path.is_file():
        raise RunDirError(f"{out}: no finished round yet (no metrics.jsonl)")
    return read_jsonl(path, required=())


def list_strategies() -> dict[str, str]:
    """Registered strategy names and what each does (`register` adds your own)."""
    return {name: s.help for name, s in STRATEGIES.items()}


def init_project(
    path: str | Path,
    pool: str | Path,
    config: RunConfig | None = None,
    seed_labels: str | Path | None = None,
    eval_file: str | Path | None = None,
    fields: Fields | None = None,
    max_new_tokens: int = 64,
) -> None:
    """Create a labelling project in the new directory `path` from a pool file (.jsonl/.csv
    with id and prompt), checking every file first; nothing is left behind on an error."""
    settings = Settings(fields or Fields(), max_new_tokens, config or make_config())
    Project.init(
        Path(path),
        Path(pool),
        settings,
        Path(seed_labels) if seed_labels else None,
        Path(eval_file) if eval_file else None,
    )


def open_project(path: str | Path) -> Project:
    """The project in `path`, locked against a second process until closed (use `with`)."""
    return Project.open(Path(path))
