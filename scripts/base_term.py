"""Does the base-model term of STAR measure *which kind* of example it is? No training: the
check behind docs/results.md's "A base term that does not just measure answer format".

    .venv/bin/python scripts/base_term.py mix trec

For seed 0's pool (the size configs/selection/TASK.yaml uses), the 64 candidates each base
term ranks highest, by group (mix: kind; text tasks: gold class), against the pool's own
shares (what random picks get on average):
  - base PE: the base model's PE of the gold answer given the prompt (star's base term, the
    paper's setting: gold target, summed);
  - IFD: that PE minus the PE of the same answer with no prompt (`instruction_difficulty`);
and the same two label-free (the base model's own answer, length-normalised).
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from pathlib import Path

import torch
import yaml

from star import config as cfg
from star.active.step import Learner
from star.engine.signals import PoolSignals
from star.experiment.loop import load_splits
from star.method.strategies import configure
from star.method.uncertainty import instruction_difficulty
from star.tasks.resolve import resolve

sys.path.insert(0, str(Path(__file__).parent))
from breakdown import groups  # noqa: E402

TOP = 64


def share(ids: list[str], group: dict[str, str]) -> collections.Counter:
    return collections.Counter(group[i] for i in ids)


def base_scores(config) -> tuple[list, torch.Tensor, torch.Tensor]:
    """(pool, base PE, prompt-free PE) of seed 0's pool: one base pass, through the cache."""
    config, task = resolve(config)
    pool = load_splits(config, task).pool
    learner = Learner(config, task.spec)
    length = learner.answer_length([])
    settings = learner.signal_settings(0, learner.answer_kind(pool, length))
    settings = dataclasses.replace(settings, mc_passes=1)
    source = PoolSignals(
        learner.base,
        learner.encode(pool),
        learner.tokenizer.pad_token_id,
        settings,
        lambda m, positions, _: [
            a.token_ids for a in learner.answers(m, [pool[i] for i in positions], length)
        ],
        lambda kind: learner.base_cache(kind, settings),
    )
    return pool, source.base().pe, source.base_prior().pe


def main(tasks: list[str]) -> None:
    root = Path(__file__).resolve().parents[1] / "configs" / "selection"
    for task in tasks:
        base = yaml.safe_load((root / f"{task}.yaml").read_text())
        group = groups(task)
        for target, norm in (("gold", False), ("generated", True)):
            config = configure(
                cfg.build(
                    {
                        "strategy": "star",
                        "uncertainty.target": target,
                        "uncertainty.length_norm": norm,
                    },
                    base,
                )
            )
            pool, conditional, prior = base_scores(config)
            ids = [e.id for e in pool]
            everyone = share(ids, group)
            rows = {
                "base PE": conditional,
                "IFD": instruction_difficulty(conditional, prior),
            }
            print(f"\n{task}, target {target}, length_norm {norm}, pool {len(pool)}, top {TOP}")
            names = sorted(everyone)
            print("| term | " + " | ".join(names) + " |")
            print("|---|" + "---|" * len(names))
            expected = [f"{TOP * everyone[n] / len(pool):.1f}" for n in names]
            print("| pool share × 64 (random) | " + " | ".join(expected) + " |")
            for name, values in rows.items():
                top = torch.argsort(values, descending=True, stable=True)[:TOP].tolist()
                got = share([ids[i] for i in top], group)
                print(f"| {name} | " + " | ".join(str(got[n]) for n in names) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["mix", "trec"])
