"""star from Python: a short simulated run, then a labelling project (docs/api.md).

    .venv/bin/python examples/api.py               # the tiny test model: seconds
    .venv/bin/python examples/api.py smollm2-135m  # the embedded model: minutes

Everything is written to a temporary folder and removed at the end.
"""

import json
import sys
import tempfile
from pathlib import Path

import star

MODEL = sys.argv[1] if len(sys.argv) > 1 else "tiny-random"
REVIEWS = Path(__file__).parent / "reviews"
SMALL = {"model.name": MODEL, "lora.r": 4, "train.epochs": 1, "train.batch_size": 4}

with tempfile.TemporaryDirectory() as tmp:
    work = Path(tmp)

    # 1. A simulated run: sst2 with its gold labels as the annotator, typical vs the budget.
    config = star.make_config(
        {
            **SMALL,
            "task": "sst2",
            "strategy": "typical",
            "data.pool_size": 64,
            "data.eval_size": 16,
            "loop.schedule": [8, 16],
        }
    )
    rows = star.run(
        config,
        work / "run",
        on_round=lambda r: print(
            f"round {r['round']}: {r['n_labeled']} labels, accuracy {r['accuracy']:.3f}"
        ),
    )
    assert star.read_metrics(work / "run") == rows  # what metrics.jsonl holds

    # 2. A labelling project: the next batch, labels back, a trained round, the stop rules.
    star.init_project(
        work / "reviews",
        REVIEWS / "pool.jsonl",
        star.make_config({**SMALL, "strategy": "random"}),
        eval_file=REVIEWS / "eval.jsonl",
    )
    with star.open_project(work / "reviews") as project:
        batch, n, _ = project.next(size=4)
        asked = [json.loads(line) for line in batch.read_text().splitlines()]
        # a person fills in `label`; here an annotator that agrees with the model stands in
        filled = work / "filled.jsonl"
        filled.write_text(
            "".join(json.dumps({"id": r["id"], "label": r["model_answer"]}) + "\n" for r in asked)
        )
        print(project.import_labels(filled))  # {'imported': 4, 'unchanged': 0}
        print(project.train())  # round 0: n_labeled 4, train_loss, accuracy, ece …
        for line in project.status()["stop"]:
            print(line)  # stop: no (kappa: needs two trained rounds) …

    print("strategies:", ", ".join(star.list_strategies()))
