"""Compare strategies across runs the way the paper does: curves over rounds, mean ± std over
seeds, area under the learning curve, calibration per round, and the paired difference to random.

Runs are found by their `config.yaml` and grouped by what it records, never by directory names:
by strategy, and within a strategy by any setting that differs between its runs (an ablation
such as `star` with `b_decay` 0 shows as its own line, "star (b_decay=0.0)").

A little over 400 lines: finding runs, one function per table and the plots of one report; the
statistics behind the tables are `experiment.statistics`.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from star import config as cfg
from star.errors import StarError
from star.experiment.statistics import (
    BOOTSTRAP,
    detectable_difference,
    labels_to_reach,
    mean_std,
    paired_interval,
)
from star.files import read_yaml
from star.method.metrics import brier_score, negative_log_likelihood, reliability_bins

# Settings that change speed, never what a run computes, so they never split a strategy into
# variants (the evaluation mode does change it: it is a variant).
NOT_A_VARIANT = (
    "seed",
    "star_version",
    "inference.batch_tokens",
    "inference.eval_batch_size",
    "inference.signal_cache",
    "inference.reuse_training",
    "inference.merge_lora",
)
CALIBRATION = (("ece", "ECE"), ("nll", "NLL"), ("brier", "Brier"))


@dataclass(frozen=True)
class RunResult:
    path: Path
    strategy: str
    seed: int
    n_labeled: list[int]  # per finished round
    accuracy: list[float]
    ece: list[float]
    nll: list[float] = field(default_factory=list)  # per round, from eval.jsonl (nan: missing)
    brier: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the finished rounds
    settings: dict[str, object] = field(default_factory=dict)  # flattened config, no seed
    log_axis: bool = False  # the area over log2(labels): every doubling weighs the same

    def aulc(self, rounds: int | None = None) -> float:
        """Area under accuracy vs labelled examples (or their log2) over the first `rounds`
        rounds (all if None), divided by the x-range: the mean accuracy along the curve
        (trapezoids; the one point itself for a single round)."""
        y = self.accuracy[:rounds]
        x = [math.log2(n) if self.log_axis else n for n in self.n_labeled[:rounds]]
        if len(x) == 1 or x[-1] == x[0]:
            return y[-1]
        area = sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1))
        return area / (x[-1] - x[0])


def find_runs(
    roots: list[Path], rounds: int | None = None, log_axis: bool = False
) -> list[RunResult]:
    """Every run with a finished round under the roots; only the first `rounds` if given."""
    # a setting a run's config lacks (written before the option existed) is the default, which
    # is what that version did: such a run pairs with runs that record the default
    defaults = _flatten(cfg.RunConfig().to_dict())
    runs = []
    for root in roots:
        if not root.is_dir():
            raise StarError(f"{root}: no such directory")
        for config_path in sorted(root.rglob("config.yaml")):
            metrics_path = config_path.parent / "metrics.jsonl"
            if not metrics_path.exists():
                continue  # a run that has not finished a round yet
            tree = read_yaml(config_path)  # read loosely: runs of older versions too
            if not isinstance(tree.get("strategy"), str) or not isinstance(tree.get("seed"), int):
                raise StarError(f"{config_path}: no strategy and seed: not a star run config")
            rows = [json.loads(x) for x in metrics_path.read_text().splitlines() if x.strip()]
            rows = rows[:rounds]
            if not rows:
                continue
            calibration = [_calibration(config_path.parent, r["round"]) for r in rows]
            runs.append(
                RunResult(
                    config_path.parent,
                    tree["strategy"],
                    tree["seed"],
                    [r["n_labeled"] for r in rows],
                    [r["accuracy"] for r in rows],
                    [r["ece"] for r in rows],
                    [nll for nll, _ in calibration],
                    [brier for _, brier in calibration],
                    sum(r.get("seconds", 0.0) for r in rows),
                    {
                        k: v
                        for k, v in (defaults | _flatten(tree)).items()
                        if not k.startswith(NOT_A_VARIANT)
                    },
                    log_axis,
                )
            )
    if not runs:
        raise StarError(f"no finished rounds under {', '.join(map(str, roots))}")
    return runs


def _calibration(run: Path, k: int) -> tuple[float, float]:
    """NLL and Brier of round k's predictions (nan when its eval.jsonl is gone)."""
    confidence, correct = _predictions(run, k)
    if not len(confidence):
        return math.nan, math.nan
    return negative_log_likelihood(confidence, correct), brier_score(confidence, correct)


