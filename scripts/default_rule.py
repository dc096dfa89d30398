"""Issue 28's rule for the closed-label default, applied to committed reports, so that the
default is read off the evidence by a rule fixed before it, not chosen by eye:

    a strategy becomes the default when it beats `random` on AULC (paired 95 % interval above
    zero) on at least three benchmarks and loses (interval below zero) on none; otherwise
    `random` stays. The issue's goal adds: and reaches random's final accuracy with at most
    75 % of its labels on at least two.

Where several strategies pass, the one with the most wins, then the largest summed mean Δ.
Only comparisons with at least --min-seeds paired seeds count (the screen's 3 seeds decide
finalists, not the default); fewer are shown as "too few seeds".

    .venv/bin/python scripts/default_rule.py --aulc-axis log-labels \\
        trec=docs/results/room/trec ag_news=docs/results/room/ag_news sst2=docs/results/room/sst2

Each argument is BENCHMARK=REPORT, REPORT a `star report` directory (its runs.csv is read).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from star.experiment.report import paired_runs, reach_on_mean_curves, read_runs_csv
from star.experiment.statistics import detectable_difference, paired_interval

WINS_NEEDED = 3  # benchmarks won, with none lost
SHARE = 0.75  # of random's labels, to reach its final accuracy (the goal's second half)
SHARES_NEEDED = 2


@dataclass(frozen=True)
class Comparison:
    """One strategy against random on one benchmark."""

    seeds: int
    mean: float
    interval: tuple[float, float] | None  # None for one seed
    detectable: float | None
    share: float | None  # of random's labels to reach its final accuracy; None: not reached

    def outcome(self, min_seeds: int) -> str:
        if self.seeds < min_seeds or self.interval is None:
            return "too few seeds"
        lo, hi = self.interval
        return "win" if lo > 0 else "loss" if hi < 0 else "tie"


def compare(report: Path, log_axis: bool) -> dict[str, Comparison]:
    """Every strategy of a report against its random runs, paired by seed."""
    found = paired_runs(read_runs_csv(report / "runs.csv", log_axis))
    if isinstance(found, str):
        raise SystemExit(f"{report}: {found.strip()}")
    out = {}
    for label, pairs, rounds in found:
        diffs = [r.aulc(rounds) - b.aulc(rounds) for r, b in pairs]
        _, need = reach_on_mean_curves(pairs, rounds)
        out[label] = Comparison(
            len(diffs),
            sum(diffs) / len(diffs),
            paired_interval(diffs) if len(diffs) > 1 else None,
            detectable_difference(diffs),
            None if need is None else need / pairs[0][1].n_labeled[rounds - 1],
        )
    return out


def verdict(table: dict[str, dict[str, Comparison]], min_seeds: int) -> tuple[str, list[str]]:
    """The default (a strategy or "random") and one line per strategy saying why."""
    strategies = sorted({s for row in table.values() for s in row})
    reasons, winners = [], []
    for s in strategies:
        outcomes = [row[s].outcome(min_seeds) for row in table.values() if s in row]
        wins, losses = outcomes.count("win"), outcomes.count("loss")
        shares = sum(
            1
            for row in table.values()
            if s in row and row[s].outcome(min_seeds) != "too few seeds"
            and row[s].share is not None and row[s].share <= SHARE
        )  # fmt: skip
        passes = wins >= WINS_NEEDED and losses == 0
        goal = passes and shares >= SHARES_NEEDED
        reasons.append(
            f"{s}: {wins} won, {losses} lost, {outcomes.count('tie')} tied, "
            f"{outcomes.count('too few seeds')} with too few seeds; reaches random's final "
            f"accuracy with <= {SHARE:.0%} of its labels on {shares}: "
            + ("the rule's default" + (" and the goal met" if goal else "") if passes else "no")
        )
        if passes:
            winners.append((wins, sum(row[s].mean for row in table.values() if s in row), s))
    return (max(winners)[2] if winners else "random"), reasons


def markdown(table: dict[str, dict[str, Comparison]], min_seeds: int) -> str:
    lines = [
        "| benchmark | strategy | paired seeds | Δ AULC [95 %] | detectable | share of random's "
        "labels | outcome |",
        "|---|---|---|---|---|---|---|",
    ]
    for bench, row in table.items():
        for s, c in sorted(row.items()):
            ci = "[one seed]" if c.interval is None else "[{:+.3f}, {:+.3f}]".format(*c.interval)
            det = "—" if c.detectable is None else f"±{c.detectable:.3f}"
            share = "not reached" if c.share is None else f"{c.share:.0%}"
            lines.append(
                f"| {bench} | {s} | {c.seeds} | {c.mean:+.3f} {ci} | {det} | {share} "
                f"| {c.outcome(min_seeds)} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", metavar="BENCHMARK=REPORT")
    parser.add_argument("--min-seeds", type=int, default=10, help="paired seeds that count")
    parser.add_argument("--aulc-axis", choices=("labels", "log-labels"), default="labels")
    args = parser.parse_args(argv)
    table = {}
    for arg in args.reports:
        bench, sep, report = arg.partition("=")
        if not sep or not (Path(report) / "runs.csv").is_file():
            parser.error(f"{arg}: expected BENCHMARK=REPORT, REPORT holding a runs.csv")
        table[bench] = compare(Path(report), args.aulc_axis == "log-labels")
    print(markdown(table, args.min_seeds))
    default, reasons = verdict(table, args.min_seeds)
    print()
    for line in reasons:
        print(f"- {line}")
    print(f"\ndefault for closed-label tasks: {default}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
