"""Generate `mix`, the controlled sanity benchmark: short questions of five kinds that SmolLM2
learns from a few hundred labels, at different speeds (so which examples get labelled can
matter). Not one of the paper's tasks; written here, seeded, so the shipped files are
reproducible:

    python scripts/make_mix.py --out src/star/tasks/data/mix

Kinds, roughly from easy to hard for SmolLM2-135M after LoRA (an exploratory run on a
similar mix, noted on issue 7): first letter of a word, a number plus one, the larger of two
numbers, a two-digit number plus a digit, whether a number is even or odd. No test question
occurs in train.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

WORDS = {  # disjoint, so no test question was seen in training
    "train": "garden river pocket silver window candle forest button marble tiger ladder orange "
    "planet violin kettle meadow rocket saddle harbor jungle anchor basket cactus dragon "
    "engine falcon glove hammer island jacket".split(),
    "test": "lantern mirror needle oyster pepper quilt rabbit spider tunnel umbrella wagon "
    "yogurt zipper bridge castle".split(),
}
SIZES = {"train": (2000, 1), "test": (500, 2)}  # rows, seed


def question(r: random.Random, words: list[str]) -> tuple[str, str, str]:
    """(kind, question, answer)."""
    kind = r.choice(("first_letter", "plus_one", "larger", "add_digits", "parity"))
    if kind == "first_letter":
        w = r.choice(words)
        return kind, f"What is the first letter of the word {w}?", w[0]
    if kind == "plus_one":
        x = r.randrange(10, 1000)
        return kind, f"What is {x} plus 1?", str(x + 1)
    if kind == "larger":
        x, y = r.sample(range(10, 1000), 2)
        return kind, f"Which is larger, {x} or {y}?", str(max(x, y))
    if kind == "add_digits":
        x, y = r.randrange(10, 100), r.randrange(10)
        return kind, f"What is {x} plus {y}?", str(x + y)
    x = r.randrange(10, 10000)
    return kind, f"Is {x} even or odd?", "even" if x % 2 == 0 else "odd"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for split, (rows, seed) in SIZES.items():
        r = random.Random(seed)
        lines = []
        while len(lines) < rows:
            kind, q, a = question(r, WORDS[split])
            if split == "test" and q in seen:
                continue  # held out: never a training question
            seen.add(q)
            lines.append(json.dumps({"question": q, "answer": a, "kind": kind}) + "\n")
        (args.out / f"{split}.jsonl").write_text("".join(lines))


if __name__ == "__main__":
    main()
