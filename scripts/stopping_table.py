"""Where would each stopping rule have stopped? Reads full-budget runs made with a stop set
(`--stop-size N`, so every round's metrics row holds every rule's figure) and prints, per run
and rule, the first round at which the rule says stop (default thresholds), the labels that
saved and the accuracy given up against the run's last round.

    .venv/bin/python scripts/stopping_table.py runs/stop-sst2 runs/stop-trec
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from star.method.stopping import RoundPredictions, decide, from_rows

RULES = ("kappa", "uncertainty")


def history(run: Path, rounds: int) -> list[RoundPredictions]:
    return [
        from_rows([json.loads(x) for x in (run / "rounds" / f"{k:03d}" / "stop.jsonl").open()])
        for k in range(rounds)
    ]


def main(roots: list[Path]) -> None:
    print(
        "| run | rule | figure per round | stops at (labels) | labels saved | accuracy given up |"
    )
    print("|---|---|---|---|---|---|")
    for run in sorted(p.parent for root in roots for p in root.rglob("metrics.jsonl")):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        if not rows or "stop" not in rows[0]:
            continue
        seen = history(run, len(rows))
        last, name = rows[-1], f"{run.parent.name}/{run.name}"
        for rule in RULES:
            figures = [r["stop"][rule] for r in rows]
            shown = " / ".join("–" if f is None else f"{f:.3f}" for f in figures)
            at = next((k for k in range(len(rows)) if decide(seen[: k + 1], rule, None).stop), None)
            if at is None:
                budget = last["n_labeled"]
                print(f"| {name} | {rule} | {shown} | never (budget {budget}) | 0 | 0 |")
                continue
            saved = last["n_labeled"] - rows[at]["n_labeled"]
            given_up = last["accuracy"] - rows[at]["accuracy"]
            print(
                f"| {name} | {rule} | {shown} | round {at} ({rows[at]['n_labeled']}) "
                f"| {saved} | {given_up:+.3f} |"
            )


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
