"""The run directory: what a run has decided and finished, written atomically, read on resume.

Layout:
    config.yaml              the resolved RunConfig (with star_version)
    .lock                    flock of the process working here; a second process is refused
    labeled.jsonl            {"id", "round"}: round = first round whose training includes it
    metrics.jsonl            one object per finished round; its last line commits the round
    rounds/NNN/eval.jsonl    per-example predictions on the evaluation split
    rounds/NNN/selected.jsonl  {"id", "score", "rank"} chosen after round NNN
    rounds/NNN/adapter/      the round's PEFT adapter (safetensors)
    rounds/NNN/training.json {"key", "train_loss"}: what trained the adapter
                             (`Learner.training_key`): a run in the same folder whose round
                             has the same key loads this adapter instead of training

A round counts as finished only once its metrics line is written, after everything else; a
run killed earlier redoes that round, and labels written for a round that never committed are
ignored. Nothing is derived from file or directory names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import yaml

from star import config as cfg
from star.engine import distributed
from star.engine.model import save_adapter
from star.errors import RunDirError, StarError
from star.files import LOCK, atomic_write, lock_dir, write_jsonl
from star.tasks.reading import read_jsonl


def read_config(path: Path) -> cfg.RunConfig:
    """A saved config as a run uses it: a file from before an option existed gets what that
    version did (its strategy's defaults), so an old run still resumes."""
    from star.method.strategies import configure

    return configure(cfg.from_dict(cfg.read_tree(path), str(path)))


class RunDir:
    """One run's directory; `open` creates it or checks that it holds this same run.

    Under several processes only the main one creates, checks, locks and writes it; the others
    read it (to resume) and their writes are skipped.
    """

    def __init__(self, path: Path, writer: bool = True):
        self.path = path
        self.writer = writer
        self._lock: int | None = None

    @classmethod
    def open(cls, path: Path, config: cfg.RunConfig) -> RunDir:
        """Create the run directory or check it holds this same run; lock it against a second
        star process until `close` (the OS drops the lock if the process dies)."""
        run, error = None, None
        if distributed.is_main():
            try:
                run = cls._open(path, config)
            except StarError as e:
                error = e
        error = distributed.from_main(error)  # every process fails alike, or none does
        if error is not None:
            raise error
        return run or cls(path, writer=False)

    @classmethod
    def _open(cls, path: Path, config: cfg.RunConfig) -> RunDir:
        run = cls(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path} is a file, not a run directory: choose a new --out")
        if path.exists() and not run.config_path.exists():
            if any(p.name != LOCK for p in path.iterdir()):
                raise RunDirError(f"{path} is not empty and holds no star run: choose a new --out")
        path.mkdir(parents=True, exist_ok=True)
        run._acquire()
        try:
            run._check_or_write(config)
        except BaseException:
            run.close()
            raise
        return run

    def _acquire(self) -> None:
        self._lock = lock_dir(self.path)

    def close(self) -> None:
        """Release the directory lock."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _check_or_write(self, config: cfg.RunConfig) -> None:
        if not self.config_path.exists():
            atomic_write(self.config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))
            return
        saved = read_config(self.config_path)
        if saved.star_version != config.star_version:
            raise RunDirError(
                f"{self.path} was written by star {saved.star_version}, this is star "
                f"{config.star_version}: resume it with that version or use a new --out"
            )
        changed = cfg.differences(saved, config)
        if changed:
            raise RunDirError(
                f"{self.path} holds a run with a different config ({', '.join(changed)} "
                "differ): use the same options to resume, or a new --out"
            )

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def labeled_path(self) -> Path:
        return self.path / "labeled.jsonl"

    def round_dir(self, round: int) -> Path:
        return self.path / "rounds" / f"{round:03d}"

    def metrics(self) -> list[dict]:
        """Finished rounds, checked to be 0, 1, 2, … in order."""
        if not self.metrics_path.exists():
            return []
        rows = read_jsonl(self.metrics_path, required=())
        for k, row in enumerate(rows):
            if row.get("round") != k:
                raise RunDirError(f"{self.metrics_path}:{k + 1}: expected round {k}")
        return rows

    def labeled(self, up_to_round: int) -> dict[str, int]:
        """id -> round, for labels of committed rounds (≤ up_to_round) only."""
        if not self.labeled_path.exists():
            return {}
        rows = read_jsonl(self.labeled_path, required=("id",))
        for number, r in enumerate(rows, 1):
            if not isinstance(r.get("round"), int):
                raise RunDirError(f"{self.labeled_path}:{number}: 'round' must be an integer")
        return {r["id"]: r["round"] for r in rows if r["round"] <= up_to_round}

    def write_rows(self, path: Path, rows: Iterable[dict]) -> None:
        """A JSONL file of the run (atomically; only by the writing process)."""
        if self.writer:
            write_jsonl(path, rows)

    def write_labeled(self, labeled: dict[str, int]) -> None:
        self.write_rows(self.labeled_path, ({"id": i, "round": k} for i, k in labeled.items()))

    def write_metrics(self, rows: list[dict]) -> None:
        self.write_rows(self.metrics_path, rows)

    def save_adapter(self, model, round: int, key: str, loss: float) -> None:
        """The round's adapter, then what trained it (written last: a reader that finds the
        key finds the whole adapter)."""
        if self.writer:
            save_adapter(model, self.round_dir(round) / "adapter")
            atomic_write(
                self.round_dir(round) / "training.json",
                json.dumps({"key": key, "train_loss": loss}),
            )

    def trained(self, round: int, key: str) -> tuple[Path, float] | None:
        """(adapter folder, its training loss) of a round `round` trained from this key, in
        this run or another in the same folder (a sweep's); None if there is none. Every
        process looks (the files exist before the round starts), so all decide alike."""
        for found in sorted(self.path.parent.glob(f"*/rounds/{round:03d}/training.json")):
            try:
                saved = json.loads(found.read_text())
            except (OSError, ValueError):
                continue  # unreadable: never trusted
            adapter = found.parent / "adapter"
            if saved.get("key") == key and (adapter / "adapter_model.safetensors").is_file():
                return adapter, float(saved["train_loss"])
        return None
