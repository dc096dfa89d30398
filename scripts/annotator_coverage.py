"""How good is an LLM annotator, and how much would it save? On a built-in benchmark or your
own labelled file: the annotator's accuracy against coverage at several confidence thresholds
(the table refuel's autolabel reports), asked through `star annotate`'s own code.

    .venv/bin/python scripts/annotator_coverage.py --task sst2 --n 200 --scoring auto
        # the embedded SmolLM2 served here; --base-url URL --llm-model NAME for any endpoint
    .venv/bin/python scripts/annotator_coverage.py --task my-labelled.jsonl --answer-field label \
        --base-url URL --llm-model NAME

Coverage: the share of items whose answer clears the threshold (accepted as labels);
accuracy: of those, the share equal to the gold label; people label the rest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from star.errors import StarError
from star.labelling.annotator import Endpoint, ask
from star.tasks.reading import Fields, read_items
from star.tasks.registry import TASKS, load_split
from star.tasks.resolve import sample

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="default: serve the embedded SmolLM2 here")
    parser.add_argument("--llm-model", default="smollm2")
    parser.add_argument("--scoring", default="auto", help="auto, first-token or per-label")
    parser.add_argument(
        "--task",
        default="sst2",
        help="a built-in task with a label set, or your labelled JSONL/CSV file (id, prompt, "
        "answer and, optionally, choices; without choices the set is every answer in the file)",
    )
    parser.add_argument("--prompt-field", default="prompt", help="your file's prompt column")
    parser.add_argument("--answer-field", default="answer", help="your file's label column")
    parser.add_argument("--n", type=int, default=200, help="rows asked (seeded sample)")
    args = parser.parse_args()
    fields = Fields(prompt=args.prompt_field, answer=args.answer_field)
    rows, labels = _rows(args.task, fields)
    rows = sample(rows, args.n, 0)
    server = None
    if not args.base_url:
        from embedded_llm import serve

        server, args.base_url = serve()
    endpoint = Endpoint.from_options(args.base_url, args.llm_model, scoring=args.scoring)
    client = endpoint.client()
    said = [ask(client, endpoint, row.prompt, row.choices or labels) for row in rows]
    del server
    gold = [row.answer for row in rows]
    requests = sum(s.requests for s in said)
    print(
        f"{args.task}, {len(rows)} rows, annotator {args.llm_model}, {args.scoring} "
        f"scoring ({requests} requests; {sum(s.scoring == 'per-label' for s in said)} items "
        "scored per label)"
    )
    print("| threshold | coverage | accuracy of the accepted | labels left to people |")
    print("|---|---|---|---|")
    for t in THRESHOLDS:
        kept = [
            (s.answer == g)
            for s, g in zip(said, gold, strict=True)
            if s.answer is not None and s.confidence is not None and s.confidence >= t
        ]
        accuracy = f"{sum(kept) / len(kept):.3f}" if kept else "—"
        print(f"| {t:.2f} | {len(kept) / len(rows):.3f} | {accuracy} | {len(rows) - len(kept)} |")
    return 0


def _rows(task: str, fields: Fields) -> tuple[list, tuple[str, ...]]:
    """(rows with prompt, answer and choices, the label set) of a built-in task's test split or
    of a labelled file."""
    if task in TASKS:
        if not TASKS[task].labels:
            raise SystemExit(f"{task} has free answers; choose a task with a label set")
        return load_split(task, "test"), TASKS[task].labels
    items = read_items(Path(task), fields, need_answer=True)
    return items, tuple(sorted({i.answer for i in items}))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StarError as e:  # a bad file or endpoint: one line
        print(f"annotator_coverage: error: {e}", file=sys.stderr)
        sys.exit(2)
