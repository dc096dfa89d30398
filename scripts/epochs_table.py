"""The epoch choice of the selection benchmarks, from random's runs alone: one `random` run's
labels (same pool, same picks) retrained at several epoch counts and training seeds by
scripts/training_noise.py. Prints one markdown row per run, sorted by task and epochs.

    .venv/bin/python scripts/epochs_table.py runs/noise-trec runs/noise-e8 runs/noise-mix-e4 ...

A run folder named `offsetJ` is training seed J (TRAIN and LORA streams from seed + 1000·J);
any other run (e.g. the sweep's own random run) is training seed 0.
"""

import dataclasses
import sys
from pathlib import Path

from star.experiment.report import find_runs


def main(roots: list[Path]) -> None:
    runs = find_runs(roots)
    rows = []
    for r in runs:
        offset = int(r.path.name[6:]) if r.path.name.startswith("offset") else 0
        task, steps = r.settings["task"], r.settings.get("train.steps")
        rows.append((task, (steps is not None, steps or r.settings["train.epochs"]), offset, r))
    rows.sort(key=lambda t: t[:3])
    longest = max((r.n_labeled for r in runs), key=len)
    ticks = " / ".join(map(str, longest))
    print(
        "| task | epochs (or steps) per round | training seed "
        f"| accuracy at {ticks} labels | AULC (labels) | AULC (log₂ labels) | final ECE "
        "| minutes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for task, (by_steps, count), offset, r in rows:
        epochs = f"{count} steps" if by_steps else str(count)
        acc = " / ".join(f"{a:.2f}" for a in r.accuracy)
        done = len(r.n_labeled) == len(longest)  # an unfinished run's area is not comparable
        areas = (r, dataclasses.replace(r, log_axis=True))
        aulc = " | ".join(f"{a.aulc():.3f}" if done else "(unfinished)" for a in areas)
        print(
            f"| {task} | {epochs} | {offset} | {acc} | {aulc} | {r.ece[-1]:.3f} "
            f"| {r.seconds / 60:.1f} |"
        )


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
