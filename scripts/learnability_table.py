"""The learnability table of docs/results.md, from the runs of scripts/learnability.sh.

For each task: zero-shot accuracy (the untrained model), accuracy after each schedule point
with random labels (mean ± std over the seeds finished there), the majority-class baseline on
the same evaluation rows (the most common label of the training rows), and minutes per run.

    .venv/bin/python scripts/learnability_table.py runs/learn > docs/results/learnability.md
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import Counter
from pathlib import Path

import yaml

from star.config import from_dict
from star.tasks.resolve import resolve


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def majority(run: Path) -> tuple[str, float]:
    """(most common training label, its accuracy on the run's evaluation rows)."""
    config, task = resolve(from_dict(yaml.safe_load((run / "config.yaml").read_text()), "run"))
    label = Counter(e.answer for e in task.train).most_common(1)[0][0]
    answers = [r["answer"] for r in rows(run / "rounds" / "000" / "eval.jsonl")]
    return label, sum(a == label for a in answers) / len(answers)


def fmt(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f} (1 seed)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} ({len(values)})"


def main(root: Path) -> None:
    print("| task | zero-shot | " + " | ".join(f"{n} labels" for n in (64, 128, 256)), end="")
    print(" | majority class | minutes per run |")
    print("|---|---|---|---|---|---|---|")
    tasks = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith("zero-shot")]
    for task_dir in sorted(tasks):
        by_size: dict[int, list[float]] = {}
        minutes = []
        runs = sorted(task_dir.glob("random-seed*"))
        for run in runs:
            metrics = rows(run / "metrics.jsonl") if (run / "metrics.jsonl").exists() else []
            for m in metrics:
                by_size.setdefault(m["n_labeled"], []).append(m["accuracy"])
            if len(metrics) == 3:
                minutes.append(sum(m["seconds"] for m in metrics) / 60)
        zero = root / "zero-shot" / task_dir.name / "metrics.jsonl"
        if not zero.exists():  # the paper's tasks: zero-shot in both modes, options here
            zero = root / "zero-shot-paper" / f"{task_dir.name}-options" / "metrics.jsonl"
        zs = f"{rows(zero)[0]['accuracy']:.3f}" if zero.exists() else "–"
        done = [r for r in runs if (r / "rounds" / "000" / "eval.jsonl").exists()]
        label, base = majority(done[0]) if done else ("?", float("nan"))
        cells = [fmt(by_size.get(n, [])) for n in (64, 128, 256)]
        mins = f"{statistics.mean(minutes):.1f}" if minutes else "–"
        print(f"| {task_dir.name} | {zs} | " + " | ".join(cells), end="")
        print(f" | {base:.3f} ({label}) | {mins} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
