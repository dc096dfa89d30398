"""Compare strategies across runs the way the paper does: curves over rounds, mean ± std over
seeds, area under the learning curve, and the paired difference to random.

Runs are found by their `config.yaml` and grouped by the strategy recorded there, never by
directory names.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from star.errors import StarError
from star.metrics import reliability_bins
from star.state import read_yaml

BOOTSTRAP = 10_000  # resamples of the seeds for the paired confidence interval


@dataclass(frozen=True)
class RunResult:
    path: Path
    strategy: str
    seed: int
    n_labeled: list[int]  # per finished round
    accuracy: list[float]
    ece: list[float]

    def aulc(self) -> float:
        """Area under accuracy vs labelled examples, divided by the x-range: the mean accuracy
        along the curve (trapezoids; the one point itself for a single round)."""
        x, y = self.n_labeled, self.accuracy
        if len(x) == 1 or x[-1] == x[0]:
            return y[-1]
        area = sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1))
        return area / (x[-1] - x[0])


def find_runs(roots: list[Path]) -> list[RunResult]:
    runs = []
    for root in roots:
        if not root.is_dir():
            raise StarError(f"{root}: no such directory")
        for config_path in sorted(root.rglob("config.yaml")):
            metrics_path = config_path.parent / "metrics.jsonl"
            if not metrics_path.exists():
                continue  # a run that has not finished a round yet
            tree = read_yaml(config_path)  # only strategy and seed: runs of older versions too
            if not isinstance(tree.get("strategy"), str) or not isinstance(tree.get("seed"), int):
                raise StarError(f"{config_path}: no strategy and seed: not a star run config")
            rows = [json.loads(x) for x in metrics_path.read_text().splitlines() if x.strip()]
            if not rows:
                continue
            runs.append(
                RunResult(
                    config_path.parent,
                    tree["strategy"],
                    tree["seed"],
                    [r["n_labeled"] for r in rows],
                    [r["accuracy"] for r in rows],
                    [r["ece"] for r in rows],
                )
            )
    if not runs:
        raise StarError(f"no finished rounds under {', '.join(map(str, roots))}")
    return runs


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1; 0 for one value)."""
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(values) > 1 else 0.0)


