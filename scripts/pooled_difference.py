"""One candidate's paired Δ AULC to random on several benchmarks, each alone and pooled.

Reads committed reports (`runs.csv` of `star report`), so it needs no runs on the machine:

    .venv/bin/python scripts/pooled_difference.py \\
        "docs/results/selection/mix-e4:pe-kmeanspp (init_by=random)" \\
        docs/results/selection/sst2-e8:pe-kmeanspp \\
        docs/results/selection/trec-e16-pe-kmeanspp:pe-kmeanspp

Each argument is REPORT:LABEL, LABEL being the candidate's line in that report. Pooled is the
mean over benchmarks of each benchmark's mean paired Δ (every benchmark weighs the same,
whatever its seeds), with the bootstrap of `star.experiment.statistics.pooled_interval` over the
seeds within each benchmark: whether the candidate helps on average, which a tie on each alone
cannot say.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from star.experiment.report import RunResult
from star.experiment.statistics import detectable_difference, paired_interval, pooled_interval


def read_aulc(report: Path) -> dict[str, dict[int, float]]:
    """AULC per strategy label and seed, from the report's runs.csv."""
    rows = defaultdict(lambda: defaultdict(list))
    with open(report / "runs.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows[row["strategy"]][int(row["seed"])].append(row)
    out = {}
    for label, seeds in rows.items():
        out[label] = {}
        for seed, rounds in seeds.items():
            rounds.sort(key=lambda r: int(r["round"]))
            n = [int(r["n_labeled"]) for r in rounds]
            acc = [float(r["accuracy"]) for r in rounds]
            out[label][seed] = RunResult(Path(rounds[0]["run"]), label, seed, n, acc, []).aulc()
    return out


def paired(report: Path, label: str) -> list[float]:
    """Candidate minus random, per seed both ran (over the rounds each run finished)."""
    aulc = read_aulc(report)
    if label not in aulc or "random" not in aulc:
        sys.exit(f"{report}: no lines {label!r} and 'random' (it has {sorted(aulc)})")
    seeds = sorted(set(aulc[label]) & set(aulc["random"]))
    return [aulc[label][s] - aulc["random"][s] for s in seeds]


def main(args: list[str]) -> None:
    if not args:
        sys.exit(__doc__)
    print("| benchmark | candidate | seeds | Δ AULC per seed | mean Δ [95 %] | detectable |")
    print("|---|---|---|---|---|---|")
    all_diffs = []
    for arg in args:
        report, _, label = arg.partition(":")
        d = paired(Path(report), label)
        all_diffs.append(d)
        lo, hi = paired_interval(d)
        det = detectable_difference(d)
        per_seed = ", ".join(f"{x:+.3f}" for x in d)
        print(
            f"| {Path(report).name} | {label} | {len(d)} | {per_seed} "
            f"| {sum(d) / len(d):+.3f} [{lo:+.3f}, {hi:+.3f}] | {det:.3f} |"
        )
    mean = sum(sum(d) / len(d) for d in all_diffs) / len(all_diffs)
    lo, hi = pooled_interval(all_diffs)
    name = f"pooled ({len(all_diffs)} benchmarks, equal weight)"
    print(f"| {name} | | | | {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] | |")


if __name__ == "__main__":
    main(sys.argv[1:])