def _predictions(run: Path, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    path = run / "rounds" / f"{k:03d}" / "eval.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return (
        torch.tensor([r["confidence"] for r in rows], dtype=torch.float64),
        torch.tensor([bool(r["correct"]) for r in rows], dtype=torch.bool),
    )


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat |= _flatten(v, f"{prefix}{k}.")
        else:
            flat[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return flat


# Settings that a task resolves for itself (star.tasks.resolve.resolve).
TASK_DERIVED = {
    f"data.{name}"
    for name in (
        "template",
        "labels",
        "id_field",
        "prompt_field",
        "answer_field",
        "choices_field",
        "task_sha256",
        "test_sha256",
        "test",
    )
}


def _short(value) -> str:
    """A setting on one line, at most 40 characters (templates hold newlines)."""
    text = " ".join(str(value).split())
    return text if len(text) <= 40 else text[:39] + "…"


def by_variant(runs: list[RunResult]) -> dict[str, list[RunResult]]:
    """Runs grouped by strategy, then by the settings that differ among that strategy's runs."""
    by_name: dict[str, list[RunResult]] = defaultdict(list)
    for r in runs:
        by_name[r.strategy].append(r)
    groups: dict[str, list[RunResult]] = defaultdict(list)
    for name, group in by_name.items():
        keys = sorted({k for r in group for k in r.settings})
        differ = [k for k in keys if len({repr(r.settings.get(k)) for r in group}) > 1]
        if "task" in differ:  # the task's own settings follow from it: name the task alone
            differ = [k for k in differ if k not in TASK_DERIVED]
        for r in group:
            shown = ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(r.settings.get(k))}" for k in differ)
            groups[f"{name} ({shown})" if differ else name].append(r)
    for label, group in groups.items():
        seeds = [r.seed for r in group]
        if len(set(seeds)) != len(seeds):
            raise StarError(f"{label!r} has two runs with the same seed: pass one sweep")
    return dict(sorted(groups.items()))


def summary_table(groups: dict[str, list[RunResult]]) -> str:
    rounds = _rounds(groups)
    lines = [
        "| strategy | seeds | "
        + " | ".join(f"round {k} (n={_n(groups, k)})" for k in range(rounds))
        + " | AULC | final ECE | minutes per run |",
        "|---|---|" + "---|" * rounds + "---|---|---|",
    ]
    for name, group in groups.items():
        cells = [_pm(mean_std([r.accuracy[k] for r in group])) for k in range(rounds)]
        aulc = _pm(mean_std([r.aulc(rounds) for r in group]))
        ece = _pm(mean_std([r.ece[rounds - 1] for r in group]))
        minutes = sum(r.seconds for r in group) / len(group) / 60
        lines.append(
            f"| {name} | {len(group)} | "
            + " | ".join(cells)
            + f" | {aulc} | {ece} | {minutes:.1f} |"
        )
    return "\n".join(lines) + "\n"