def paired_interval(diffs: list[float], seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of paired (same seed) differences."""
    t = torch.tensor(diffs, dtype=torch.float64)
    if len(t) == 1:
        return t.item(), t.item()
    g = torch.Generator().manual_seed(seed)
    means = t[torch.randint(len(t), (BOOTSTRAP, len(t)), generator=g)].mean(1)
    return torch.quantile(means, 0.025).item(), torch.quantile(means, 0.975).item()


def by_strategy(runs: list[RunResult]) -> dict[str, list[RunResult]]:
    groups: dict[str, list[RunResult]] = defaultdict(list)
    for r in runs:
        groups[r.strategy].append(r)
    for name, group in groups.items():
        seeds = [r.seed for r in group]
        if len(set(seeds)) != len(seeds):
            raise StarError(f"strategy {name!r} has two runs with the same seed: pass one sweep")
    return dict(sorted(groups.items()))


def summary_table(groups: dict[str, list[RunResult]]) -> str:
    rounds = min(len(r.accuracy) for g in groups.values() for r in g)
    lines = [
        "| strategy | seeds | "
        + " | ".join(f"round {k} (n={_n(groups, k)})" for k in range(rounds))
        + " | AULC | final ECE |",
        "|---|---|" + "---|" * rounds + "---|---|",
    ]
    for name, group in groups.items():
        cells = [_pm(mean_std([r.accuracy[k] for r in group])) for k in range(rounds)]
        aulc = _pm(mean_std([r.aulc() for r in group]))
        ece = _pm(mean_std([r.ece[rounds - 1] for r in group]))
        lines.append(f"| {name} | {len(group)} | " + " | ".join(cells) + f" | {aulc} | {ece} |")
    return "\n".join(lines) + "\n"


def paired_table(groups: dict[str, list[RunResult]]) -> str:
    if "random" not in groups:
        return "No `random` runs: no paired comparison.\n"
    base = {r.seed: r for r in groups["random"]}
    lines = [
        "| strategy | paired seeds | Δ AULC vs random (95 % CI) | Δ final accuracy (95 % CI) |",
        "|---|---|---|---|",
    ]
    for name, group in groups.items():
        if name == "random":
            continue
        pairs = [(r, base[r.seed]) for r in group if r.seed in base]
        if not pairs:
            continue
        k = min(len(r.accuracy) for r, _ in pairs) - 1
        d_aulc = [r.aulc() - b.aulc() for r, b in pairs]
        d_final = [r.accuracy[k] - b.accuracy[k] for r, b in pairs]
        lines.append(f"| {name} | {len(pairs)} | {_ci(d_aulc)} | {_ci(d_final)} |")
    return "\n".join(lines) + "\n"


def _n(groups, k: int) -> str:
    ns = {r.n_labeled[k] for g in groups.values() for r in g}
    return "/".join(str(n) for n in sorted(ns))


def _pm(ms: tuple[float, float]) -> str:
    return f"{ms[0]:.3f} ± {ms[1]:.3f}"


def _ci(diffs: list[float]) -> str:
    lo, hi = paired_interval(diffs)
    return f"{sum(diffs) / len(diffs):+.3f} [{lo:+.3f}, {hi:+.3f}]"


def write_report(roots: list[Path], out: Path) -> list[Path]:
    """summary.md plus learning-curve, ECE-curve and reliability plots (PNG and SVG)."""
    groups = by_strategy(find_runs(roots))
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.md"]
    runs = sorted(str(r.path) for g in groups.values() for r in g)
    written[0].write_text(
        "# star report\n\nRuns: " + ", ".join(f"`{p}`" for p in runs) + "\n\n"
        "## Accuracy per round (mean ± std over seeds), AULC and final ECE\n\n"
        + summary_table(groups)
        + "\nAULC: area under accuracy vs labelled examples divided by its x-range (the mean "
        "accuracy along the curve); std is the sample std over seeds.\n\n"
        "## Paired difference to random (same seeds)\n\n"
        + paired_table(groups)
        + f"\nIntervals: 95 % percentile bootstrap over seeds ({BOOTSTRAP} resamples); with "
        "few seeds they are rough.\n"
    )
    written += _plots(groups, out)
    return written


def _plots(groups: dict[str, list[RunResult]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for metric, label in (("accuracy", "accuracy"), ("ece", "ECE")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, group in groups.items():
            rounds = min(len(r.accuracy) for r in group)
            x = group[0].n_labeled[:rounds]
            stats = [mean_std([getattr(r, metric)[k] for r in group]) for k in range(rounds)]
            ax.plot(x, [m for m, _ in stats], marker="o", label=f"{name} ({len(group)} seeds)")
            ax.fill_between(x, [m - s for m, s in stats], [m + s for m, s in stats], alpha=0.15)
        ax.set_xlabel("labelled examples")
        ax.set_ylabel(f"{label} (mean ± std over seeds)")
        ax.legend()
        ax.grid(alpha=0.3)
        written += _save(fig, out / ("learning_curves" if metric == "accuracy" else "ece_curves"))
        plt.close(fig)
    for name, group in groups.items():
        confidence, correct = [], []
        for r in group:
            last = r.path / "rounds" / f"{len(r.accuracy) - 1:03d}" / "eval.jsonl"
            if last.exists():
                for line in last.read_text().splitlines():
                    row = json.loads(line)
                    confidence.append(row["confidence"])
                    correct.append(row["correct"])
        if not confidence:
            continue
        bins = reliability_bins(torch.tensor(confidence), torch.tensor(correct))
        fig, ax = plt.subplots(figsize=(4, 4))
        centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
        ax.bar(
            centres, [b["accuracy"] for b in bins], width=0.1, edgecolor="black", label="accuracy"
        )
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name}, last round ({len(confidence)} predictions)")
        ax.legend()
        written += _save(fig, out / f"reliability_{name}")
        plt.close(fig)
    return written


def _save(fig, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    return paths
