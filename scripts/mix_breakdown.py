"""Per-kind view of `mix` runs: what each strategy labelled, and last-round accuracy by kind.

    .venv/bin/python scripts/mix_breakdown.py runs/sweep-mix

Reads each run's config.yaml, labeled.jsonl and last eval.jsonl; the kind of an example comes
from the shipped mix data (ids are mix-SPLIT-ROW).
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parents[1] / "src" / "star" / "data" / "mix"


def kinds(split: str) -> list[str]:
    lines = (DATA / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line)["kind"] for line in lines]


def kind_of(example_id: str, table: dict[str, list[str]]) -> str:
    _, split, row = example_id.rsplit("-", 2)
    return table[split][int(row)]


def main(roots: list[Path]) -> None:
    table = {"train": kinds("train"), "test": kinds("test")}
    names = sorted(set(table["train"]))
    labelled: dict[str, Counter] = defaultdict(Counter)
    right: dict[str, Counter] = defaultdict(Counter)
    total: dict[str, Counter] = defaultdict(Counter)
    runs: Counter = Counter()
    for config in sorted(p for root in roots for p in root.rglob("config.yaml")):
        run = config.parent
        strategy = yaml.safe_load(config.read_text())["strategy"]
        evals = sorted((run / "rounds").glob("*/eval.jsonl"))
        if not (run / "labeled.jsonl").exists() or not evals:
            continue
        runs[strategy] += 1
        for line in (run / "labeled.jsonl").read_text().splitlines():
            labelled[strategy][kind_of(json.loads(line)["id"], table)] += 1
        for line in evals[-1].read_text().splitlines():
            row = json.loads(line)
            kind = kind_of(row["id"], table)
            total[strategy][kind] += 1
            right[strategy][kind] += row["correct"]
    print(
        "Each cell: examples of that kind labelled (summed over the runs) / "
        "last-round accuracy on it.\n"
    )
    print("| strategy | runs | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for s in sorted(runs):
        cells = [f"{labelled[s][k]} / {right[s][k] / max(1, total[s][k]):.2f}" for k in names]
        print(f"| {s} | {runs[s]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
