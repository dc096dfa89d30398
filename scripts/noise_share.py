"""How much of the seed-to-seed spread of Δ AULC (a strategy minus random, paired by seed)
comes from the small test set, and what a larger one would buy.

For each seed, d_i = correct(strategy, i) − correct(random, i) on test item i per round; the
test-sampling variance of that seed's Δ AULC is wᵀ Σ w / n, with Σ the rounds' covariance of
d_i over the n items and w the AULC's trapezoid weights. Its mean over seeds, against the
observed variance of Δ AULC over seeds, is the test set's share; the rest is the runs' own
(pool, labels picked, training). The projection keeps the rest and shrinks the test part by
n / N: the smallest Δ AULC five seeds would detect with N test rows (95 % test, 80 % power).

    .venv/bin/python scripts/noise_share.py runs/select-trec typical [pe-kmeanspp ...]
"""

import json
import sys
from pathlib import Path

import torch

from star.experiment.statistics import detectable


def correct(run: Path) -> tuple[list[int], torch.Tensor]:
    """(labels per round, (rounds, items) 0/1 correctness in test-id order)."""
    labels = [
        json.loads(x)["n_labeled"] for x in (run / "metrics.jsonl").read_text().split("\n") if x
    ]
    rows = []
    for k in range(len(labels)):
        lines = (run / "rounds" / f"{k:03d}" / "eval.jsonl").read_text().splitlines()
        by_id = {r["id"]: float(r["correct"]) for r in map(json.loads, lines)}
        rows.append([by_id[i] for i in sorted(by_id)])
    return labels, torch.tensor(rows, dtype=torch.float64)


def weights(x: list[int]) -> torch.Tensor:
    """AULC = w · accuracy per round (trapezoids over labels / x-range)."""
    w = torch.zeros(len(x), dtype=torch.float64)
    for i in range(len(x) - 1):
        w[i] += (x[i + 1] - x[i]) / 2
        w[i + 1] += (x[i + 1] - x[i]) / 2
    return w / (x[-1] - x[0])


def main(root: Path, strategies: list[str]) -> None:
    print(
        "| strategy | seeds | test rows | sd Δ AULC | test set's share of the variance "
        "| detectable, 5 seeds, this test set | 500 rows | 2,000 rows |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in strategies:
        deltas, test_var, n = [], [], 0
        for run in sorted(root.glob(f"{name}-seed*")):
            base = root / run.name.replace(name, "random", 1)
            if not all((r / "metrics.jsonl").exists() for r in (run, base)):  # not started
                continue
            x, a = correct(run)
            _, b = correct(base)
            r = min(len(a), len(b))
            if r < 2:  # one round so far: no curve yet
                continue
            d = (a[:r] - b[:r]).T  # (items, rounds)
            w, n = weights(x[:r]), d.shape[0]
            deltas.append(float(d.mean(0) @ w))
            test_var.append(float(w @ torch.cov(d.T).reshape(r, r) @ w) / n)
        if len(deltas) < 2:
            continue
        total = torch.tensor(deltas, dtype=torch.float64).var().item()
        test = sum(test_var) / len(test_var)
        rest = max(total - test, 0.0)

        projected = [detectable((rest + test * n / rows) ** 0.5, 5) for rows in (n, 500, 2000)]
        print(
            f"| {name} | {len(deltas)} | {n} | {total**0.5:.3f} | {min(test / total, 1):.0%} | "
            + " | ".join(f"{x:.3f}" for x in projected)
            + " |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
