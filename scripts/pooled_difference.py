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

import sys
from pathlib import Path

from star.experiment.report import read_runs_csv
from star.experiment.statistics import detectable_difference, paired_interval, pooled_interval


def paired(report: Path, label: str) -> list[float]:
    """Candidate minus random, per seed both ran (over the rounds each run finished)."""
    groups = read_runs_csv(report / "runs.csv")
    if label not in groups or "random" not in groups:
        sys.exit(f"{report}: no lines {label!r} and 'random' (it has {sorted(groups)})")
    base = {r.seed: r.aulc() for r in groups["random"]}
    return [r.aulc() - base[r.seed] for r in groups[label] if r.seed in base]


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
