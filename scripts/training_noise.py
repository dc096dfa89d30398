"""How much of a run's accuracy is the training seed? One `random` run's labels (same pool,
same picks every round) retrained with other LoRA-initialisation and data-order seeds: the
spread across them is noise no selection strategy can remove, and it bounds what a few seeds
can resolve between strategies.

    .venv/bin/python scripts/training_noise.py configs/selection/trec.yaml 0 runs/noise-trec \
        0,1,2,3 --epochs 2
    .venv/bin/python scripts/training_noise.py configs/selection/trec.yaml 0 runs/noise-e8 0,1 \
        --epochs 8

Options after the offsets go to every `star run` (here: the epochs, configured or not).

Run `offset` 0 is the ordinary run of that seed; offset j draws the TRAIN and LORA streams
from seed + 1000·j and every other stream (pool, picks) from the seed itself. Each run
resumes like any other (rerunning the command finishes what is unfinished).
"""

import json
import sys
from pathlib import Path

import torch

from star import seeds
from star.active import step
from star.cli import main


def run(config: str, seed: int, out: Path, offset: int, extra: list[str]) -> list[float]:
    plain = seeds.derived_seed

    def shifted(s: int, k: int, stream: int) -> int:
        moved = stream in (seeds.TRAIN, seeds.LORA)
        return plain(s + 1000 * offset if moved else s, k, stream)

    step.derived_seed = shifted  # the step's own name for it
    try:
        path = out / f"offset{offset}"
        args = ["run", "--config", config, "--strategy", "random", "--seed", str(seed)]
        if main([*args, *extra, "--out", str(path), "--quiet"]) != 0:
            raise SystemExit(f"{path}: the run failed")
    finally:
        step.derived_seed = plain
    lines = (path / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["accuracy"] for x in lines]


if __name__ == "__main__":
    config, seed, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    offsets = map(int, sys.argv[4].split(","))
    curves = {j: run(config, seed, out, j, sys.argv[5:]) for j in offsets}
    acc = torch.tensor(list(curves.values()), dtype=torch.float64)  # (offsets, rounds)
    for j, c in curves.items():
        print(f"offset {j}: " + " / ".join(f"{a:.2f}" for a in c))
    if len(curves) > 1:
        print("sd over training seeds: " + " / ".join(f"{x:.3f}" for x in acc.std(0).tolist()))
