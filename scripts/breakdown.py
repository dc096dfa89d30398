"""What each strategy labelled, by kind (mix) or by gold class (the text tasks), and its
last-round accuracy on each: the per-cluster view of docs/results.md.

    .venv/bin/python scripts/breakdown.py runs/select-trec [more run folders]

Reads each run's config.yaml, labeled.jsonl and last eval.jsonl. A built-in example's id is
TASK-SPLIT-ROW; its group is the data row's `kind` where the task has one (mix), else its
gold label.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import yaml

from star.tasks.registry import data_file


def groups(task: str) -> dict[str, str]:
    """id -> group for every row of the task's shipped splits."""
    table = {}
    for split in ("train", "test"):
        for row, line in enumerate(data_file(task, split).read_text().splitlines()):
            record = json.loads(line)
            group = record.get("kind") or record.get("label") or record.get("answer")
            table[str(record.get("id") or f"{task}-{split}-{row:05d}")] = str(group)
    return table


def main(roots: list[Path]) -> None:
    labelled: dict[str, Counter] = defaultdict(Counter)
    right: dict[str, Counter] = defaultdict(Counter)
    total: dict[str, Counter] = defaultdict(Counter)
    runs: Counter = Counter()
    tables: dict[str, dict[str, str]] = {}
    configs = sorted(p for root in roots for p in root.rglob("config.yaml"))
    trees = {c: yaml.safe_load(c.read_text()) for c in configs}
    init = {c: t.get("loop", {}).get("init_by") for c, t in trees.items()}
    inits: dict[str, set] = defaultdict(set)
    for c, tree in trees.items():
        inits[tree["strategy"]].add(init[c])
    for config, tree in trees.items():
        run = config.parent
        strategy, task = tree["strategy"], tree["task"]
        if len(inits[strategy]) > 1:  # both round-0 variants: named as the report names them
            strategy += f" (init_by={init[config]})"
        table = tables.setdefault(task, groups(task))
        evals = sorted((run / "rounds").glob("*/eval.jsonl"))
        if not (run / "labeled.jsonl").exists() or not evals:
            continue
        runs[strategy] += 1
        for line in (run / "labeled.jsonl").read_text().splitlines():
            labelled[strategy][table[json.loads(line)["id"]]] += 1
        for line in evals[-1].read_text().splitlines():
            row = json.loads(line)
            total[strategy][table[row["id"]]] += 1
            right[strategy][table[row["id"]]] += row["correct"]
    names = sorted(
        {g for c in labelled.values() for g in c} | {g for c in total.values() for g in c}
    )
    print(
        "Each cell: examples of that group labelled (summed over the runs) / "
        "last-round accuracy on it.\n"
    )
    print("| strategy | runs | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for s in sorted(runs):
        cells = [f"{labelled[s][k]} / {right[s][k] / max(1, total[s][k]):.2f}" for k in names]
        print(f"| {s} | {runs[s]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