def calibration_table(groups: dict[str, list[RunResult]], metric: str) -> str:
    """Strategy × round table of one calibration metric (mean ± std over seeds)."""
    rounds = _rounds(groups)
    lines = [
        "| strategy | " + " | ".join(f"round {k}" for k in range(rounds)) + " |",
        "|---|" + "---|" * rounds,
    ]
    for name, group in groups.items():
        cells = [_pm(mean_std([getattr(r, metric)[k] for r in group])) for k in range(rounds)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


Pair = tuple[RunResult, RunResult]  # (a strategy's run, random's run of the same seed)


def paired_runs(groups: dict[str, list[RunResult]]) -> list[tuple[str, list[Pair], int]] | str:
    """(variant, its runs paired with random's by seed, rounds all pairs finished) for every
    variant but random; or why nothing pairs."""
    baselines = [name for name, group in groups.items() if group[0].strategy == "random"]
    if len(baselines) != 1:
        return (
            "No `random` runs: no paired comparison.\n"
            if not baselines
            else "Several `random` variants: report each setting separately to pair them.\n"
        )
    base = {r.seed: r for r in groups[baselines[0]]}
    out = []
    for name, group in groups.items():
        pairs = [(r, base[r.seed]) for r in group if r.seed in base]
        if name != baselines[0] and pairs:
            out.append((name, pairs, min(min(len(r.accuracy), len(b.accuracy)) for r, b in pairs)))
    return out


def paired_table(groups: dict[str, list[RunResult]]) -> str:
    found = paired_runs(groups)
    if isinstance(found, str):
        return found
    lines = [
        "| strategy | paired seeds | Δ AULC | Δ AULC detectable | Δ final accuracy "
        "| Δ final ECE | Δ final NLL | Δ final Brier |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, pairs, rounds in found:
        k = rounds - 1
        aulc = [r.aulc(rounds) - b.aulc(rounds) for r, b in pairs]
        detectable = detectable_difference(aulc)
        cells = [_ci(aulc), "—" if detectable is None else f"±{detectable:.3f}"] + [
            _ci([getattr(r, m)[k] - getattr(b, m)[k] for r, b in pairs])
            for m in ("accuracy", "ece", "nll", "brier")
        ]
        lines.append(f"| {name} | {len(pairs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reach_on_mean_curves(pairs: list[Pair], k: int) -> tuple[float, float | None]:
    """Random's mean accuracy after k rounds, and the labels at which the strategy's mean curve
    over the same seeds reaches it (None: never within k rounds)."""
    mean = [sum(r.accuracy[i] for r, _ in pairs) / len(pairs) for i in range(k)]
    target = sum(b.accuracy[k - 1] for _, b in pairs) / len(pairs)
    return target, labels_to_reach(pairs[0][0].n_labeled[:k], mean, target)


def reach_table(groups: dict[str, list[RunResult]]) -> str:
    """Labels each strategy needs to reach random's final accuracy, as a share of random's:
    on the mean curves over the paired seeds, and seed by seed (how many seeds get there)."""
    found = paired_runs(groups)
    if isinstance(found, str):
        return found
    lines = [
        "| strategy | paired seeds | random's final accuracy (labels) | labels to reach it "
        "(mean curve) | share of random's labels | seeds that reach it |",
        "|---|---|---|---|---|---|",
    ]
    for name, pairs, k in found:
        x = pairs[0][0].n_labeled[:k]
        target, need = reach_on_mean_curves(pairs, k)
        each = [
            labels_to_reach(r.n_labeled[:k], r.accuracy[:k], b.accuracy[k - 1]) for r, b in pairs
        ]
        reached = sum(n is not None for n in each)
        cells = (
            f"{target:.3f} ({x[-1]})",
            "not reached" if need is None else f"{need:.1f}",
            "—" if need is None else f"{need / x[-1]:.0%}",
            f"{reached} of {len(pairs)}",
        )
        lines.append(f"| {name} | {len(pairs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _rounds(groups: dict[str, list[RunResult]]) -> int:
    return min(len(r.accuracy) for g in groups.values() for r in g)


def _n(groups, k: int) -> str:
    ns = {r.n_labeled[k] for g in groups.values() for r in g}
    return "/".join(str(n) for n in sorted(ns))


def _pm(ms: tuple[float, float]) -> str:
    return f"{ms[0]:.3f} ± {ms[1]:.3f}"


def _ci(diffs: list[float]) -> str:
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:  # a bootstrap of one value is that value: no interval to show
        return f"{mean:+.3f} [one seed]"
    lo, hi = paired_interval(diffs)
    return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def write_report(
    roots: list[Path], out: Path, rounds: int | None = None, axis: str = "labels"
) -> list[Path]:
    """summary.md, runs.csv (every run and round) and accuracy, ECE, NLL, Brier and reliability
    plots (PNG and SVG). axis: the AULC's x, "labels" or "log-labels" (log2: each doubling of
    the labelled set weighs the same, for schedules that double)."""
    if rounds is not None and rounds < 1:
        raise StarError(f"--rounds {rounds}: must be at least 1")
    groups = by_variant(find_runs(roots, rounds, axis == "log-labels"))
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.md"]
    runs = sorted(str(r.path) for g in groups.values() for r in g)
    calibration = "".join(
        f"\n### {label}\n\n" + calibration_table(groups, metric) for metric, label in CALIBRATION
    )
    written[0].write_text(
        "# star report\n\nRuns: "
        + ", ".join(f"`{p}`" for p in runs)
        + ("" if rounds is None else f" (first {rounds} round(s) of each)")
        + "\n\n"
        "## Accuracy per round (mean ± std over seeds), AULC and final ECE\n\n"
        + summary_table(groups)
        + "\nAULC: area under accuracy vs "
        + ("log2(labelled examples)" if axis == "log-labels" else "labelled examples")
        + " divided by its x-range (the mean accuracy along the curve); std is the sample std "
        "over seeds; minutes: mean wall time of a run's finished rounds.\n\n"
        "## Calibration per round (mean ± std over seeds)\n\n"
        "Each prediction's confidence scored as a forecast that it is correct (ECE: 10 bins; "
        "NLL: confidences clamped to [1e-6, 1 − 1e-6]; lower is better for all three).\n"
        + calibration
        + "\n## Paired difference to random (same seeds; mean [95 % CI])\n\n"
        + paired_table(groups)
        + f"\nIntervals: 95 % percentile bootstrap over seeds ({BOOTSTRAP} resamples); with "
        "few seeds they are rough. Final: the last round every paired run finished. "
        "Detectable: the smallest mean Δ AULC these seeds would find (95 % test, 80 % power) "
        "given the paired differences' spread; a tie with a larger figure means too few seeds, "
        "not no effect.\n"
        "\n## Labels to reach random's final accuracy\n\n"
        + reach_table(groups)
        + "\nInterpolated linearly between rounds; a share under 100 % means fewer labels "
        "than random needed for the same accuracy.\n"
    )
    written.append(_runs_csv(groups, out / "runs.csv"))
    written += _plots(groups, out)
    return written


def _runs_csv(groups: dict[str, list[RunResult]], path: Path) -> Path:
    """Every run's every round, the numbers behind the tables, small enough to commit."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["strategy", "seed", "round", "n_labeled", "accuracy", "ece", "nll", "brier", "run"]
        )
        for name, group in groups.items():
            for r in sorted(group, key=lambda r: r.seed):
                for k, n in enumerate(r.n_labeled):
                    values = (r.accuracy[k], r.ece[k], r.nll[k], r.brier[k])
                    w.writerow([name, r.seed, k, n, *(f"{v:.6f}" for v in values), r.path])
    return path


def read_runs_csv(path: Path, log_axis: bool = False) -> dict[str, list[RunResult]]:
    """A committed report's runs.csv back as its groups (label -> runs, by seed), so its tables
    can be recomputed, and reports of several benchmarks compared, without the run directories."""
    rows: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows[row["strategy"]][int(row["seed"])].append(row)
    groups = {}
    for label, seeds in rows.items():
        groups[label] = []
        for seed, rounds in sorted(seeds.items()):
            rounds.sort(key=lambda r: int(r["round"]))
            col = {m: [float(r[m]) for r in rounds] for m in ("accuracy", "ece", "nll", "brier")}
            n = [int(r["n_labeled"]) for r in rounds]
            run = Path(rounds[0]["run"])
            groups[label].append(RunResult(run, label, seed, n, **col, log_axis=log_axis))
    if not groups:
        raise StarError(f"{path}: no runs")
    return groups


def _plots(groups: dict[str, list[RunResult]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for metric, label in (("accuracy", "accuracy"), *CALIBRATION):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, group in groups.items():
            rounds = min(len(r.accuracy) for r in group)
            x = group[0].n_labeled[:rounds]
            stats = [mean_std([getattr(r, metric)[k] for r in group]) for k in range(rounds)]
            reference = group[0].strategy == "random"  # the line every strategy must beat
            ax.plot(
                x,
                [m for m, _ in stats],
                marker="o",
                label=f"{name} ({len(group)} seeds)",
                **({"linestyle": "--", "color": "black"} if reference else {}),
            )
            ax.fill_between(
                x,
                [m - s for m, s in stats],
                [m + s for m, s in stats],
                alpha=0.08 if reference else 0.15,
                **({"color": "black"} if reference else {}),
            )
        ax.set_xlabel("labelled examples")
        ax.set_ylabel(f"{label} (mean ± std over seeds)")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        stem = "learning_curves" if metric == "accuracy" else f"{metric}_curves"
        written += _save(fig, out / stem)
        plt.close(fig)
    for name, group in groups.items():
        last = [_predictions(r.path, len(r.accuracy) - 1) for r in group]
        confidence = torch.cat([c for c, _ in last])
        correct = torch.cat([c for _, c in last])
        if not len(confidence):
            continue
        bins = reliability_bins(confidence, correct)
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
        written += _save(fig, out / f"reliability_{_file_name(name)}")
        plt.close(fig)
    return written


def _save(fig, stem: Path) -> list[Path]:
    paths = [stem.parent / f"{stem.name}.{suffix}" for suffix in ("png", "svg")]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    return paths


def _file_name(label: str) -> str:
    """A variant label as a file name: "star (b_decay=0.0)" -> "star_b_decay-0.0"."""
    return re.sub(r"[^\w.-]+", "_", label.replace("=", "-")).strip("_")
