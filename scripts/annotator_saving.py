"""What an LLM annotator saves, simulated: the same labelling project run twice on a built-in
benchmark, through star's own project commands (next → annotate → label → train):

- **people**: every chosen item gets its gold label, as if a person typed it;
- **llm@T**: `star annotate` asks the LLM first; answers at confidence ≥ T are accepted as
  labels (right or wrong), the rest go to the "person", who gives the gold label.

Both arms choose the same items (strategy `random`, same seed, same labelled set), so a round's
difference is only whose labels were trained on. Printed per round: labels, people's labels,
the accepted LLM labels' accuracy against gold, and accuracy on held-out test rows.

    .venv/bin/python scripts/annotator_saving.py --task sst2 --thresholds 0.9,0.5,0 \
        --out runs/annotator-saving-sst2          # the embedded SmolLM2 as the annotator
    .venv/bin/python scripts/annotator_saving.py --base-url http://HOST:8000/v1 \
        --llm-model NAME --task sst2 --out runs/saving-NAME   # any OpenAI-compatible endpoint

Rerunning the same command finishes what is unfinished (each step reads the project's state).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import star
from star.labelling.annotator import Endpoint
from star.tasks.registry import TASKS, load_split
from star.tasks.resolve import EVAL_SAMPLE_SEED, sample


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="default: serve the embedded SmolLM2 here")
    parser.add_argument("--llm-model", default="smollm2")
    parser.add_argument("--scoring", default="auto")
    parser.add_argument("--task", default="sst2", help="a built-in task with a label set")
    parser.add_argument("--thresholds", default="0.9,0", help="one llm arm per threshold")
    parser.add_argument("--schedule", default="16,32,64", help="labels after each round")
    parser.add_argument("--pool-size", type=int, default=1000)
    parser.add_argument("--eval-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="smollm2-135m", help="the model being tuned")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spec = TASKS[args.task]
    if not spec.labels:
        raise SystemExit(f"{args.task} has free answers; choose a task with a label set")
    sizes = [int(x) for x in args.schedule.split(",")]
    pool = sample(load_split(args.task, "train"), args.pool_size, args.seed)
    evals = sample(load_split(args.task, "test"), args.eval_size, EVAL_SAMPLE_SEED)
    gold = {e.id: e.answer for e in pool}
    args.out.mkdir(parents=True, exist_ok=True)
    pool_file, eval_file = args.out / "pool.jsonl", args.out / "eval.jsonl"
    _write(pool_file, [{"id": e.id, "prompt": e.prompt, "choices": spec.labels} for e in pool])
    _write(eval_file, [{"id": e.id, "prompt": e.prompt, "answer": e.answer} for e in evals])
    config = star.make_config(
        {
            "task": args.task,
            "strategy": "random",
            "seed": args.seed,
            "model.name": args.model,
            "train.epochs": args.epochs,
            "lora.r": 16,
            "lora.alpha": 16,
            "train.lr": 5e-4,
            "train.batch_size": 4,
        }  # fmt: skip
    )
    server = None
    if not args.base_url:
        from embedded_llm import serve

        server, args.base_url = serve()
    endpoint = Endpoint.from_options(args.base_url, args.llm_model, scoring=args.scoring)
    arms = [("people", None)] + [(f"llm@{t}", float(t)) for t in args.thresholds.split(",")]
    results = {}
    for name, threshold in arms:
        path = args.out / name
        if not path.exists():
            star.init_project(path, pool_file, config, eval_file=eval_file, max_new_tokens=8)
        results[name] = arm(path, sizes, gold, endpoint, threshold)
    del server
    print(f"{args.task}, seed {args.seed}, annotator {args.llm_model} ({args.scoring} scoring)")
    print("| arm | labels | people's labels | LLM labels (right) | test accuracy |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        for r in rows:
            llm = f"{r['llm']} ({r['llm_right']})" if r["llm"] else "0"
            print(f"| {name} | {r['n_labeled']} | {r['people']} | {llm} | {r['accuracy']:.3f} |")
    rows = [{"arm": name, **r} for name, arm_rows in results.items() for r in arm_rows]
    _write(args.out / "results.jsonl", rows)
    return 0


def arm(path: Path, sizes: list[int], gold: dict, endpoint: Endpoint, threshold) -> list[dict]:
    """Run one arm to the end of the schedule; each step does only what the project lacks."""
    rows = []
    for k, size in enumerate(sizes):
        with star.open_project(path) as project:
            if len(project.rounds()) <= k:
                waiting = project.pending()
                want = size - len(project.labels()) - len(waiting)
                if want > 0:
                    project.next(want)
                if threshold is not None:
                    project.annotate(endpoint, threshold=threshold)
                if project.pending():  # the "person" labels what the LLM did not
                    people = path / "exports" / f"gold-{k}.jsonl"
                    _write(people, [{"id": i, "label": gold[i]} for i in sorted(project.pending())])
                    project.import_labels(people)
                project.train()
            metrics = project.rounds()[k]
            labels, people_labels = project.labels(), project.labels(people_only=True)
            first = {}  # id -> the first round that trained on it (its batch's after_round + 1)
            for b in project.batches():
                for i in b["ids"]:
                    first.setdefault(i, 0 if b["after_round"] is None else b["after_round"] + 1)
        trained = {i for i in labels if first[i] <= k}
        llm = {i: labels[i] for i in trained if i not in people_labels}
        rows.append(
            {
                "round": k,
                "n_labeled": metrics["n_labeled"],
                "people": len(trained) - len(llm),
                "llm": len(llm),
                "llm_right": sum(a == gold[i] for i, a in llm.items()),
                "accuracy": metrics["accuracy"],
            }
        )
    return rows


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


if __name__ == "__main__":
    sys.exit(main())
